package processor_test

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/wiz-run/wiz/sdk/processor"
)

func writeFile(t *testing.T, dir, name, content string) processor.File {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return processor.File{Digest: "sha256:" + name, Size: int64(len(content)), Name: name, Path: p}
}

func TestData(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	a := writeFile(t, dir, "a", "alpha ")
	b := writeFile(t, dir, "b", "beta ")
	empty := writeFile(t, dir, "empty", "")
	c := writeFile(t, dir, "c", "gamma")
	tests := []struct {
		name     string
		d        *processor.Data
		want     string
		wantSize int64
	}{
		{"nil", nil, "", 0},
		{"zero", &processor.Data{}, "", 0},
		{"text", processor.Text("hello"), "hello", 5},
		{"bytes", processor.Bytes([]byte{0, 1, 2}, "application/octet-stream"), "\x00\x01\x02", 3},
		{"one file", &processor.Data{Files: []processor.File{a}}, "alpha ", 6},
		{"files in order", &processor.Data{Files: []processor.File{c, a, empty, b}}, "gammaalpha beta ", 16},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.d.Size(); got != tt.wantSize {
				t.Errorf("Size = %d, want %d", got, tt.wantSize)
			}
			got, err := tt.d.ReadAll()
			if err != nil || string(got) != tt.want {
				t.Errorf("ReadAll = %q, %v; want %q", got, err, tt.want)
			}
			r, err := tt.d.Open()
			if err != nil {
				t.Fatal(err)
			}
			got, err = io.ReadAll(r)
			if err != nil || string(got) != tt.want {
				t.Errorf("Open+ReadAll = %q, %v; want %q", got, err, tt.want)
			}
			if err := r.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
}

func TestDataText(t *testing.T) {
	t.Parallel()
	if d := processor.Text("x"); d.ContentType != "text/plain" || string(d.Bytes) != "x" {
		t.Errorf("Text(x) = %+v", d)
	}
	if d := processor.Bytes([]byte("{}"), "application/json"); d.ContentType != "application/json" || string(d.Bytes) != "{}" {
		t.Errorf("Bytes = %+v", d)
	}
}

func TestDataMissingFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	a := writeFile(t, dir, "a", "alpha")
	missing := processor.File{Digest: "sha256:0123", Size: 3, Name: "gone.txt", Path: filepath.Join(dir, "gone")}
	d := &processor.Data{Files: []processor.File{a, missing}}
	for name, read := range map[string]func() error{
		"Open":    func() error { _, err := d.Open(); return err },
		"ReadAll": func() error { _, err := d.ReadAll(); return err },
	} {
		err := read()
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: %v, want fs.ErrNotExist", name, err)
			continue
		}
		for _, want := range []string{"gone.txt", "sha256:0123"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: error %q does not name %s", name, err, want)
			}
		}
	}
}

func TestDecode(t *testing.T) {
	t.Parallel()
	type config struct {
		Name  string         `json:"name"`
		Count int            `json:"count"`
		Tags  []string       `json:"tags"`
		Extra map[string]int `json:"extra"`
	}
	cfg := map[string]any{"name": "x", "count": 3.0, "tags": []any{"a", "b"}, "extra": map[string]any{"k": 1.0}, "unknown": true}
	want := config{Name: "x", Count: 3, Tags: []string{"a", "b"}, Extra: map[string]int{"k": 1}}

	var got config
	if err := (&processor.Request{Config: cfg}).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Request.Decode = %+v, want %+v", got, want)
	}
	var got2 config
	if err := (&processor.PlanRequest{Config: cfg}).Decode(&got2); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got2, want) {
		t.Errorf("PlanRequest.Decode = %+v, want %+v", got2, want)
	}
	err := (&processor.Request{Config: map[string]any{"count": "three"}}).Decode(&got)
	if err == nil || !strings.HasPrefix(err.Error(), "decode config: ") {
		t.Errorf("Decode of a string into an int: %v, want a decode config error", err)
	}
	err = (&processor.Request{Config: map[string]any{"f": func() {}}}).Decode(&got)
	if err == nil || !strings.HasPrefix(err.Error(), "encode config: ") {
		t.Errorf("Decode of an unencodable config: %v, want an encode config error", err)
	}
}

func TestDescribe(t *testing.T) {
	t.Parallel()
	d, err := processor.Describe(pack)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, ty := range d.Types {
		names = append(names, ty.Name)
	}
	if want := []string{"sort", "upper"}; !reflect.DeepEqual(names, want) {
		t.Errorf("types %v, want %v (by name)", names, want)
	}
	// Describe does not reorder the pack's own types.
	if pack.Types[0].Name != "upper" {
		t.Errorf("Describe reordered the pack's types: first is %s", pack.Types[0].Name)
	}

	bad := &processor.Pack{Name: "bad", Version: "1.0.0", Types: []processor.Type{{
		Name: "t", Processor: upper,
		Fields: []processor.Field{{Name: "f", Type: "any", Default: make(chan int)}},
	}}}
	if _, err := processor.Describe(bad); err == nil || !strings.Contains(err.Error(), "type t field f: default") {
		t.Errorf("Describe with an unencodable default: %v, want an error naming the type and field", err)
	}
}
