package pipeline_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/wiz-run/wiz/core/pipeline"
)

// benchCatalog knows std/exec, with a required list field command.
type benchCatalog struct{}

var benchExec = &pipeline.TypeSpec{Type: "std/exec", Fields: []pipeline.FieldSpec{
	{Name: "command", Type: "list", Required: true},
}}

func (benchCatalog) Lookup(typ string) (*pipeline.TypeSpec, bool) {
	if typ == "std/exec" {
		return benchExec, true
	}
	return nil, false
}

func (benchCatalog) Types() []string { return []string{"std/exec"} }

// benchPipeline returns a pipeline of n processors in layers of 100, each
// after 3 processors of the layer before.
func benchPipeline(n int) []byte {
	var b strings.Builder
	b.WriteString("name: bench\nprocessors:\n")
	for i := range n {
		fmt.Fprintf(&b, "  n%d: {uses: std/exec, with: {command: [/bin/true]}", i)
		if layer := i / 100; layer > 0 {
			prev := (layer - 1) * 100
			fmt.Fprintf(&b, ", after: [n%d, n%d, n%d]", prev+i*7%100, prev+(i*7+31)%100, prev+(i*7+62)%100)
		}
		b.WriteString("}\n")
	}
	return []byte(b.String())
}

func benchmarkParseValidate(b *testing.B, n int) {
	src := benchPipeline(n)
	b.SetBytes(int64(len(src)))
	b.ReportAllocs()
	iterations := 0
	for b.Loop() {
		p, err := pipeline.Parse("bench.yaml", src)
		if err != nil {
			b.Fatal(err)
		}
		if err := p.Validate(benchCatalog{}); err != nil {
			b.Fatal(err)
		}
		if len(p.Order()) != n {
			b.Fatalf("Order has %d processors, want %d", len(p.Order()), n)
		}
		iterations++
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(iterations*n), "ns/node")
}

func BenchmarkParseValidate1k(b *testing.B)  { benchmarkParseValidate(b, 1_000) }
func BenchmarkParseValidate10k(b *testing.B) { benchmarkParseValidate(b, 10_000) }
