package main

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/wiz-run/wiz/sdk/processor"
)

// collect is an Emitter that keeps what a processor emits.
type collect struct {
	outputs map[string]*processor.Data
}

func (c *collect) Log(string, []byte) {}
func (c *collect) Warn(string)        {}
func (c *collect) Output(name string, d *processor.Data) error {
	if c.outputs == nil {
		c.outputs = map[string]*processor.Data{}
	}
	c.outputs[name] = d
	return nil
}

func runType(t *testing.T, typ processor.Type, cfg map[string]any, in *processor.Data) (*collect, error) {
	t.Helper()
	full := map[string]any{}
	for _, f := range typ.Fields {
		if f.Default != nil {
			full[f.Name] = f.Default
		}
	}
	for k, v := range cfg {
		full[k] = v
	}
	em := &collect{}
	err := typ.Processor.Process(context.Background(), &processor.Request{
		Type: "std/" + typ.Name, Config: full, Inputs: map[string]*processor.Data{"in": in},
	}, em)
	return em, err
}

func TestJSON(t *testing.T) {
	t.Parallel()
	var records strings.Builder
	for i := 1; i <= 1000; i++ {
		fmt.Fprintf(&records, "{\"id\":%d}\n", i)
	}
	tests := []struct {
		name string
		cfg  map[string]any
		in   string
		want string
		err  string
	}{
		{name: "one document", cfg: map[string]any{"filter": ".a"}, in: `{"a": [1, 2]}`, want: "[1,2]\n"},
		{name: "raw strings", cfg: map[string]any{"filter": ".[]", "raw": true}, in: `["x", "y"]`, want: "x\ny\n"},
		{name: "lines, one record at a time", cfg: map[string]any{"filter": "select(.id % 250 == 0) | .id", "lines": true}, in: records.String(), want: "250\n500\n750\n1000\n"},
		{name: "document over max_document_size", cfg: map[string]any{"max_document_size": 10}, in: `{"a": "more than ten bytes"}`,
			err: `std/json: input "in" is 28 bytes, more than max_document_size (10) to hold whole in memory; use lines: true for a stream of JSON values, or raise max_document_size`},
		{name: "lines ignore max_document_size", cfg: map[string]any{"max_document_size": 10, "lines": true, "filter": ".id"}, in: "{\"id\": 1}\n{\"id\": 2}\n", want: "1\n2\n"},
		{name: "not JSON", cfg: map[string]any{"lines": true}, in: "{\"id\": 1}\n{nope\n", err: `std/json: input "in" is not valid JSON (value 2)`},
		{name: "several values without lines", cfg: map[string]any{"filter": ".id"}, in: "{\"id\": 1}\n{\"id\": 2}\n",
			err: `std/json: input "in" holds more than one JSON value; set lines: true to transform each of them (one result per line)`},
		{name: "text after the value", cfg: map[string]any{}, in: "2 hello\n", err: `std/json: input "in" is not valid JSON after its first value`},
		{name: "empty", in: "", err: `std/json: input "in" is empty; it must hold JSON`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			em, err := runType(t, jsonType(), tt.cfg, processor.Text(tt.in))
			if tt.err != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tt.err) {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				if len(em.outputs) != 0 {
					t.Errorf("a failed processor emitted %v", em.outputs)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := string(em.outputs["out"].Bytes); got != tt.want {
				t.Errorf("out = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestGzipRoundTrip(t *testing.T) {
	t.Parallel()
	text := strings.Repeat("wiz data plane ", 10000)
	z, err := runType(t, gzipType(), nil, processor.Text(text))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(z.outputs["out"].Bytes); n == 0 || n >= len(text)/10 {
		t.Fatalf("gzip made %d bytes of %d", n, len(text))
	}
	u, err := runType(t, gunzipType(), nil, z.outputs["out"])
	if err != nil {
		t.Fatal(err)
	}
	if string(u.outputs["out"].Bytes) != text {
		t.Error("gunzip(gzip(x)) != x")
	}
	if _, err := runType(t, gunzipType(), nil, processor.Text("not gzip")); err == nil || !strings.Contains(err.Error(), `input "in" is not gzip data`) {
		t.Errorf("gunzip of text: %v", err)
	}
}
