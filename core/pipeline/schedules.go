package pipeline

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/wiz-run/wiz/core/schedule"
)

// Schedule is an entry of the pipeline's `schedules:`.
type Schedule struct {
	Name     string
	Cron     string
	Timezone string // IANA name; "" is UTC
	// Inputs are the run's inputs as command-line text, checked at apply.
	Inputs  map[string]string
	Overlap string        // schedule.Overlap*; default skip
	Catchup time.Duration // 0: missed ticks are skipped
	Spec    *schedule.Spec
	Pos     Position
	// inputPos is where each input is given.
	inputPos map[string]Position
}

// Schedule returns the schedule called name.
func (p *Pipeline) Schedule(name string) (*Schedule, bool) {
	for _, s := range p.Schedules {
		if s.Name == name {
			return s, true
		}
	}
	return nil, false
}

var scheduleKeys = []string{"catchup", "cron", "inputs", "overlap", "timezone"}

func (d *decoder) schedules(e entry) []*Schedule {
	entries, ok := d.mapping(e.val, "schedules", "schedule")
	if !ok {
		return nil
	}
	var out []*Schedule
	for _, se := range entries {
		if !identRE.MatchString(se.key) {
			d.errorf(se.keyPos, "invalid schedule name %q: use letters, digits, \"_\" and \"-\"", se.key)
			continue
		}
		sc := &Schedule{Name: se.key, Overlap: schedule.OverlapSkip, Pos: se.keyPos}
		fields, ok := d.mapping(se.val, "schedule "+se.key, "key")
		if !ok {
			continue
		}
		var cronPos, tzPos Position
		for _, f := range fields {
			switch f.key {
			case "cron":
				sc.Cron, _ = d.str(f)
				cronPos = f.valPos
			case "timezone":
				sc.Timezone, _ = d.str(f)
				tzPos = f.valPos
			case "overlap":
				v, _ := d.str(f)
				if !slices.Contains(schedule.Overlaps, v) {
					d.errorf(f.valPos, "schedule %s: overlap %q: want one of %s", se.key, v, strings.Join(schedule.Overlaps, ", "))
				}
				sc.Overlap = v
			case "catchup":
				sc.Catchup = d.catchup(f, se.key)
			case "inputs":
				sc.Inputs, sc.inputPos = d.scheduleInputs(f)
			default:
				d.unknownKey(f, "in schedule "+se.key, scheduleKeys)
			}
		}
		if sc.Cron == "" {
			d.errorf(se.keyPos, "schedule %s has no cron: write cron: \"30 2 * * *\" (or @daily, @every 10m)", se.key)
			continue
		}
		spec, err := schedule.Parse(sc.Cron, sc.Timezone)
		if err != nil {
			pos := cronPos
			if strings.HasPrefix(err.Error(), "timezone") {
				pos = tzPos
			}
			d.errorf(pos, "schedule %s: %v", se.key, err)
			continue
		}
		sc.Spec = spec
		out = append(out, sc)
	}
	return out
}

func (d *decoder) catchup(f entry, name string) time.Duration {
	if isString(f.val) {
		if t, err := ParseAge(f.val.Value); err == nil {
			return t
		}
	}
	if _, v := scalar(f.val); v == int64(0) {
		return 0
	}
	d.errorf(f.valPos, "schedule %s: catchup must be a duration like \"1h\", \"30m\" or \"2d\" (0: skip missed ticks), got %s", name, describe(f.val))
	return 0
}

// scheduleInputs reads a schedule's inputs as command-line text.
func (d *decoder) scheduleInputs(f entry) (map[string]string, map[string]Position) {
	entries, ok := d.mapping(f.val, "inputs", "input")
	if !ok {
		return nil, nil
	}
	out, pos := map[string]string{}, map[string]Position{}
	for _, ie := range entries {
		v, ok := d.value(ie.val)
		if !ok {
			continue
		}
		var text string
		switch x := v.(type) {
		case string:
			text = x
		case nil:
			d.errorf(ie.valPos, "input %s: give a value", ie.key)
			continue
		case bool, int64, uint64:
			text = fmt.Sprint(x)
		case float64:
			text = strconv.FormatFloat(x, 'g', -1, 64)
		default:
			b, err := json.Marshal(x)
			if err != nil {
				d.errorf(ie.valPos, "input %s: %v", ie.key, err)
				continue
			}
			text = string(b)
		}
		out[ie.key], pos[ie.key] = text, ie.valPos
	}
	return out, pos
}

// checkSchedules checks each schedule's inputs against the pipeline's
// declared inputs, as --input would be.
func (p *Pipeline) checkSchedules(errorf func(Position, string, ...any)) {
	for _, sc := range p.Schedules {
		for _, name := range slices.Sorted(mapKeys(sc.Inputs)) {
			decl, ok := p.Input(name)
			switch {
			case !ok:
				errorf(sc.inputPos[name], "schedule %s: pipeline %s has no input %q", sc.Name, p.Name, name)
			case decl.Type == InputFile:
				errorf(sc.inputPos[name], "schedule %s: input %s is a file, which a schedule cannot give; give it a default or use a file trigger", sc.Name, name)
			default:
				if err := decl.Check(sc.Inputs[name]); err != nil {
					errorf(sc.inputPos[name], "schedule %s: input %s: %v", sc.Name, name, err)
				}
			}
		}
		for _, decl := range p.Inputs {
			if _, given := sc.Inputs[decl.Name]; !given && decl.Default == nil {
				errorf(sc.Pos, "schedule %s does not give input %s, which has no default: add inputs: {%s: VALUE}", sc.Name, decl.Name, decl.Name)
			}
		}
	}
}

// Retention is a pipeline's `retention:`: the daemon keeps at most Runs
// top-level runs of it (0: any number) and none that ended more than Age ago
// (0: any age).
type Retention struct {
	Runs int
	Age  time.Duration
}

func (d *decoder) retention(e entry) *Retention {
	fields, ok := d.mapping(e.val, "retention", "key")
	if !ok {
		return nil
	}
	r := &Retention{}
	for _, f := range fields {
		switch f.key {
		case "runs":
			n, ok := d.count(f)
			if ok && n < 1 {
				d.errorf(f.valPos, "retention.runs must be at least 1 (leave it out to keep any number)")
			}
			r.Runs = n
		case "age":
			r.Age = d.age(f)
		default:
			d.unknownKey(f, "in retention", []string{"age", "runs"})
		}
	}
	if r.Runs == 0 && r.Age == 0 {
		d.errorf(e.keyPos, "retention needs runs: N or age: DURATION (like {runs: 100, age: 30d})")
	}
	return r
}

// age reads a positive duration: 90m, 12h, 30d.
func (d *decoder) age(f entry) time.Duration {
	if isString(f.val) {
		if a, err := ParseAge(f.val.Value); err == nil && a > 0 {
			return a
		}
	}
	d.errorf(f.valPos, "%s must be a positive duration like \"12h\" or \"30d\", got %s", f.key, describe(f.val))
	return 0
}

// ParseAge reads a duration that may also be given in days: 90m, 12h, 30d.
func ParseAge(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("%q: want a duration like 12h or 30d", s)
		}
		if max := int64(math.MaxInt64 / int64(24*time.Hour)); int64(n) > max {
			return 0, fmt.Errorf("%q: at most %dd (about 292 years)", s, max)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	a, err := time.ParseDuration(s)
	if err != nil || a < 0 {
		return 0, fmt.Errorf("%q: want a duration like 12h or 30d", s)
	}
	return a, nil
}
