package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"sort"
	"strings"

	"github.com/itchyny/gojq"

	"github.com/wiz-run/wiz/sdk/processor"
)

// singleInput returns the processor's only input ("in" when there are several).
func singleInput(req *processor.Request) (*processor.Data, string, error) {
	if d, ok := req.Inputs["in"]; ok {
		return d, "in", nil
	}
	if len(req.Inputs) == 1 {
		for n, d := range req.Inputs {
			return d, n, nil
		}
	}
	names := make([]string, 0, len(req.Inputs))
	for n := range req.Inputs {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(names) == 0 {
		return nil, "", fmt.Errorf("%s needs an input; add inputs: {in: PROCESSOR}", req.Type)
	}
	return nil, "", fmt.Errorf("%s takes one input named \"in\"; got %s", req.Type, strings.Join(names, ", "))
}

func jsonType() processor.Type {
	return processor.Type{
		Name: "json",
		Doc:  "Transforms JSON with a jq filter (gojq). The input is one JSON value, or JSON lines when lines: true; each result is written as one line of JSON.",
		Fields: []processor.Field{
			{Name: "filter", Type: "string", Default: ".", Doc: "the jq filter"},
			{Name: "lines", Type: "bool", Default: false, Doc: "read the input as a stream of JSON values (JSON lines)"},
			{Name: "raw", Type: "bool", Default: false, Doc: "write string results without quotes, like jq -r"},
		},
		Processor: processor.ProcessorFunc(processJSON),
	}
}

func processJSON(ctx context.Context, req *processor.Request, emit processor.Emitter) error {
	var c struct {
		Filter string `json:"filter"`
		Lines  bool   `json:"lines"`
		Raw    bool   `json:"raw"`
	}
	if err := req.Decode(&c); err != nil {
		return err
	}
	q, err := gojq.Parse(c.Filter)
	if err != nil {
		return fmt.Errorf("std/json: filter %q: %w", c.Filter, err)
	}
	code, err := gojq.Compile(q)
	if err != nil {
		return fmt.Errorf("std/json: filter %q: %w", c.Filter, err)
	}
	in, name, err := singleInput(req)
	if err != nil {
		return err
	}
	r, err := in.Open()
	if err != nil {
		return err
	}
	defer r.Close()
	dec := json.NewDecoder(r)
	dec.UseNumber()
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	for n := 0; ; n++ {
		var v any
		if err := dec.Decode(&v); err == io.EOF {
			if n == 0 {
				return fmt.Errorf("std/json: input %q is empty; it must hold JSON", name)
			}
			break
		} else if err != nil {
			return fmt.Errorf("std/json: input %q is not valid JSON: %w", name, err)
		}
		v = normalize(v)
		iter := code.RunWithContext(ctx, v)
		for {
			res, ok := iter.Next()
			if !ok {
				break
			}
			if err, ok := res.(error); ok {
				return fmt.Errorf("std/json: filter %q: %w", c.Filter, err)
			}
			if s, ok := res.(string); ok && c.Raw {
				out.WriteString(s)
				out.WriteByte('\n')
				continue
			}
			if err := enc.Encode(res); err != nil {
				return fmt.Errorf("std/json: encode result: %w", err)
			}
		}
		if !c.Lines {
			break
		}
	}
	ct := "application/json"
	if c.Raw {
		ct = "text/plain"
	}
	return emit.Output("out", processor.Bytes(out.Bytes(), ct))
}

// normalize turns json.Number into the int or float64 gojq expects.
func normalize(v any) any {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return int(i)
		}
		f, _ := x.Float64()
		return f
	case map[string]any:
		for k, e := range x {
			x[k] = normalize(e)
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = normalize(e)
		}
		return x
	}
	return v
}

func hashType() processor.Type {
	return processor.Type{
		Name: "hash",
		Doc:  "Hashes its input and outputs the hex digest as text.",
		Fields: []processor.Field{
			{Name: "algorithm", Type: "string", Default: "sha256", Doc: "sha256 or sha512"},
		},
		Processor: processor.ProcessorFunc(processHash),
	}
}

func processHash(_ context.Context, req *processor.Request, emit processor.Emitter) error {
	var c struct {
		Algorithm string `json:"algorithm"`
	}
	if err := req.Decode(&c); err != nil {
		return err
	}
	var h hash.Hash
	switch c.Algorithm {
	case "sha256":
		h = sha256.New()
	case "sha512":
		h = sha512.New()
	default:
		return fmt.Errorf("std/hash: unknown algorithm %q; use sha256 or sha512", c.Algorithm)
	}
	in, _, err := singleInput(req)
	if err != nil {
		return err
	}
	r, err := in.Open()
	if err != nil {
		return err
	}
	defer r.Close()
	if _, err := io.Copy(h, r); err != nil {
		return fmt.Errorf("std/hash: read input: %w", err)
	}
	return emit.Output("out", processor.Text(hex.EncodeToString(h.Sum(nil))+"\n"))
}

func gzipType() processor.Type {
	return processor.Type{
		Name: "gzip",
		Doc:  "Compresses its input with gzip.",
		Fields: []processor.Field{
			{Name: "level", Type: "int", Default: gzip.DefaultCompression, Doc: "compression level, 1 (fast) to 9 (small); -1 for the default"},
		},
		Processor: processor.ProcessorFunc(processGzip),
	}
}

func processGzip(_ context.Context, req *processor.Request, emit processor.Emitter) error {
	var c struct {
		Level int `json:"level"`
	}
	if err := req.Decode(&c); err != nil {
		return err
	}
	in, _, err := singleInput(req)
	if err != nil {
		return err
	}
	r, err := in.Open()
	if err != nil {
		return err
	}
	defer r.Close()
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, c.Level)
	if err != nil {
		return fmt.Errorf("std/gzip: level %d: %w", c.Level, err)
	}
	if _, err := io.Copy(zw, r); err != nil {
		return fmt.Errorf("std/gzip: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("std/gzip: %w", err)
	}
	return emit.Output("out", processor.Bytes(buf.Bytes(), "application/gzip"))
}

func gunzipType() processor.Type {
	return processor.Type{
		Name:      "gunzip",
		Doc:       "Decompresses gzip input.",
		Processor: processor.ProcessorFunc(processGunzip),
	}
}

func processGunzip(_ context.Context, req *processor.Request, emit processor.Emitter) error {
	in, name, err := singleInput(req)
	if err != nil {
		return err
	}
	r, err := in.Open()
	if err != nil {
		return err
	}
	defer r.Close()
	zr, err := gzip.NewReader(r)
	if err != nil {
		return fmt.Errorf("std/gunzip: input %q is not gzip data: %w", name, err)
	}
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, zr); err != nil {
		return fmt.Errorf("std/gunzip: input %q: %w", name, err)
	}
	return emit.Output("out", processor.Bytes(buf.Bytes(), "application/octet-stream"))
}
