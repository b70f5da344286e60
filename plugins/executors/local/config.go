package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/wiz-run/wiz/sdk/executor"
)

// config is what a pipeline may set under `executor:` for the local backend.
type config struct {
	// Isolated runs the executor as if it were on another machine: it keeps
	// its own blob store, and the Manager streams packs and input blobs to it
	// and output blobs back, as it does for a Kubernetes pod.
	Isolated bool `json:"isolated"`
	// Resources (requests and limits) are for backends that place work on
	// nodes; the local backend accepts and ignores them, so that a pipeline
	// can move between backends unchanged.
	Resources json.RawMessage `json:"resources"`
}

func parseConfig(raw []byte) (config, error) {
	var c config
	if len(raw) == 0 {
		return c, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		msg := err.Error()
		if f, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
			return c, fmt.Errorf("local executor: unknown setting %s under executor (valid: %s)", f, strings.Join(settingNames, ", "))
		}
		return c, fmt.Errorf("local executor: settings under executor: %s", msg)
	}
	return c, nil
}

// settingNames are the settings the local backend takes.
var settingNames = []string{"isolated", "resources"}

// ValidateSettings implements executor.SettingsValidator: wiz asks it when
// a pipeline is applied, so that a misspelt setting fails there, at its
// position, not when a run starts.
func (b *backend) ValidateSettings(settings map[string]any) []executor.Diagnostic {
	return executor.CheckSettings(settings, settingNames, func(raw []byte) error {
		_, err := parseConfig(raw)
		return err
	})
}
