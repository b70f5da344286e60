package manager

// This file is the Manager's side of webhook triggers: their secrets
// (kept hashed), and starting a run from a request, idempotently.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/wiz-run/wiz/core/ids"
	"github.com/wiz-run/wiz/core/pipeline"
	"github.com/wiz-run/wiz/core/store"
	"github.com/wiz-run/wiz/proto/wizpb"
)

// webhookSecretLen is the length of a webhook secret, of [A-Za-z0-9_].
const webhookSecretLen = 40

const secretAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_"

func newWebhookSecret() (string, error) {
	b := make([]byte, webhookSecretLen)
	for i := range b {
		n, err := rand.Int(rand.Reader, big.NewInt(int64(len(secretAlphabet))))
		if err != nil {
			return "", fmt.Errorf("make a webhook secret: %w", err)
		}
		b[i] = secretAlphabet[n.Int64()]
	}
	return string(b), nil
}

func hashSecret(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// webhook returns the webhook trigger NAME of PIPELINE's newest version.
func (m *Manager) webhook(pipelineName, name string) (*pipeline.Pipeline, error) {
	pl, err := m.store.Pipeline(pipelineName)
	if errors.Is(err, store.ErrNotFound) {
		return nil, notFoundf("pipeline %s does not exist", pipelineName)
	}
	if err != nil {
		return nil, err
	}
	p, err := m.latestParsed(pl)
	if err != nil {
		return nil, err
	}
	if tr, ok := p.Trigger(name); !ok || tr.Webhook == nil {
		return nil, notFoundf("pipeline %s has no webhook trigger %q", pipelineName, name)
	}
	return p, nil
}

// WebhookSecret returns a new secret for the webhook trigger NAME of
// PIPELINE when it has none, or when rotate; "" when it keeps the one it
// has. Only its hash is stored.
func (m *Manager) WebhookSecret(pipelineName, name string, rotate bool) (string, error) {
	if _, err := m.webhook(pipelineName, name); err != nil {
		return "", err
	}
	m.schedMu.Lock()
	defer m.schedMu.Unlock()
	if _, err := m.store.WebhookSecret(pipelineName, name); err == nil && !rotate {
		return "", nil
	} else if err != nil && !errors.Is(err, store.ErrNotFound) {
		return "", err
	}
	secret, err := newWebhookSecret()
	if err != nil {
		return "", err
	}
	t := &wizpb.Token{Id: ids.NewString(), Name: pipelineName + "/" + name, Hash: hashSecret(secret), Created: timestamppb.Now()}
	if err := m.store.PutWebhookSecret(pipelineName, name, t); err != nil {
		return "", err
	}
	return secret, nil
}

// TriggerURL implements API: an in-process Manager serves no webhooks.
func (m *Manager) TriggerURL(pipelineName, name string, rotate bool) (string, string, error) {
	return "", "", fmt.Errorf("%w: webhooks are served by wiz daemon: ask it (--server, or WIZ_HOME=ITS_DATA_DIR while it runs)", ErrUsage)
}

// Webhook errors, for the HTTP status a request gets.
var (
	ErrWebhookAuth = errors.New("webhook: missing or wrong secret")
	ErrWebhookBody = errors.New("webhook: bad request")
)

// Webhook starts the run of one request to the webhook trigger NAME of
// PIPELINE: secret is the request's bearer token, body its JSON object of
// inputs (empty: none), idem its Idempotency-Key ("" for none). A request
// with a key already used returns that run with replay true. Errors match
// ErrNotFound (no such trigger), ErrWebhookAuth, or ErrWebhookBody (with
// the message --input would give); a run that started goes on when the
// request ends.
func (m *Manager) Webhook(pipelineName, name, secret, idem string, body []byte) (id string, replay bool, err error) {
	p, err := m.webhook(pipelineName, name)
	if err != nil {
		return "", false, err
	}
	t, err := m.store.WebhookSecret(pipelineName, name)
	if errors.Is(err, store.ErrNotFound) || err == nil && subtle.ConstantTimeCompare([]byte(t.Hash), []byte(hashSecret(secret))) != 1 {
		return "", false, ErrWebhookAuth
	}
	if err != nil {
		return "", false, err
	}
	inputs, err := webhookInputs(p, body)
	if err != nil {
		return "", false, fmt.Errorf("%w: %v", ErrWebhookBody, err)
	}
	source := "webhook/" + name
	event := ids.NewString()
	if idem != "" {
		sum := sha256.Sum256([]byte(idem))
		event = "idem-" + hex.EncodeToString(sum[:16])
	}
	req := RunRequest{Pipeline: pipelineName, Inputs: inputs, Trigger: source, ScheduledTime: m.clock.Now(),
		fire: &fireReq{pipeline: pipelineName, schedule: source, event: event}}
	id, err = m.startFired(context.Background(), &m.backfills, req, nil)
	switch {
	case err == nil:
		return id, false, nil
	case errors.Is(err, errFired):
		f, ferr := m.store.Fire(pipelineName, source, event)
		if ferr != nil || len(f.RunIds) == 0 {
			return "", false, fmt.Errorf("webhook: the run of this Idempotency-Key: %w", ferr)
		}
		return f.RunIds[0], true, nil
	case errors.Is(err, ErrUsage):
		return "", false, fmt.Errorf("%w: %v", ErrWebhookBody, strings.TrimPrefix(err.Error(), ErrUsage.Error()+": "))
	}
	return "", false, err
}

// webhookInputs reads a request's body: a JSON object whose fields are the
// run's inputs, each a JSON value or a string in command-line syntax.
func webhookInputs(p *pipeline.Pipeline, body []byte) (map[string]InputValue, error) {
	out := map[string]InputValue{}
	if len(bytes.TrimSpace(body)) == 0 {
		return out, nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var fields map[string]any
	if err := dec.Decode(&fields); err != nil || fields == nil {
		return nil, errors.New("the body must be a JSON object of inputs, like {\"env\": \"prod\"}")
	}
	if dec.More() {
		return nil, errors.New("the body must be one JSON object")
	}
	for _, k := range slices.Sorted(mapKeys(fields)) {
		decl, ok := p.Input(k)
		if !ok {
			continue // the run says so, as --input does
		}
		if decl.Type == pipeline.InputFile {
			return nil, fmt.Errorf("input %s is a file, which a webhook cannot give; give it a default or use a file trigger", k)
		}
		var text string
		switch v := fields[k].(type) {
		case string:
			text = v
		case json.Number:
			text = v.String()
		case bool:
			text = fmt.Sprint(v)
		case nil:
			return nil, fmt.Errorf("input %s: null is not a value", k)
		default:
			b, _ := json.Marshal(v)
			text = string(b)
		}
		out[k] = InputValue{Text: text}
	}
	for k := range fields {
		if _, ok := p.Input(k); !ok {
			out[k] = InputValue{Text: fmt.Sprint(fields[k])} // refused by the run's input check
		}
	}
	return out, nil
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}
