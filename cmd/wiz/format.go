package main

import (
	"encoding/json"
	"fmt"
	"os"

	"go.yaml.in/yaml/v3"
)

// Format is the -o flag of every command that prints data: text (tables, for
// people), or json or yaml, which have the same keys (one table in
// docs/cli.md).
type Format struct {
	Output string `short:"o" enum:"text,json,yaml" default:"text" help:"Output format: text, json or yaml."`
}

// Data reports whether the data is to be printed as json or yaml.
func (f Format) Data() bool { return f.Output == "json" || f.Output == "yaml" }

// Print prints v, a value encoding/json marshals, as json or yaml.
func (f Format) Print(v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", f.Output, err)
	}
	if f.Output == "yaml" {
		// JSON is YAML: read it as YAML nodes (keeping the key order) and
		// write them in block style.
		var doc yaml.Node
		if err := yaml.Unmarshal(b, &doc); err != nil {
			return fmt.Errorf("encode yaml: %w", err)
		}
		blockStyle(&doc)
		enc := yaml.NewEncoder(os.Stdout)
		enc.SetIndent(2)
		if err := enc.Encode(&doc); err != nil {
			return fmt.Errorf("encode yaml: %w", err)
		}
		return enc.Close()
	}
	_, err = fmt.Println(string(b))
	return err
}

// blockStyle turns nodes read from JSON (flow style, double-quoted strings)
// into YAML's usual block style, quoting only what needs it.
func blockStyle(n *yaml.Node) {
	if n.Kind == yaml.MappingNode || n.Kind == yaml.SequenceNode {
		n.Style = 0
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!str" {
		n.Style = 0
	}
	for _, c := range n.Content {
		blockStyle(c)
	}
}
