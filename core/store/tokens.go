package store

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/wiz-run/wiz/proto/wizpb"
)

// pToken keys tokens by the hash of their secret: t/<hex sha256>.
const pToken = "t/"

// PutToken stores a token.
func (s *Store) PutToken(t *wizpb.Token) error {
	b := s.Batch()
	if err := b.put(pToken+t.Hash, t); err != nil {
		return err
	}
	if err := b.Commit(); err != nil {
		return err
	}
	return s.db.Sync()
}

// TokenByHash returns the token whose secret hashes to hash.
func (s *Store) TokenByHash(hash string) (*wizpb.Token, error) {
	t := &wizpb.Token{}
	if err := s.get(pToken+hash, t); err != nil {
		return nil, fmt.Errorf("token: %w", err)
	}
	return t, nil
}

// Tokens lists every token.
func (s *Store) Tokens() ([]*wizpb.Token, error) {
	var out []*wizpb.Token
	err := s.scan(pToken, false, func(_, v []byte) (bool, error) {
		t := &wizpb.Token{}
		out = append(out, t)
		return true, proto.Unmarshal(v, t)
	})
	return out, err
}
