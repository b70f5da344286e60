package manager

// This file is the Manager's side of secrets: storing them encrypted,
// checking at apply that a pipeline's secrets exist, and resolving a task's
// secrets at dispatch, for the executor alone.

import (
	"errors"
	"fmt"
	"slices"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/wiz-run/wiz/core/pipeline"
	"github.com/wiz-run/wiz/core/secrets"
	"github.com/wiz-run/wiz/core/store"
	"github.com/wiz-run/wiz/proto/wizpb"
)

// errNoKeyring is returned when a Manager made without a secrets key is
// asked for a secret.
var errNoKeyring = errors.New("this wiz has no secrets key configured")

// SetSecret implements API.
func (m *Manager) SetSecret(name string, value []byte) (*wizpb.Secret, bool, error) {
	if err := secrets.CheckName(name); err != nil {
		return nil, false, fmt.Errorf("%w: %v", ErrUsage, err)
	}
	if len(value) > secrets.MaxValue {
		return nil, false, fmt.Errorf("%w: secret %s is %d bytes, over the %d KiB a secret may hold", ErrUsage, name, len(value), secrets.MaxValue>>10)
	}
	if m.secrets == nil {
		return nil, false, errNoKeyring
	}
	ct, err := m.secrets.Encrypt(value)
	if err != nil {
		return nil, false, fmt.Errorf("secret %s: %w", name, err)
	}
	now := timestamppb.Now()
	sec := &wizpb.Secret{Name: name, Ciphertext: ct, Created: now, Updated: now}
	old, err := m.store.Secret(name)
	switch {
	case err == nil:
		sec.Created = old.Created
	case !errors.Is(err, store.ErrNotFound):
		return nil, false, err
	}
	if err := m.store.PutSecret(sec); err != nil {
		return nil, false, err
	}
	return withoutValue(sec), old == nil, nil
}

// Secrets implements API.
func (m *Manager) Secrets() ([]*wizpb.Secret, error) {
	ss, err := m.store.Secrets()
	if err != nil {
		return nil, err
	}
	for i, s := range ss {
		ss[i] = withoutValue(s)
	}
	return ss, nil
}

// DeleteSecret implements API.
func (m *Manager) DeleteSecret(name string) error {
	if err := m.store.DeleteSecret(name); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return notFoundf("secret %s does not exist (wiz secret list shows them)", name)
		}
		return err
	}
	return nil
}

func withoutValue(s *wizpb.Secret) *wizpb.Secret {
	c := proto.Clone(s).(*wizpb.Secret)
	c.Ciphertext = nil
	return c
}

// checkSecrets reports, at apply, each secret p uses that does not exist.
func (m *Manager) checkSecrets(p *pipeline.Pipeline) error {
	refs := p.SecretRefs()
	if len(refs) == 0 {
		return nil
	}
	var errs pipeline.ErrorList
	for _, ref := range refs {
		if _, err := m.store.Secret(ref.Name); err != nil {
			if !errors.Is(err, store.ErrNotFound) {
				return err
			}
			errs = append(errs, &pipeline.Error{Pos: ref.Pos, Msg: fmt.Sprintf("secret %s does not exist: set it with `wiz secret set %s`", ref.Name, ref.Name)})
		}
	}
	if len(errs) > 0 {
		return &ValidationError{Errs: errs}
	}
	return nil
}

// resolveSecrets returns the values of the secrets names, for one task.
func (m *Manager) resolveSecrets(names []string) (map[string][]byte, error) {
	if len(names) == 0 {
		return nil, nil
	}
	if m.secrets == nil {
		return nil, errNoKeyring
	}
	out := make(map[string][]byte, len(names))
	for _, name := range slices.Compact(slices.Sorted(slices.Values(names))) {
		sec, err := m.store.Secret(name)
		if err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return nil, fmt.Errorf("secret %s does not exist (it was removed after the pipeline was applied): set it with `wiz secret set %s`", name, name)
			}
			return nil, err
		}
		v, err := m.secrets.Decrypt(sec.Ciphertext)
		if err != nil {
			return nil, fmt.Errorf("secret %s: %w", name, err)
		}
		out[name] = v
	}
	return out, nil
}
