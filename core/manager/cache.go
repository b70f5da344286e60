package manager

// This file is the reuse of unchanged results (cache:): a processor whose
// result may be reused gets, at dispatch, the digest of everything that
// determines it; a Succeeded processor with the same digest in any earlier
// run lends its outputs instead of running again.

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"hash"
	"maps"
	"slices"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/wiz-run/wiz/core/store"
	"github.com/wiz-run/wiz/proto/wizpb"
)

// cacheKeyVersion changes when what goes into a key changes.
const cacheKeyVersion = "wiz-cache-v1"

// cacheKey returns the digest of what determines pr's result: the pack's
// name, version and sha256; the type; the executor backend and its
// settings; the resources; the resolved config (expressions evaluated); the
// declared env (the pipeline's env and defaults.env; with.env and clean_env
// are in the config) and the values of a script's expressions, never the
// executor's inherited environment; the output limits; each input's
// digest; and each secret the task uses, by an HMAC of its value. Files a program reads that are not inputs are not in it (see
// docs/pipelines.md). The program a native plan runs is resolved on the
// executor: its sha256 is kept with the result, and a hit needs the executor
// to find it unchanged (dispatch).
func (r *run) cacheKey(pr *proc, t *Task) string {
	h := sha256.New()
	put := func(s string) {
		var n [binary.MaxVarintLen64]byte
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(s)))])
		h.Write([]byte(s))
	}
	put(cacheKeyVersion)
	put(t.Type)
	put(pr.pack.Name)
	put(pr.pack.Version)
	put(pr.pack.SHA256)
	put(pr.exec)
	res, _ := json.Marshal(pr.node.Resources) // map keys sorted
	put(string(res))
	put(string(t.Config))
	putMap(put, t.Env)
	putMap(put, t.ExprEnv)
	putMap(put, t.FileEnv)
	put(string(binary.AppendVarint(nil, t.InlineMax)))
	put(string(binary.AppendVarint(nil, t.MaxOutput)))
	for _, name := range slices.Sorted(maps.Keys(t.Inputs)) {
		put(name)
		putData(h, put, t.Inputs[name])
	}
	// A secret by a keyed digest of its value: a rotated secret is a miss,
	// and the key reveals nothing of the value.
	putMap(put, t.SecretFiles)
	for _, name := range slices.Sorted(maps.Keys(t.Secrets)) {
		mac, err := r.m.secrets.MAC(t.Secrets[name])
		if err != nil {
			return "" // no key, no reuse
		}
		put(name)
		put(mac)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func putMap(put func(string), m map[string]string) {
	put(string(binary.AppendUvarint(nil, uint64(len(m)))))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		put(k)
		put(m[k])
	}
}

// putData adds a Wiz Data value by digest: inline bytes are hashed, files
// are named by their digests.
func putData(h hash.Hash, put func(string), d *wizpb.Data) {
	put(d.GetContentType())
	sum := sha256.Sum256(d.GetInline())
	put(hex.EncodeToString(sum[:]))
	for _, f := range d.GetFiles() {
		put(f.Name)
		put(f.Digest)
		put(string(binary.AppendVarint(nil, f.Size)))
	}
}

// cacheEntry returns the cached result under pr's key, when there is one
// young enough whose files are all still in the blob store.
func (r *run) cacheEntry(pr *proc) *wizpb.CacheEntry {
	e, err := r.m.store.Cache(pr.cacheKey)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			r.m.log.Warn("read the cache", "processor", pr.rec.Name, "error", err)
		}
		return nil
	}
	if ttl := pr.node.Cache.TTL; ttl > 0 && time.Since(e.Created.AsTime()) > ttl {
		return nil
	}
	for _, d := range e.Outputs {
		for _, f := range d.Files {
			if !r.m.blobs.Has(f.Digest) {
				return nil
			}
		}
	}
	return e
}

// cacheHit ends processor i, a pack-run type, with the outputs of cached
// result e. (A native program's hit is confirmed by its executor first,
// which checks that the program is unchanged: see dispatch.)
func (r *run) cacheHit(i int, e *wizpb.CacheEntry) {
	pr := r.procs[i]
	pr.rec.CachedFrom = e.RunId
	id := "cache/" + pr.rec.Name
	r.tasks[id] = i
	pr.taskID = id
	r.handle(&TaskEvent{TaskID: id, Kind: EventFinished, Outcome: OutcomeSucceeded, Outputs: e.Outputs, Metrics: e.Metrics})
}

// remember stores a succeeded processor's result under its cache key.
func (r *run) remember(pr *proc) {
	_ = r.w.Batch().PutCache(&wizpb.CacheEntry{
		Key: pr.cacheKey, Pipeline: r.p.Name, Processor: pr.rec.Name, Type: pr.node.Uses, RunId: r.rec.Id,
		Created: timestamppb.Now(), Outputs: pr.outputs, Metrics: pr.rec.Metrics, ProgramSha256: pr.program,
	})
}

// CacheEntries implements API.
func (m *Manager) CacheEntries() ([]*wizpb.CacheEntry, error) {
	var out []*wizpb.CacheEntry
	err := m.store.CacheEntries(func(e *wizpb.CacheEntry) bool {
		out = append(out, e)
		return true
	})
	return out, err
}

// ClearCache implements API.
func (m *Manager) ClearCache(pipeline string) (int, error) { return m.store.ClearCache(pipeline) }
