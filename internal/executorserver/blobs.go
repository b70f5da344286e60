package executorserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/wiz-run/wiz/proto/wizrpc"
	"github.com/wiz-run/wiz/sdk/blob"
)

// ChunkSize is the size of the chunks blobs travel in over the executor API.
const ChunkSize = 1 << 20

// HasBlobs says which blobs the executor lacks, so that a Manager sends only
// those.
func (s *Server) HasBlobs(_ context.Context, req *wizrpc.HasBlobsRequest) (*wizrpc.HasBlobsResponse, error) {
	resp := &wizrpc.HasBlobsResponse{}
	for _, d := range req.Digests {
		if !blob.ValidDigest(d) {
			return nil, status.Errorf(codes.InvalidArgument, "%q is not a sha256 digest", d)
		}
		if !s.blobs.Has(d) {
			resp.Missing = append(resp.Missing, d)
		}
	}
	return resp, nil
}

// PutBlob stores a blob streamed in chunks. Bytes that do not hash to the
// announced digest are discarded, so no partial or wrong blob is kept.
func (s *Server) PutBlob(stream wizrpc.Executor_PutBlobServer) error {
	first, err := stream.Recv()
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "put blob: no first chunk: %v", err)
	}
	digest := first.Digest
	if !blob.ValidDigest(digest) {
		return status.Errorf(codes.InvalidArgument, "put blob: %q is not a sha256 digest", digest)
	}
	w, err := s.blobs.Create()
	if err != nil {
		return status.Errorf(codes.Internal, "put blob %s: %v", digest, err)
	}
	defer w.Abort()
	for c := first; ; {
		if _, err := w.Write(c.Data); err != nil {
			return status.Errorf(codes.ResourceExhausted, "put blob %s: %v", digest, err)
		}
		if c, err = stream.Recv(); err == io.EOF {
			break
		} else if err != nil {
			return err
		}
	}
	if first.Size != 0 && w.Size() != first.Size {
		return status.Errorf(codes.DataLoss, "put blob %s: received %d of %d bytes", digest, w.Size(), first.Size)
	}
	if _, err := w.CommitExpect(digest); err != nil {
		if errors.Is(err, blob.ErrDigestMismatch) {
			return status.Error(codes.DataLoss, err.Error())
		}
		return status.Error(codes.Internal, err.Error())
	}
	return stream.SendAndClose(&wizrpc.PutBlobResponse{})
}

// GetBlob streams a blob in chunks, verifying its digest as it reads.
func (s *Server) GetBlob(req *wizrpc.GetBlobRequest, stream wizrpc.Executor_GetBlobServer) error {
	r, err := s.blobs.Open(req.Digest)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return status.Error(codes.NotFound, err.Error())
		}
		return status.Error(codes.InvalidArgument, err.Error())
	}
	defer r.Close()
	buf := make([]byte, ChunkSize)
	first := true
	for {
		n, err := io.ReadFull(r, buf)
		if n > 0 || first {
			c := &wizrpc.BlobChunk{Data: buf[:n]}
			if first {
				c.Digest = req.Digest
				first = false
			}
			if serr := stream.Send(c); serr != nil {
				return serr
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil
		}
		if err != nil {
			if errors.Is(err, blob.ErrDigestMismatch) {
				return status.Error(codes.DataLoss, err.Error())
			}
			return status.Error(codes.Internal, err.Error())
		}
	}
}

// packFromBlob makes the pack binary the Manager sent as a blob executable:
// it copies it once to <work dir>/packs/<sha256> with mode 0755. The launch
// checks its digest again, as for any pack.
func (s *Server) packFromBlob(ref *wizrpc.PackRef) (string, error) {
	digest := "sha256:" + ref.Sha256
	if !blob.ValidDigest(digest) {
		return "", fmt.Errorf("pack %s@%s: %q is not a sha256 digest", ref.Name, ref.Version, ref.Sha256)
	}
	dst := filepath.Join(s.cfg.WorkDir, "packs", ref.Sha256)
	if _, err := os.Stat(dst); err == nil {
		return dst, nil
	}
	r, err := s.blobs.Open(digest)
	if err != nil {
		return "", fmt.Errorf("pack %s@%s was not sent to this executor: %w", ref.Name, ref.Version, err)
	}
	defer r.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", fmt.Errorf("pack %s@%s: %w", ref.Name, ref.Version, err)
	}
	f, err := os.CreateTemp(filepath.Dir(dst), "pack-*")
	if err != nil {
		return "", fmt.Errorf("pack %s@%s: %w", ref.Name, ref.Version, err)
	}
	defer os.Remove(f.Name())
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return "", fmt.Errorf("pack %s@%s: copy from blob: %w", ref.Name, ref.Version, err)
	}
	if err := f.Chmod(0o755); err != nil {
		f.Close()
		return "", fmt.Errorf("pack %s@%s: %w", ref.Name, ref.Version, err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("pack %s@%s: %w", ref.Name, ref.Version, err)
	}
	if err := os.Rename(f.Name(), dst); err != nil {
		return "", fmt.Errorf("pack %s@%s: %w", ref.Name, ref.Version, err)
	}
	return dst, nil
}
