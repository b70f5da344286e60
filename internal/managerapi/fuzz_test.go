package managerapi_test

import (
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/wiz-run/wiz/core/manager"
	"github.com/wiz-run/wiz/core/pipeline"
	"github.com/wiz-run/wiz/core/store"
	"github.com/wiz-run/wiz/internal/managerapi"
	"github.com/wiz-run/wiz/proto/wizpb"
	"github.com/wiz-run/wiz/proto/wizrpc"
	"github.com/wiz-run/wiz/sdk/blob"
)

// catalog serves one native type, "t/run", with a string field.
type catalog struct{}

func (catalog) Lookup(typ string) (*pipeline.TypeSpec, bool) {
	if typ != "t/run" {
		return nil, false
	}
	return &pipeline.TypeSpec{Type: "t/run", Fields: []pipeline.FieldSpec{{Name: "say", Type: "string"}}}, true
}
func (catalog) Types() []string { return []string{"t/run"} }
func (catalog) Pack(string, string) (manager.PackRef, bool, error) {
	return manager.PackRef{Name: "t", Version: "1.0.0", SHA256: "00"}, true, nil
}

// noExecutors fails every run at its first task: the fuzz target is the
// API's request handling, not running programs.
type noExecutors struct{}

func (noExecutors) Provision(context.Context, manager.ProvisionRequest) (manager.Executor, error) {
	return nil, errors.New("the fuzz test provisions no executors")
}

// rawCodec sends and receives messages as the bytes they are, so that a
// fuzzed byte string reaches the server's decoder as it is. Its name is the
// server's codec's, which decodes them.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(b []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), b...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

const fuzzPipeline = `name: p
inputs:
  n: {type: int, default: 1, min: 0, max: 9}
  s: {type: string, enum: [a, b], default: a}
  f: {type: file, default: "README"}
processors:
  a: {uses: t/run, with: {say: "${{ inputs.s }}"}, inputs: {in: inputs.f}}
  b: {uses: t/run, after: [a], when: inputs.n > 2}
schedules:
  nightly: {cron: "0 3 * * *", inputs: {n: 4}}
`

// FuzzManagerAPI sends arbitrary bytes as the request of any method of the
// Manager's gRPC services (Manager, Schedules, Secrets), over a real gRPC
// connection to a Manager on a real store: no request makes the server
// panic or hang, and every failure is a gRPC status, not a dropped
// connection.
func FuzzManagerAPI(f *testing.F) {
	dir := f.TempDir()
	st, err := store.Open(filepath.Join(dir, "store"), hclog.NewNullLogger())
	if err != nil {
		f.Fatal(err)
	}
	defer st.Close()
	blobs, err := blob.Open(filepath.Join(dir, "blobs"))
	if err != nil {
		f.Fatal(err)
	}
	m := manager.New(manager.Config{Store: st, Blobs: blobs, Catalog: catalog{}, Backends: noExecutors{}})
	defer m.WaitExecutors()
	if _, err := m.Apply("p.yaml", []byte(fuzzPipeline)); err != nil {
		f.Fatal(err)
	}
	srv := managerapi.NewServer(m)
	gs := grpc.NewServer()
	srv.Register(gs)
	l, err := net.Listen("unix", filepath.Join(dir, "api.sock"))
	if err != nil {
		f.Fatal(err)
	}
	go func() { _ = gs.Serve(l) }()
	defer func() {
		// Runs and backfills the requests started end before the store
		// closes.
		gs.Stop()
		m.StopBackfills()
		srv.Wait()
	}()
	conn, err := grpc.NewClient("unix://"+l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		f.Fatal(err)
	}
	defer conn.Close()

	type method struct {
		name           string
		client, server bool // streams
	}
	var methods []method
	for _, sd := range []grpc.ServiceDesc{wizrpc.Manager_ServiceDesc, wizrpc.Schedules_ServiceDesc, wizrpc.Secrets_ServiceDesc} {
		for _, md := range sd.Methods {
			methods = append(methods, method{name: "/" + sd.ServiceName + "/" + md.MethodName})
		}
		for _, sd2 := range sd.Streams {
			methods = append(methods, method{name: "/" + sd.ServiceName + "/" + sd2.StreamName, client: sd2.ClientStreams, server: sd2.ServerStreams})
		}
	}
	sort.Slice(methods, func(i, j int) bool { return methods[i].name < methods[j].name })
	index := func(name string) uint8 {
		for i, m := range methods {
			if m.name == name {
				return uint8(i)
			}
		}
		f.Fatalf("no method %s", name)
		return 0
	}
	seed := func(name string, msg proto.Message) {
		b, err := proto.Marshal(msg)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(index(name), b)
	}
	seed("/wizrpc.v1.Manager/ApplyPipeline", &wizrpc.ApplyPipelineRequest{File: "q.yaml", Source: []byte(fuzzPipeline)})
	seed("/wizrpc.v1.Manager/StartRun", &wizrpc.StartRunRequest{Pipeline: "p", Inputs: map[string]*wizrpc.InputValue{
		"n": {Value: &wizrpc.InputValue_Text{Text: "3"}}, "f": {Value: &wizrpc.InputValue_File{File: []byte("x")}, FileName: "x.txt"}}})
	seed("/wizrpc.v1.Manager/StartRun", &wizrpc.StartRunRequest{File: "r.yaml", Source: []byte(fuzzPipeline), Inputs: map[string]*wizrpc.InputValue{
		"f": {Value: &wizrpc.InputValue_Blob{Blob: &wizpb.FileRef{Digest: "sha256:00", Size: 1}}}}})
	seed("/wizrpc.v1.Manager/StartRun", &wizrpc.StartRunRequest{Resume: "last"})
	seed("/wizrpc.v1.Manager/GetRun", &wizrpc.GetRunRequest{Id: "last"})
	seed("/wizrpc.v1.Manager/ListRuns", &wizrpc.ListRunsRequest{Limit: 3})
	seed("/wizrpc.v1.Manager/GetLogs", &wizrpc.GetLogsRequest{Id: "last", Follow: true})
	seed("/wizrpc.v1.Manager/GetOutput", &wizrpc.GetOutputRequest{Id: "last", Processor: "a"})
	seed("/wizrpc.v1.Manager/UploadBlob", &wizrpc.BlobChunk{Data: []byte("hello"), Digest: "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"})
	seed("/wizrpc.v1.Manager/CancelRun", &wizrpc.CancelRunRequest{Id: "last"})
	seed("/wizrpc.v1.Manager/GetPipeline", &wizrpc.GetPipelineRequest{Name: "p"})
	seed("/wizrpc.v1.Schedules/Backfill", &wizrpc.BackfillRequest{Pipeline: "p", Name: "nightly", From: timestamppb.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)), To: timestamppb.New(time.Date(2026, 1, 3, 0, 0, 0, 0, time.UTC))})
	seed("/wizrpc.v1.Schedules/PauseSchedule", &wizrpc.PauseScheduleRequest{Pipeline: "p", Name: "nightly"})
	seed("/wizrpc.v1.Secrets/SetSecret", &wizrpc.SetSecretRequest{Name: "k", Value: []byte("v")})

	f.Fuzz(func(t *testing.T, which uint8, req []byte) {
		md := methods[int(which)%len(methods)]
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err := call(ctx, conn, md.name, md.client || md.server, req)
		if ctx.Err() != nil {
			t.Fatalf("%s: no answer in 30 s to %x", md.name, req)
		}
		if testing.Verbose() {
			t.Logf("%s: %v", md.name, err)
		}
		if err == nil {
			return
		}
		s, ok := status.FromError(err)
		if !ok || s.Code() == codes.Unavailable || s.Code() == codes.Internal && s.Message() == "" {
			t.Fatalf("%s(%x): %v", md.name, req, err)
		}
	})
}

// call sends req to a method; a stream gets it as its one message.
func call(ctx context.Context, conn *grpc.ClientConn, name string, stream bool, req []byte) error {
	var reply []byte
	if !stream {
		return conn.Invoke(ctx, name, &req, &reply, grpc.ForceCodec(rawCodec{}))
	}
	s, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, name, grpc.ForceCodec(rawCodec{}))
	if err != nil {
		return err
	}
	if err := s.SendMsg(&req); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if err := s.CloseSend(); err != nil {
		return err
	}
	for {
		if err := s.RecvMsg(&reply); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}
