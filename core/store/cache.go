package store

import (
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
	"google.golang.org/protobuf/proto"

	"github.com/wiz-run/wiz/proto/wizpb"
)

// pCache prefixes cache entries: c/<key>.
const pCache = "c/"

// PutCache stages a cache entry, replacing one under the same key.
func (b *Batch) PutCache(e *wizpb.CacheEntry) error { return b.put(pCache+e.Key, e) }

// Cache returns the entry under key, or an error matching ErrNotFound.
func (s *Store) Cache(key string) (*wizpb.CacheEntry, error) {
	e := &wizpb.CacheEntry{}
	if err := s.get(pCache+key, e); err != nil {
		return nil, fmt.Errorf("cache entry %s: %w", key, err)
	}
	return e, nil
}

// CacheEntries calls fn with every cache entry, in key order, until it
// returns false.
func (s *Store) CacheEntries(fn func(*wizpb.CacheEntry) bool) error {
	err := s.scan(pCache, false, func(_, v []byte) (bool, error) {
		e := &wizpb.CacheEntry{}
		if err := proto.Unmarshal(v, e); err != nil {
			return false, err
		}
		return fn(e), nil
	})
	if err != nil {
		return fmt.Errorf("read the cache: %w", err)
	}
	return nil
}

// ClearCache deletes the cache entries of a pipeline, or every entry when
// pipeline is empty, and returns how many it deleted.
func (s *Store) ClearCache(pipeline string) (int, error) {
	var keys []string
	if err := s.CacheEntries(func(e *wizpb.CacheEntry) bool {
		if pipeline == "" || e.Pipeline == pipeline {
			keys = append(keys, pCache+e.Key)
		}
		return true
	}); err != nil {
		return 0, err
	}
	if err := s.room(0, true); err != nil {
		return 0, fmt.Errorf("clear the cache: %w", err)
	}
	txn := s.db.NewTransaction(true)
	for _, k := range keys {
		err := txn.Delete([]byte(k))
		if errors.Is(err, badger.ErrTxnTooBig) {
			if err := txn.Commit(); err != nil {
				return 0, fmt.Errorf("clear the cache: %w", err)
			}
			txn = s.db.NewTransaction(true)
			err = txn.Delete([]byte(k))
		}
		if err != nil {
			txn.Discard()
			return 0, fmt.Errorf("clear the cache: %w", err)
		}
	}
	if err := txn.Commit(); err != nil {
		return 0, fmt.Errorf("clear the cache: %w", err)
	}
	return len(keys), nil
}
