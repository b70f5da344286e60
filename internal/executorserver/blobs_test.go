package executorserver

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/wiz-run/wiz/proto/wizrpc"
	"github.com/wiz-run/wiz/sdk/blob"
)

// blobServer serves the blob RPCs of an executor over a real unix socket.
func blobServer(t *testing.T) (wizrpc.ExecutorClient, *blob.Store) {
	t.Helper()
	dir := t.TempDir()
	store, err := blob.Open(filepath.Join(dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("unix", filepath.Join(dir, "s.sock"))
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	wizrpc.RegisterExecutorServer(gs, &Server{blobs: store, cfg: Config{WorkDir: dir}})
	go gs.Serve(lis) // stopped by the cleanup
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient("unix://"+lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return wizrpc.NewExecutorClient(conn), store
}

func put(t *testing.T, c wizrpc.ExecutorClient, digest string, chunks ...[]byte) error {
	t.Helper()
	s, err := c.PutBlob(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for i, ch := range chunks {
		m := &wizrpc.BlobChunk{Data: ch}
		if i == 0 {
			m.Digest = digest
		}
		if err := s.Send(m); err != nil {
			t.Fatal(err)
		}
	}
	_, err = s.CloseAndRecv()
	return err
}

func digestOf(b []byte) string {
	h := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(h[:])
}

func TestPutGetBlob(t *testing.T) {
	c, store := blobServer(t)
	data := make([]byte, 3*ChunkSize+17)
	for i := range data {
		data[i] = byte(i * 7)
	}
	d := digestOf(data)
	has, err := c.HasBlobs(context.Background(), &wizrpc.HasBlobsRequest{Digests: []string{d}})
	if err != nil || len(has.Missing) != 1 {
		t.Fatalf("HasBlobs before put = %v, %v; want it missing", has, err)
	}
	if err := put(t, c, d, data[:ChunkSize], data[ChunkSize:]); err != nil {
		t.Fatal(err)
	}
	if !store.Has(d) {
		t.Fatal("blob not stored")
	}
	has, _ = c.HasBlobs(context.Background(), &wizrpc.HasBlobsRequest{Digests: []string{d}})
	if len(has.Missing) != 0 {
		t.Errorf("HasBlobs after put says missing %v", has.Missing)
	}
	g, err := c.GetBlob(context.Background(), &wizrpc.GetBlobRequest{Digest: d})
	if err != nil {
		t.Fatal(err)
	}
	var got []byte
	for {
		ch, err := g.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(ch.Data) > ChunkSize {
			t.Errorf("chunk of %d bytes, more than %d", len(ch.Data), ChunkSize)
		}
		got = append(got, ch.Data...)
	}
	if string(got) != string(data) {
		t.Errorf("GetBlob returned %d bytes, want the %d put", len(got), len(data))
	}
}

func TestPutBlobDigestMismatchKeepsNothing(t *testing.T) {
	c, store := blobServer(t)
	claimed := digestOf([]byte("what was promised"))
	err := put(t, c, claimed, []byte("something else"))
	if status.Code(err) != codes.DataLoss {
		t.Fatalf("PutBlob of wrong bytes = %v; want DataLoss", err)
	}
	if store.Has(claimed) {
		t.Error("a blob whose bytes did not match was kept")
	}
	left, _ := os.ReadDir(filepath.Join(store.Dir(), "tmp"))
	if len(left) != 0 {
		t.Errorf("temp files left behind: %v", left)
	}
	if err := put(t, c, "sha256:nothex", []byte("x")); status.Code(err) != codes.InvalidArgument {
		t.Errorf("PutBlob with a bad digest = %v; want InvalidArgument", err)
	}
}

func TestGetBlobCorrupted(t *testing.T) {
	c, store := blobServer(t)
	d, _, err := store.Put(strings.NewReader("original bytes"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(store.Path(d), []byte("tampered bytes"), 0o644); err != nil {
		t.Fatal(err)
	}
	g, err := c.GetBlob(context.Background(), &wizrpc.GetBlobRequest{Digest: d})
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err = g.Recv(); err != nil {
			break
		}
	}
	if status.Code(err) != codes.DataLoss {
		t.Errorf("GetBlob of a corrupted blob ended with %v; want DataLoss", err)
	}
	g, err = c.GetBlob(context.Background(), &wizrpc.GetBlobRequest{Digest: digestOf([]byte("absent"))})
	if err == nil {
		_, err = g.Recv()
	}
	if status.Code(err) != codes.NotFound {
		t.Errorf("GetBlob of a missing blob = %v; want NotFound", err)
	}
}
