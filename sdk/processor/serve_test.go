package processor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/protobuf/proto"

	"github.com/wiz-run/wiz/proto/wizpb"
	"github.com/wiz-run/wiz/proto/wizrpc"
	"github.com/wiz-run/wiz/sdk"
	"github.com/wiz-run/wiz/sdk/blob"
)

// dial serves p through the SDK's real go-plugin shim over an in-process
// connection and returns a client of it.
func dial(t *testing.T, p *Pack) wizrpc.ProcessorPackClient {
	t.Helper()
	client, _ := plugin.TestPluginGRPCConn(t, false, map[string]plugin.Plugin{sdk.PackPluginName: &packPlugin{pack: p}})
	// Close also stops the server, through go-plugin's controller; stopping
	// the server here as well would race with that.
	t.Cleanup(func() { client.Close() })
	return wizrpc.NewProcessorPackClient(client.Conn)
}

// testPack has data and native types that do what their names say.
func testPack() *Pack {
	return &Pack{Name: "acme", Version: "1.2.0", Types: []Type{
		{
			Name: "upper", Doc: "Upper-cases in.",
			Fields: []Field{{Name: "suffix", Type: "string", Default: "!"}, {Name: "times", Type: "int", Required: true, Doc: "Repeat."}},
			Processor: ProcessorFunc(func(ctx context.Context, req *Request, emit Emitter) error {
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
					emit.Warn("empty input")
				}
				emit.Log("stderr", []byte("working"))
				return emit.Output("out", Text(strings.ToUpper(string(in))+cfg.Suffix))
			}),
		},
		{
			Name: "passthrough", // outputs its input as is, files and all
			Processor: ProcessorFunc(func(ctx context.Context, req *Request, emit Emitter) error {
				return emit.Output("out", req.Inputs["in"])
			}),
		},
		{
			Name:   "repeat", // streams its input n times through an OutputWriter
			Fields: []Field{{Name: "n", Type: "int", Default: 1}},
			Processor: ProcessorFunc(func(ctx context.Context, req *Request, emit Emitter) error {
				var cfg struct {
					N int `json:"n"`
				}
				if err := req.Decode(&cfg); err != nil {
					return err
				}
				w, err := CreateOutput(emit, "out", "text/plain")
				if err != nil {
					return err
				}
				defer w.Abort()
				for i := 0; i < cfg.N; i++ {
					r, err := req.Inputs["in"].Open()
					if err != nil {
						return err
					}
					_, err = io.Copy(w, r)
					r.Close()
					if err != nil {
						return err
					}
				}
				return w.Close()
			}),
		},
		{
			Name: "tree", // writes its input as files at the paths in config "paths"
			Processor: ProcessorFunc(func(ctx context.Context, req *Request, emit Emitter) error {
				var cfg struct {
					Paths []string `json:"paths"`
				}
				if err := req.Decode(&cfg); err != nil {
					return err
				}
				w, err := CreateFiles(emit, "out")
				if err != nil {
					return err
				}
				defer w.Abort()
				for _, p := range cfg.Paths {
					r, err := req.Inputs["in"].Open()
					if err != nil {
						return err
					}
					err = w.Add(p, r)
					r.Close()
					if err != nil {
						return err
					}
				}
				return w.Close()
			}),
		},
		{
			Name: "fail",
			Processor: ProcessorFunc(func(ctx context.Context, req *Request, emit Emitter) error {
				emit.Log("stdout", []byte("about to fail"))
				return errors.New("boom")
			}),
		},
		{
			Name: "panic",
			Processor: ProcessorFunc(func(context.Context, *Request, Emitter) error {
				panic("oops")
			}),
		},
		{
			Name:   "sort",
			Fields: []Field{{Name: "reverse", Type: "bool", Default: false}},
			Native: NativeFunc(func(ctx context.Context, req *PlanRequest) (*Plan, error) {
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
				return &Plan{
					Argv: argv, Env: map[string]string{"LC_ALL": "C"}, InheritEnv: true, Dir: "/work",
					Stdin: "in", Stdout: true, Outputs: []PlanOutput{{Name: "report", Path: "report.txt"}},
				}, nil
			}),
		},
		{
			Name: "badplan",
			Native: NativeFunc(func(ctx context.Context, req *PlanRequest) (*Plan, error) {
				return nil, fmt.Errorf("with.program is required")
			}),
		},
		{
			Name: "panicplan",
			Native: NativeFunc(func(context.Context, *PlanRequest) (*Plan, error) {
				panic("oops")
			}),
		},
	}}
}

func TestServeDescribe(t *testing.T) {
	t.Parallel()
	c := dial(t, testPack())
	got, err := c.Describe(context.Background(), &wizrpc.DescribeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	want, err := Describe(testPack())
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, want) {
		t.Errorf("Describe over gRPC:\n%v\nwant\n%v", got, want)
	}
	if got.ProtocolVersion != sdk.ProtocolVersion || got.Name != "acme" || got.Version != "1.2.0" || len(got.Types) != 9 {
		t.Errorf("Describe = %v", got)
	}
	upper := got.Types[len(got.Types)-1]
	wantUpper := &wizrpc.TypeSpec{Name: "upper", Doc: "Upper-cases in.", Kind: wizrpc.TypeKind_TYPE_KIND_DATA, Fields: []*wizrpc.FieldSpec{
		{Name: "suffix", Type: "string", DefaultJson: `"!"`},
		{Name: "times", Type: "int", Required: true, Doc: "Repeat."},
	}}
	if !proto.Equal(upper, wantUpper) {
		t.Errorf("type upper = %v, want %v", upper, wantUpper)
	}
}

func TestServePlan(t *testing.T) {
	t.Parallel()
	c := dial(t, testPack())
	tests := []struct {
		name      string
		req       *wizrpc.PlanRequest
		want      *wizrpc.Plan
		wantError string
	}{
		{
			name: "defaults",
			req:  &wizrpc.PlanRequest{Type: "sort"},
			want: &wizrpc.Plan{
				Argv: []string{"sort"}, Env: map[string]string{"LC_ALL": "C"}, InheritEnv: true, Dir: "/work",
				StdinInput: "in", StdoutOutput: true, Outputs: []*wizrpc.PlanOutput{{Name: "report", Path: "report.txt"}},
			},
		},
		{
			name: "config",
			req:  &wizrpc.PlanRequest{Type: "sort", ConfigJson: []byte(`{"reverse": true}`)},
			want: &wizrpc.Plan{
				Argv: []string{"sort", "-r"}, Env: map[string]string{"LC_ALL": "C"}, InheritEnv: true, Dir: "/work",
				StdinInput: "in", StdoutOutput: true, Outputs: []*wizrpc.PlanOutput{{Name: "report", Path: "report.txt"}},
			},
		},
		{name: "config not an object", req: &wizrpc.PlanRequest{Type: "sort", ConfigJson: []byte(`[1]`)}, wantError: "config of sort is not a JSON object"},
		{name: "config of the wrong type", req: &wizrpc.PlanRequest{Type: "sort", ConfigJson: []byte(`{"reverse": "yes"}`)}, wantError: "decode config"},
		{name: "unknown type", req: &wizrpc.PlanRequest{Type: "nope"}, wantError: `pack acme has no native type "nope"`},
		{name: "data type", req: &wizrpc.PlanRequest{Type: "upper"}, wantError: `pack acme has no native type "upper"`},
		{name: "plan error", req: &wizrpc.PlanRequest{Type: "badplan"}, wantError: "with.program is required"},
		{name: "plan panic", req: &wizrpc.PlanRequest{Type: "panicplan"}, wantError: "panicplan panicked while planning: oops"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			resp, err := c.Plan(context.Background(), tt.req)
			if err != nil {
				t.Fatalf("Plan: %v (config problems must come back as data)", err)
			}
			if tt.wantError != "" {
				if resp.Plan != nil || !strings.Contains(resp.Error, tt.wantError) {
					t.Errorf("Plan = %v, want error %q", resp, tt.wantError)
				}
				return
			}
			if resp.Error != "" || !proto.Equal(resp.Plan, tt.want) {
				t.Errorf("Plan = %v, want %v", resp, tt.want)
			}
		})
	}
}

// process runs a Process call and returns its events as text.
func process(t *testing.T, c wizrpc.ProcessorPackClient, req *wizrpc.ProcessRequest) []string {
	t.Helper()
	stream, err := c.Process(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for {
		ev, err := stream.Recv()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("Recv: %v (failures must come back as events)", err)
		}
		switch e := ev.Event.(type) {
		case *wizrpc.ProcessEvent_Log:
			out = append(out, fmt.Sprintf("log %s %s", e.Log.Stream, e.Log.Data))
		case *wizrpc.ProcessEvent_Warning:
			out = append(out, "warning "+e.Warning)
		case *wizrpc.ProcessEvent_Output:
			d := e.Output.Data
			s := fmt.Sprintf("output %s %s %q", e.Output.Name, d.ContentType, d.Inline)
			for _, f := range d.Files {
				s += fmt.Sprintf(" file(%s %d %s)", f.Name, f.Size, f.Digest)
			}
			out = append(out, s)
		case *wizrpc.ProcessEvent_Error:
			out = append(out, "error "+e.Error)
		default:
			t.Fatalf("unknown event %v", ev)
		}
	}
}

func TestServeProcess(t *testing.T) {
	t.Parallel()
	c := dial(t, testPack())
	blobDir := t.TempDir()
	blobs, err := blob.Open(blobDir)
	if err != nil {
		t.Fatal(err)
	}
	put := func(s string) *wizpb.FileRef {
		d, n, err := blobs.Put(strings.NewReader(s))
		if err != nil {
			t.Fatal(err)
		}
		return &wizpb.FileRef{Digest: d, Size: n, Name: s + ".txt"}
	}
	abc, def := put("abc"), put("def")
	corrupt := put("ghi")
	if err := os.WriteFile(blobs.Path(corrupt.Digest), []byte("GHI"), 0o644); err != nil {
		t.Fatal(err)
	}
	inline := func(s string) map[string]*wizpb.Data {
		return map[string]*wizpb.Data{"in": {Inline: []byte(s), ContentType: "text/plain"}}
	}
	tests := []struct {
		name string
		req  *wizrpc.ProcessRequest
		want []string
	}{
		{
			name: "default config",
			req:  &wizrpc.ProcessRequest{Type: "upper", Inputs: inline("hello")},
			want: []string{"log stderr working", `output out text/plain "HELLO!"`},
		},
		{
			name: "config",
			req:  &wizrpc.ProcessRequest{Type: "upper", ConfigJson: []byte(`{"suffix":"?"}`), Inputs: inline("hello")},
			want: []string{"log stderr working", `output out text/plain "HELLO?"`},
		},
		{
			name: "no input",
			req:  &wizrpc.ProcessRequest{Type: "upper"},
			want: []string{"warning empty input", "log stderr working", `output out text/plain "!"`},
		},
		{
			name: "file inputs read from the blob store",
			req: &wizrpc.ProcessRequest{Type: "upper", BlobDir: blobDir,
				Inputs: map[string]*wizpb.Data{"in": {Files: []*wizpb.FileRef{abc, def}}}},
			want: []string{"log stderr working", `output out text/plain "ABCDEF!"`},
		},
		{
			name: "files pass through",
			req: &wizrpc.ProcessRequest{Type: "passthrough", BlobDir: blobDir,
				Inputs: map[string]*wizpb.Data{"in": {Files: []*wizpb.FileRef{abc}, ContentType: "text/plain"}}},
			want: []string{fmt.Sprintf(`output out text/plain "" file(abc.txt 3 %s)`, abc.Digest)},
		},
		{
			name: "missing blob",
			req: &wizrpc.ProcessRequest{Type: "upper", BlobDir: t.TempDir(),
				Inputs: map[string]*wizpb.Data{"in": {Files: []*wizpb.FileRef{abc}}}},
			want: []string{"error open input file abc.txt (" + abc.Digest + ")"},
		},
		{
			name: "a streamed output small enough stays inline",
			req:  &wizrpc.ProcessRequest{Type: "repeat", ConfigJson: []byte(`{"n":3}`), BlobDir: blobDir, InlineMaxBytes: 9, Inputs: inline("abc")},
			want: []string{`output out text/plain "abcabcabc"`},
		},
		{
			name: "a streamed output past inline_max_bytes becomes a Wiz File",
			req:  &wizrpc.ProcessRequest{Type: "repeat", ConfigJson: []byte(`{"n":4}`), BlobDir: blobDir, InlineMaxBytes: 9, Inputs: inline("abc")},
			want: []string{fmt.Sprintf(`output out text/plain "" file(out 12 %s)`, digestOf("abcabcabcabc"))},
		},
		{
			name: "a streamed output past max_output_bytes fails",
			req: &wizrpc.ProcessRequest{Type: "repeat", ConfigJson: []byte(`{"n":4}`), BlobDir: blobDir, InlineMaxBytes: 2, MaxOutputBytes: 10,
				Inputs: inline("abc")},
			want: []string{"error output out: over the size limit: more than 10 bytes written, the limit (max_output_size) is 10 bytes"},
		},
		{
			name: "a directory of files",
			req: &wizrpc.ProcessRequest{Type: "tree", ConfigJson: []byte(`{"paths":["a.txt","sub/deep/b.txt"]}`), BlobDir: blobDir,
				Inputs: inline("abc")},
			want: []string{fmt.Sprintf(`output out application/octet-stream "" file(a.txt 3 %s) file(sub/deep/b.txt 3 %s)`, digestOf("abc"), digestOf("abc"))},
		},
		{
			name: "a directory of files over max_output_bytes",
			req: &wizrpc.ProcessRequest{Type: "tree", ConfigJson: []byte(`{"paths":["a.txt","b.txt"]}`), BlobDir: blobDir, MaxOutputBytes: 5,
				Inputs: inline("abc")},
			want: []string{"error output out: file b.txt: over the size limit: more than 5 bytes in all, the limit (max_output_size) is 5 bytes"},
		},
		{
			name: "a file path leaving the directory",
			req:  &wizrpc.ProcessRequest{Type: "tree", ConfigJson: []byte(`{"paths":["../x"]}`), BlobDir: blobDir, Inputs: inline("abc")},
			want: []string{`error output out: file path "../x" must be relative, slash-separated and stay inside the output`},
		},
		{
			name: "a file path twice",
			req:  &wizrpc.ProcessRequest{Type: "tree", ConfigJson: []byte(`{"paths":["a","./a"]}`), BlobDir: blobDir, Inputs: inline("abc")},
			want: []string{`error output out: file a added twice`},
		},
		{
			name: "a streamed output needs a blob dir",
			req:  &wizrpc.ProcessRequest{Type: "repeat", Inputs: inline("abc")},
			want: []string{"error output out: the executor gave no blob dir for outputs"},
		},
		{
			name: "a whole output past inline_max_bytes becomes a Wiz File",
			req:  &wizrpc.ProcessRequest{Type: "upper", BlobDir: blobDir, InlineMaxBytes: 3, Inputs: inline("hello")},
			want: []string{"log stderr working", fmt.Sprintf(`output out text/plain "" file(out 6 %s)`, digestOf("HELLO!"))},
		},
		{
			name: "a whole output past max_output_bytes fails",
			req:  &wizrpc.ProcessRequest{Type: "upper", BlobDir: blobDir, MaxOutputBytes: 5, Inputs: inline("hello")},
			want: []string{"log stderr working", "error output out is 6 bytes, over the size limit: max_output_size is 5 bytes"},
		},
		{
			name: "a changed blob fails the read",
			req: &wizrpc.ProcessRequest{Type: "upper", BlobDir: blobDir,
				Inputs: map[string]*wizpb.Data{"in": {Files: []*wizpb.FileRef{{Digest: abc.Digest, Size: 3, Name: "x"}, {Digest: corrupt.Digest, Size: 3, Name: "y"}}}}},
			want: []string{"error read blob " + corrupt.Digest + " (" + blobs.Path(corrupt.Digest) + "): blob digest mismatch: the file was changed on disk"},
		},
		{
			name: "error",
			req:  &wizrpc.ProcessRequest{Type: "fail"},
			want: []string{"log stdout about to fail", "error boom"},
		},
		{
			name: "panic",
			req:  &wizrpc.ProcessRequest{Type: "panic"},
			want: []string{"error panic panicked: oops"},
		},
		{
			name: "unknown type",
			req:  &wizrpc.ProcessRequest{Type: "nope"},
			want: []string{`error pack acme has no data processor type "nope"`},
		},
		{
			name: "native type",
			req:  &wizrpc.ProcessRequest{Type: "sort"},
			want: []string{`error pack acme has no data processor type "sort"`},
		},
		{
			name: "config not JSON",
			req:  &wizrpc.ProcessRequest{Type: "upper", ConfigJson: []byte(`{`)},
			want: []string{"error config of upper is not a JSON object"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := process(t, c, tt.req)
			// Error texts are compared by prefix: the tails come from the
			// standard library.
			ok := len(got) == len(tt.want)
			for i := 0; ok && i < len(got); i++ {
				ok = got[i] == tt.want[i] || strings.HasPrefix(tt.want[i], "error ") && strings.HasPrefix(got[i], tt.want[i])
			}
			if !ok {
				t.Errorf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

// The plugin side never dispenses a client: hosts bring their own.
func TestPackPluginClient(t *testing.T) {
	t.Parallel()
	client, _ := plugin.TestPluginGRPCConn(t, false, map[string]plugin.Plugin{sdk.PackPluginName: &packPlugin{pack: testPack()}})
	defer client.Close()
	if _, err := client.Dispense(sdk.PackPluginName); err == nil {
		t.Error("Dispense succeeded, want an error")
	}
}

func TestPackCheck(t *testing.T) {
	t.Parallel()
	proc := ProcessorFunc(func(context.Context, *Request, Emitter) error { return nil })
	native := NativeFunc(func(context.Context, *PlanRequest) (*Plan, error) { return &Plan{}, nil })
	tests := []struct {
		name string
		pack Pack
		want string // "": valid
	}{
		{"valid", Pack{Name: "p", Version: "1.0.0", Types: []Type{{Name: "a", Processor: proc}, {Name: "b", Native: native}}}, ""},
		{"no types", Pack{Name: "p", Version: "1.0.0"}, ""},
		{"no name", Pack{Version: "1.0.0"}, "pack needs a Name and a Version"},
		{"no version", Pack{Name: "p"}, "pack needs a Name and a Version"},
		{"unnamed type", Pack{Name: "p", Version: "1", Types: []Type{{Processor: proc}}}, "pack p: a type has no Name"},
		{"twice", Pack{Name: "p", Version: "1", Types: []Type{{Name: "a", Processor: proc}, {Name: "a", Native: native}}}, "pack p: type a is registered twice"},
		{"neither", Pack{Name: "p", Version: "1", Types: []Type{{Name: "a"}}}, "pack p: type a must set exactly one of Processor and Native"},
		{"both", Pack{Name: "p", Version: "1", Types: []Type{{Name: "a", Processor: proc, Native: native}}}, "pack p: type a must set exactly one of Processor and Native"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.pack.check()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("check: %v, want valid", err)
			case tt.want != "" && (err == nil || err.Error() != tt.want):
				t.Errorf("check: %v, want %q", err, tt.want)
			}
		})
	}
}

func TestProtoRoundTrip(t *testing.T) {
	t.Parallel()
	d := &Data{
		Bytes: []byte("x"), ContentType: "text/plain", Metadata: map[string]string{"k": "v"},
		Files: []File{{Digest: "sha256:abcd", Size: 4, Name: "dir/f.txt"}},
	}
	back := FromProto(ToProto(d), "/blobs")
	want := *d
	want.Files = []File{{Digest: "sha256:abcd", Size: 4, Name: "dir/f.txt", Path: blob.Path("/blobs", "sha256:abcd")}}
	if fmt.Sprint(*back) != fmt.Sprint(want) {
		t.Errorf("FromProto(ToProto(d)) = %+v, want %+v", *back, want)
	}
	if got := ToProto(nil); !proto.Equal(got, &wizpb.Data{}) {
		t.Errorf("ToProto(nil) = %v", got)
	}
	if got := FromProto(nil, ""); got == nil || got.Size() != 0 {
		t.Errorf("FromProto(nil) = %+v", got)
	}
}

func digestOf(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(sum[:])
}
