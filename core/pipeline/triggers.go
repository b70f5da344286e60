package pipeline

import (
	"path/filepath"
	"time"
)

// Trigger returns the trigger called name.
func (p *Pipeline) Trigger(name string) (*Trigger, bool) {
	for _, t := range p.Triggers {
		if t.Name == name {
			return t, true
		}
	}
	return nil, false
}

// Trigger is an entry of the pipeline's `triggers:`: a file trigger (Files
// set) or a webhook (Webhook set).
type Trigger struct {
	Name    string
	Files   *FileTrigger
	Webhook *WebhookTrigger
	Pos     Position
}

// WebhookTrigger starts a run per authenticated POST to
// /hooks/PIPELINE/NAME on wiz daemon's port; the JSON body's fields are the
// run's inputs.
type WebhookTrigger struct{}

// FileTrigger starts one run per new file in Path whose name matches
// Pattern, once it has stopped growing for Settle, with the file as the
// pipeline's file input Input.
type FileTrigger struct {
	Path, Pattern, Input string
	Settle               time.Duration
	inputPos             Position
}

// DefaultSettle is how long a file must stop changing before a file
// trigger takes it.
const DefaultSettle = 2 * time.Second

func (d *decoder) triggers(e entry) []*Trigger {
	entries, ok := d.mapping(e.val, "triggers", "trigger")
	if !ok {
		return nil
	}
	var out []*Trigger
	for _, te := range entries {
		if !identRE.MatchString(te.key) {
			d.errorf(te.keyPos, "invalid trigger name %q: use letters, digits, \"_\" and \"-\"", te.key)
			continue
		}
		kinds, ok := d.mapping(te.val, "trigger "+te.key, "kind")
		if !ok {
			continue
		}
		if len(kinds) != 1 {
			d.errorf(te.keyPos, "trigger %s needs exactly one of files: or webhook:", te.key)
			continue
		}
		k := kinds[0]
		switch k.key {
		case "files":
			if ft := d.fileTrigger(te.key, k); ft != nil {
				out = append(out, &Trigger{Name: te.key, Files: ft, Pos: te.keyPos})
			}
		case "webhook":
			if fields, ok := d.mapping(k.val, "trigger "+te.key+" webhook", "key"); ok {
				for _, f := range fields {
					d.errorf(f.keyPos, "unknown key %q in trigger %s webhook: it takes none (webhook: {})", f.key, te.key)
				}
				out = append(out, &Trigger{Name: te.key, Webhook: &WebhookTrigger{}, Pos: te.keyPos})
			}
		default:
			d.unknownKey(k, "in trigger "+te.key, []string{"files", "webhook"})
		}
	}
	return out
}

func (d *decoder) fileTrigger(name string, e entry) *FileTrigger {
	fields, ok := d.mapping(e.val, "trigger "+name+" files", "key")
	if !ok {
		return nil
	}
	ft := &FileTrigger{Pattern: "*", Settle: DefaultSettle}
	for _, f := range fields {
		switch f.key {
		case "path":
			v, _ := d.str(f)
			if !filepath.IsAbs(v) {
				d.errorf(f.valPos, "trigger %s: path %q must be an absolute directory path (the daemon's working directory is not the file's)", name, v)
			}
			ft.Path = filepath.Clean(v)
		case "pattern":
			v, _ := d.str(f)
			if _, err := filepath.Match(v, ""); err != nil {
				d.errorf(f.valPos, "trigger %s: pattern %q is not a valid glob (like *.csv): %v", name, v, err)
			}
			ft.Pattern = v
		case "input":
			ft.Input, _ = d.str(f)
			ft.inputPos = f.valPos
		case "settle":
			if isString(f.val) {
				if t, err := time.ParseDuration(f.val.Value); err == nil && t >= 0 {
					ft.Settle = t
					continue
				}
			}
			d.errorf(f.valPos, "trigger %s: settle must be a duration like \"2s\", got %s", name, describe(f.val))
		default:
			d.unknownKey(f, "in trigger "+name+" files", []string{"input", "path", "pattern", "settle"})
		}
	}
	if ft.Path == "" || ft.Input == "" {
		d.errorf(e.keyPos, "trigger %s: files needs path: (a directory) and input: (the pipeline's file input that gets each file)", name)
		return nil
	}
	return ft
}

// checkTriggers checks each file trigger's input against the pipeline's
// declared inputs: a file input, and every other input has a default.
func (p *Pipeline) checkTriggers(errorf func(Position, string, ...any)) {
	for _, tr := range p.Triggers {
		ft := tr.Files
		if ft == nil {
			continue // a webhook: its inputs are checked per request
		}
		decl, ok := p.Input(ft.Input)
		switch {
		case !ok:
			errorf(ft.inputPos, "trigger %s: pipeline %s has no input %q; declare it: inputs: {%s: {type: file}}", tr.Name, p.Name, ft.Input, ft.Input)
		case decl.Type != InputFile:
			errorf(ft.inputPos, "trigger %s: input %s is of type %s; a file trigger gives a file input (type: file)", tr.Name, ft.Input, decl.Type)
		}
		for _, in := range p.Inputs {
			if in.Name != ft.Input && in.Default == nil {
				errorf(tr.Pos, "trigger %s gives only input %s, and input %s has no default", tr.Name, ft.Input, in.Name)
			}
		}
	}
}
