package store

import (
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
	"google.golang.org/protobuf/proto"

	"github.com/wiz-run/wiz/proto/wizpb"
)

// pSecret keys secrets by name: x/<name>. Values are stored encrypted
// (core/secrets); the store never sees one in plain text.
const pSecret = "x/"

// PutSecret stores a secret, replacing one of the same name, synced.
func (s *Store) PutSecret(sec *wizpb.Secret) error {
	b := s.Batch()
	if err := b.put(pSecret+sec.Name, sec); err != nil {
		return err
	}
	if err := b.Commit(); err != nil {
		return fmt.Errorf("store secret %s: %w", sec.Name, err)
	}
	return s.db.Sync()
}

// Secret returns the secret called name, or an error matching ErrNotFound.
func (s *Store) Secret(name string) (*wizpb.Secret, error) {
	sec := &wizpb.Secret{}
	if err := s.get(pSecret+name, sec); err != nil {
		return nil, fmt.Errorf("secret %s: %w", name, err)
	}
	return sec, nil
}

// Secrets lists every secret, by name.
func (s *Store) Secrets() ([]*wizpb.Secret, error) {
	var out []*wizpb.Secret
	err := s.scan(pSecret, false, func(_, v []byte) (bool, error) {
		sec := &wizpb.Secret{}
		out = append(out, sec)
		return true, proto.Unmarshal(v, sec)
	})
	if err != nil {
		return nil, fmt.Errorf("list secrets: %w", err)
	}
	return out, nil
}

// DeleteSecret removes the secret called name; ErrNotFound when there is none.
func (s *Store) DeleteSecret(name string) error {
	if err := s.room(0, true); err != nil {
		return err
	}
	err := s.db.Update(func(txn *badger.Txn) error {
		if _, err := txn.Get([]byte(pSecret + name)); err != nil {
			if errors.Is(err, badger.ErrKeyNotFound) {
				return ErrNotFound
			}
			return err
		}
		return txn.Delete([]byte(pSecret + name))
	})
	if err != nil {
		return fmt.Errorf("secret %s: %w", name, err)
	}
	return s.db.Sync()
}
