package processor_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/wiz-run/wiz/sdk/processor"
)

// upper is a data processor: it upper-cases its input "in" and appends the
// configured suffix.
var upper = processor.ProcessorFunc(func(ctx context.Context, req *processor.Request, emit processor.Emitter) error {
	var cfg struct {
		Suffix string `json:"suffix"`
	}
	if err := req.Decode(&cfg); err != nil {
		return err
	}
	in, err := req.Inputs["in"].ReadAll()
	if err != nil {
		return err
	}
	if len(in) == 0 {
		emit.Warn("input is empty")
	}
	emit.Log("stderr", fmt.Appendf(nil, "upper-casing %d bytes", len(in)))
	return emit.Output("out", processor.Text(strings.ToUpper(string(in))+cfg.Suffix))
})

// sortLines wraps the native program sort(1): the executor runs it, feeding
// input "in" to its stdin and taking its stdout as output "out".
var sortLines = processor.NativeFunc(func(ctx context.Context, req *processor.PlanRequest) (*processor.Plan, error) {
	var cfg struct {
		Reverse bool `json:"reverse"`
	}
	if err := req.Decode(&cfg); err != nil {
		return nil, err
	}
	argv := []string{"sort"}
	if cfg.Reverse {
		argv = append(argv, "-r")
	}
	return &processor.Plan{Argv: argv, Env: map[string]string{"LC_ALL": "C"}, Stdin: "in", Stdout: true}, nil
})

// pack is a processor pack with one type of each kind.
var pack = &processor.Pack{
	Name:    "acme",
	Version: "1.2.0",
	Types: []processor.Type{
		{
			Name: "upper", Doc: "Upper-cases text.", Processor: upper,
			Fields: []processor.Field{{Name: "suffix", Type: "string", Default: "!", Doc: "Appended to the output."}},
		},
		{
			Name: "sort", Doc: "Sorts lines with sort(1).", Native: sortLines,
			Fields: []processor.Field{{Name: "reverse", Type: "bool", Default: false, Doc: "Sort in reverse."}},
		},
	},
}

// A pack's main serves the pack; wiz starts the binary as a plugin.
func ExampleServe() {
	processor.Serve(pack)
}

// Describe is what a host sees of a pack: its types, their kinds and config.
func ExampleDescribe() {
	d, err := processor.Describe(pack)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%s %s (protocol %d)\n", d.Name, d.Version, d.ProtocolVersion)
	for _, t := range d.Types { // sorted by name
		fmt.Printf("%s/%s %s: %s\n", d.Name, t.Name, strings.TrimPrefix(t.Kind.String(), "TYPE_KIND_"), t.Doc)
		for _, f := range t.Fields {
			fmt.Printf("  %s %s default %s: %s\n", f.Name, f.Type, f.DefaultJson, f.Doc)
		}
	}
	// Output:
	// acme 1.2.0 (protocol 1)
	// acme/sort NATIVE: Sorts lines with sort(1).
	//   reverse bool default false: Sort in reverse.
	// acme/upper DATA: Upper-cases text.
	//   suffix string default "!": Appended to the output.
}

// printEmitter prints what a processor emits.
type printEmitter struct{}

func (printEmitter) Log(stream string, p []byte) { fmt.Printf("log %s: %s\n", stream, p) }
func (printEmitter) Warn(msg string)             { fmt.Printf("warning: %s\n", msg) }
func (printEmitter) Output(name string, d *processor.Data) error {
	fmt.Printf("output %s (%s): %s\n", name, d.ContentType, d.Bytes)
	return nil
}

// A data processor can be called directly, with a fake Emitter, in a test.
func ExampleProcessorFunc() {
	req := &processor.Request{
		Type:   "upper",
		Config: map[string]any{"suffix": "?"},
		Inputs: map[string]*processor.Data{"in": processor.Text("hello")},
	}
	if err := upper.Process(context.Background(), req, printEmitter{}); err != nil {
		fmt.Println("error:", err)
	}
	req.Inputs["in"] = processor.Text("")
	if err := upper.Process(context.Background(), req, printEmitter{}); err != nil {
		fmt.Println("error:", err)
	}
	// Output:
	// log stderr: upper-casing 5 bytes
	// output out (text/plain): HELLO?
	// warning: input is empty
	// log stderr: upper-casing 0 bytes
	// output out (text/plain): ?
}

// A native wrapper only plans; `wiz executor` runs the plan.
func ExampleNativeFunc() {
	plan, err := sortLines.Plan(context.Background(), &processor.PlanRequest{Type: "sort", Config: map[string]any{"reverse": true}})
	if err != nil {
		fmt.Println("error:", err)
		return
	}
	fmt.Printf("argv=%q stdin=%s stdout=%v env=%v\n", plan.Argv, plan.Stdin, plan.Stdout, plan.Env)
	_, err = sortLines.Plan(context.Background(), &processor.PlanRequest{Type: "sort", Config: map[string]any{"reverse": "yes"}})
	fmt.Println("error:", err != nil)
	// Output:
	// argv=["sort" "-r"] stdin=in stdout=true env=map[LC_ALL:C]
	// error: true
}

// Data reads the same whether the value is inline or in files.
func ExampleData_ReadAll() {
	dir, err := os.MkdirTemp("", "wiz-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	for name, s := range map[string]string{"a.txt": "one\n", "b.txt": "two\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			fmt.Println(err)
			return
		}
	}
	values := []*processor.Data{
		processor.Text("one\ntwo\n"),
		{Files: []processor.File{
			{Name: "a.txt", Size: 4, Path: filepath.Join(dir, "a.txt")},
			{Name: "b.txt", Size: 4, Path: filepath.Join(dir, "b.txt")},
		}},
	}
	for _, d := range values {
		b, err := d.ReadAll()
		fmt.Printf("%d bytes %q %v\n", d.Size(), b, err)
	}
	// Output:
	// 8 bytes "one\ntwo\n" <nil>
	// 8 bytes "one\ntwo\n" <nil>
}

// A processor streams a large result through CreateOutput instead of building
// it in memory: served by a pack, the output moves to a blob once it passes
// the pipeline's inline_max_size; with a test's Emitter it arrives whole at
// Close.
func ExampleCreateOutput() {
	lines := processor.ProcessorFunc(func(ctx context.Context, req *processor.Request, emit processor.Emitter) error {
		r, err := req.Inputs["in"].Open() // inline bytes or Wiz Files, verified
		if err != nil {
			return err
		}
		defer r.Close()
		w, err := processor.CreateOutput(emit, "out", "text/plain")
		if err != nil {
			return err
		}
		defer w.Abort() // discards the output unless Close ran
		sc := bufio.NewScanner(r)
		for n := 1; sc.Scan(); n++ {
			if _, err := fmt.Fprintf(w, "%d: %s\n", n, sc.Text()); err != nil {
				return err // e.g. over max_output_size (processor.ErrTooLarge)
			}
		}
		if err := sc.Err(); err != nil {
			return err
		}
		return w.Close()
	})
	req := &processor.Request{Type: "number", Inputs: map[string]*processor.Data{"in": processor.Text("alpha\nbeta\n")}}
	if err := lines.Process(context.Background(), req, printEmitter{}); err != nil {
		fmt.Println("error:", err)
	}
	// Output:
	// output out (text/plain): 1: alpha
	// 2: beta
}

// A processor that makes many files emits them as one output, a directory of
// Wiz Files, each streamed into its own blob. (CreateFiles needs a served
// pack: the files go to the executor's blob store.)
func ExampleCreateFiles() {
	split := processor.ProcessorFunc(func(ctx context.Context, req *processor.Request, emit processor.Emitter) error {
		w, err := processor.CreateFiles(emit, "pages")
		if err != nil {
			return err
		}
		defer w.Abort()
		for i, page := range []string{"first page", "second page"} {
			if err := w.Add(fmt.Sprintf("pages/%d.txt", i+1), strings.NewReader(page)); err != nil {
				return err
			}
		}
		return w.Close() // output "pages": pages/1.txt, pages/2.txt
	})
	_ = split
}

// A type may check its config when a pipeline is applied, before anything
// runs: wiz shows each diagnostic at the position of the field it names
// (FILE:LINE:COL) and refuses the file with exit 2. It may also declare the
// inputs it reads; wiz then refuses bindings of other names.
func ExampleType_validate() {
	grep := processor.Type{
		Name:   "grep",
		Fields: []processor.Field{{Name: "pattern", Type: "string", Required: true, Doc: "a Go regexp"}},
		Validate: func(cfg map[string]any) []processor.Diagnostic {
			if _, err := regexp.Compile(cfg["pattern"].(string)); err != nil {
				return []processor.Diagnostic{{Path: []string{"pattern"}, Message: err.Error()}}
			}
			return nil
		},
		Inputs:    []processor.Input{{Name: "in", Required: true, Doc: "the text to search"}},
		Processor: upper, // the processor itself, as for any type
	}
	fmt.Println(grep.Validate(map[string]any{"pattern": "a(b"}))
	fmt.Println(grep.Validate(map[string]any{"pattern": "^ab+$"}))
	// Output:
	// [{[pattern] error parsing regexp: missing closing ): `a(b`}]
	// []
}
