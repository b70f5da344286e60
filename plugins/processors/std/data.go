package main

import (
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"sort"
	"strings"

	"github.com/itchyny/gojq"

	"github.com/wiz-run/wiz/sdk/blob"
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
		Doc:  "Transforms JSON with a jq filter (gojq). The input is one JSON value (held in memory whole, up to max_document_size), or a stream of JSON values when lines: true (one value in memory at a time); each result is written as one line of JSON, streamed to the output.",
		Fields: []processor.Field{
			{Name: "filter", Type: "code", Default: ".", Doc: "the jq filter (code: ${{ }} is refused in it; feed values as inputs)"},
			{Name: "lines", Type: "bool", Default: false, Doc: "read the input as a stream of JSON values (JSON lines), one at a time"},
			{Name: "raw", Type: "bool", Default: false, Doc: "write string results without quotes, like jq -r"},
			{Name: "max_document_size", Type: "int", Default: defaultMaxDocument, Doc: "largest input in bytes read as one JSON value (lines: false), since gojq needs it whole in memory"},
		},
		Validate:  validateJSON,
		Outputs:   []string{"out"},
		Processor: processor.ProcessorFunc(processJSON),
	}
}

// validateJSON checks the jq filter when the pipeline is applied: a filter
// that does not parse or compile fails there, before anything runs.
func validateJSON(cfg map[string]any) []processor.Diagnostic {
	filter, ok := cfg["filter"].(string)
	if !ok {
		return nil // its type is checked by wiz
	}
	q, err := gojq.Parse(filter)
	if err == nil {
		_, err = gojq.Compile(q)
	}
	if err != nil {
		return []processor.Diagnostic{{Path: []string{"filter"}, Message: fmt.Sprintf("the jq filter %q does not compile: %v", filter, err)}}
	}
	return nil
}

func processJSON(ctx context.Context, req *processor.Request, emit processor.Emitter) error {
	var c struct {
		Filter string `json:"filter"`
		Lines  bool   `json:"lines"`
		Raw    bool   `json:"raw"`
		MaxDoc int64  `json:"max_document_size"`
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
	if !c.Lines && c.MaxDoc > 0 && in.Size() > c.MaxDoc {
		return fmt.Errorf("std/json: input %q is %d bytes, more than max_document_size (%d) to hold whole in memory; use lines: true for a stream of JSON values, or raise max_document_size", name, in.Size(), c.MaxDoc)
	}
	r, err := in.Open()
	if err != nil {
		return err
	}
	defer r.Close()
	ct := "application/json"
	if c.Raw {
		ct = "text/plain"
	}
	ow, err := processor.CreateOutput(emit, "out", ct)
	if err != nil {
		return err
	}
	defer ow.Abort()
	out := bufio.NewWriterSize(ow, 64<<10)
	dec := json.NewDecoder(bufio.NewReaderSize(r, 64<<10))
	dec.UseNumber()
	enc := json.NewEncoder(out)
	for n := 0; ; n++ {
		var v any
		if err := dec.Decode(&v); err == io.EOF {
			if n == 0 {
				return fmt.Errorf("std/json: input %q is empty; it must hold JSON", name)
			}
			break
		} else if err != nil {
			if errors.Is(err, blob.ErrDigestMismatch) || errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("std/json: input %q: %w", name, err)
			}
			return fmt.Errorf("std/json: input %q is not valid JSON (value %d): %w", name, n+1, err)
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
				if err := out.WriteByte('\n'); err != nil {
					return fmt.Errorf("std/json: %w", err)
				}
				continue
			}
			if err := enc.Encode(res); err != nil {
				return fmt.Errorf("std/json: %w", err)
			}
		}
		if !c.Lines {
			// One value: a second one is an error, not silently dropped.
			var extra any
			switch err := dec.Decode(&extra); {
			case err == io.EOF:
			case err == nil:
				return fmt.Errorf("std/json: input %q holds more than one JSON value; set lines: true to transform each of them (one result per line)", name)
			default:
				return fmt.Errorf("std/json: input %q is not valid JSON after its first value: %w", name, err)
			}
			break
		}
	}
	if err := out.Flush(); err != nil {
		return fmt.Errorf("std/json: %w", err)
	}
	return ow.Close()
}

// defaultMaxDocument is the default max_document_size of std/json: 256 MiB.
const defaultMaxDocument = 256 << 20

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
		Outputs:   []string{"out"},
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
	in, name, err := singleInput(req)
	if err != nil {
		return err
	}
	r, err := in.Open()
	if err != nil {
		return err
	}
	defer r.Close()
	if _, err := io.Copy(h, r); err != nil {
		return fmt.Errorf("std/hash: input %q: %w", name, err)
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
		Outputs:   []string{"out"},
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
	ow, err := processor.CreateOutput(emit, "out", "application/gzip")
	if err != nil {
		return err
	}
	defer ow.Abort()
	zw, err := gzip.NewWriterLevel(ow, c.Level)
	if err != nil {
		return fmt.Errorf("std/gzip: level %d: %w", c.Level, err)
	}
	if _, err := io.Copy(zw, r); err != nil {
		return fmt.Errorf("std/gzip: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("std/gzip: %w", err)
	}
	return ow.Close()
}

func gunzipType() processor.Type {
	return processor.Type{
		Name:      "gunzip",
		Doc:       "Decompresses gzip input.",
		Outputs:   []string{"out"},
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
	ow, err := processor.CreateOutput(emit, "out", "application/octet-stream")
	if err != nil {
		return err
	}
	defer ow.Abort()
	if _, err := io.Copy(ow, zr); err != nil {
		return fmt.Errorf("std/gunzip: input %q: %w", name, err)
	}
	return ow.Close()
}
