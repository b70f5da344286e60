package executorclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/wiz-run/wiz/core/manager"
	"github.com/wiz-run/wiz/proto/wizpb"
	"github.com/wiz-run/wiz/proto/wizrpc"
	"github.com/wiz-run/wiz/sdk/blob"
)

// chunkSize is the size of the chunks blobs are sent in.
const chunkSize = 1 << 20

// remote moves blobs between the Manager's blob store and an executor that
// does not share it: before a task is sent, its pack binary and input blobs
// the executor lacks are streamed to it; output blobs are fetched back before
// the output is reported, so that outputs outlive the executor.
type remote struct {
	c     *Client
	blobs *blob.Store
	api   wizrpc.ExecutorClient

	mu      sync.Mutex
	queue   []*wizrpc.Task // Pack.Path is the Manager's until sent
	wake    chan struct{}
	sent    map[string]bool   // digests the executor is known to hold
	failed  map[string]error  // task ID → why an output could not be fetched
	dropped map[string]string // task ID → cancel reason of a queued task
}

func newRemote(c *Client, blobs *blob.Store) *remote {
	return &remote{
		c: c, blobs: blobs, api: wizrpc.NewExecutorClient(c.conn),
		wake: make(chan struct{}, 1), sent: map[string]bool{}, failed: map[string]error{}, dropped: map[string]string{},
	}
}

func (r *remote) enqueue(t *wizrpc.Task) {
	r.mu.Lock()
	r.queue = append(r.queue, t)
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// cancelQueued cancels a task that has not been sent yet; it reports whether
// the task was still queued.
func (r *remote) cancelQueued(id, reason string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, t := range r.queue {
		if t.Id == id {
			r.queue = append(r.queue[:i], r.queue[i+1:]...)
			r.dropped[id] = reason
			go r.c.finish(id, manager.OutcomeCancelled, "cancelled: "+reason, false)
			return true
		}
	}
	return false
}

// send runs until ctx ends: it sends queued tasks in order, each after the
// blobs it needs.
func (r *remote) send(ctx context.Context) {
	for {
		r.mu.Lock()
		var t *wizrpc.Task
		if len(r.queue) > 0 {
			t, r.queue = r.queue[0], r.queue[1:]
		}
		r.mu.Unlock()
		if t == nil {
			select {
			case <-ctx.Done():
				return
			case <-r.wake:
				continue
			}
		}
		if err := r.ensure(ctx, t); err != nil {
			r.c.finish(t.Id, manager.OutcomeFailed, err.Error(), false)
			continue
		}
		t.Pack.Path = "" // the executor finds the pack in its blob store
		if err := r.c.sendTask(t); err != nil {
			r.c.finish(t.Id, manager.OutcomeFailed, fmt.Sprintf("send task: %v", plain(err)), false)
		}
	}
}

// ensure sends the executor the pack binary and input blobs it lacks.
func (r *remote) ensure(ctx context.Context, t *wizrpc.Task) error {
	type need struct{ digest, what, path string }
	var needs []need
	if t.Pack != nil && t.Pack.Sha256 != "" {
		needs = append(needs, need{"sha256:" + t.Pack.Sha256, "pack " + t.Pack.Name + "@" + t.Pack.Version, ""})
	}
	for name, d := range t.Inputs {
		for _, f := range d.GetFiles() {
			needs = append(needs, need{f.Digest, "input " + name + " file " + f.Name, ""})
		}
	}
	var ask []string
	r.mu.Lock()
	for _, n := range needs {
		if !r.sent[n.digest] {
			ask = append(ask, n.digest)
		}
	}
	r.mu.Unlock()
	if len(ask) == 0 {
		return nil
	}
	has, err := r.api.HasBlobs(ctx, &wizrpc.HasBlobsRequest{Digests: ask})
	if err != nil {
		return fmt.Errorf("ask %s which blobs it holds: %w", r.c.name, plain(err))
	}
	missing := map[string]bool{}
	for _, d := range has.Missing {
		missing[d] = true
	}
	for _, n := range needs {
		if missing[n.digest] {
			path := r.blobs.Path(n.digest)
			if n.what[:4] == "pack" {
				path = t.Pack.Path // packs live where they are installed
			}
			if err := r.put(ctx, n.digest, path); err != nil {
				return fmt.Errorf("send %s (%s) to %s: %w", n.what, n.digest, r.c.name, err)
			}
			delete(missing, n.digest)
		}
		r.mu.Lock()
		r.sent[n.digest] = true
		r.mu.Unlock()
	}
	return nil
}

// put streams the file at path as blob digest. The executor verifies the
// digest and keeps nothing when it does not match.
func (r *remote) put(ctx context.Context, digest, path string) error {
	src, err := blob.OpenFile(path, digest) // verified: a file changed on disk is not sent as the blob named
	if err != nil {
		return err
	}
	defer src.Close()
	stream, err := r.api.PutBlob(ctx)
	if err != nil {
		return plain(err)
	}
	buf := make([]byte, chunkSize)
	first := true
	for {
		n, rerr := io.ReadFull(src, buf)
		if rerr != nil && rerr != io.EOF && rerr != io.ErrUnexpectedEOF {
			_ = stream.CloseSend()
			return rerr
		}
		if n > 0 || first {
			c := &wizrpc.BlobChunk{Data: buf[:n]}
			if first {
				c.Digest, first = digest, false
			}
			if err := stream.Send(c); err != nil {
				_, err = stream.CloseAndRecv()
				return plain(err)
			}
		}
		if rerr != nil {
			break
		}
	}
	if _, err := stream.CloseAndRecv(); err != nil {
		return plain(err)
	}
	return nil
}

// fetch copies an output's files the Manager lacks from the executor. A
// failure is kept and fails the task when it finishes.
func (r *remote) fetch(taskID string, out *wizrpc.Output) {
	for _, f := range out.GetData().GetFiles() {
		if r.blobs.Has(f.Digest) {
			continue
		}
		if err := r.get(f); err != nil {
			r.mu.Lock()
			if r.failed[taskID] == nil {
				r.failed[taskID] = fmt.Errorf("fetch output %s file %s (%s) from %s: %w", out.Name, f.Name, f.Digest, r.c.name, err)
			}
			r.mu.Unlock()
			return
		}
	}
}

func (r *remote) fetchErr(taskID string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	err := r.failed[taskID]
	delete(r.failed, taskID)
	return err
}

func (r *remote) get(f *wizpb.FileRef) error {
	stream, err := r.api.GetBlob(context.Background(), &wizrpc.GetBlobRequest{Digest: f.Digest})
	if err != nil {
		return plain(err)
	}
	w, err := r.blobs.Create()
	if err != nil {
		return err
	}
	defer w.Abort()
	for {
		c, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return plain(err)
		}
		if _, err := w.Write(c.Data); err != nil {
			return err
		}
	}
	if _, err := w.CommitExpect(f.Digest); err != nil {
		if errors.Is(err, blob.ErrDigestMismatch) {
			return fmt.Errorf("the executor sent different bytes: %w", err)
		}
		return err
	}
	return nil
}
