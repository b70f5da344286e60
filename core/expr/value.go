package expr

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/common/types/traits"
)

// Text renders a value as text, as a program sees it in an environment
// variable or an argv element: a string as is; an int in decimal; a double
// as strconv.FormatFloat(v, 'g', -1, 64) (0.5 → "0.5", 2.0 → "2"); a bool
// as true or false; a timestamp in RFC 3339, UTC; a duration as Go prints
// it; null as ""; lists and maps as compact JSON.
func Text(v ref.Val) (string, error) {
	switch x := v.(type) {
	case types.String:
		return string(x), nil
	case types.Int:
		return strconv.FormatInt(int64(x), 10), nil
	case types.Uint:
		return strconv.FormatUint(uint64(x), 10), nil
	case types.Double:
		return strconv.FormatFloat(float64(x), 'g', -1, 64), nil
	case types.Bool:
		return strconv.FormatBool(bool(x)), nil
	case types.Null:
		return "", nil
	case types.Timestamp:
		return x.Time.UTC().Format(time.RFC3339Nano), nil
	case types.Duration:
		return x.Duration.String(), nil
	case types.Bytes:
		return string(x), nil
	}
	n, err := native(v)
	if err != nil {
		return "", err
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(n); err != nil {
		return "", fmt.Errorf("render as JSON: %w", err)
	}
	return strings.TrimSuffix(b.String(), "\n"), nil
}

// native converts a CEL value to JSON-like Go data.
func native(v ref.Val) (any, error) {
	switch x := v.(type) {
	case types.String:
		return string(x), nil
	case types.Int:
		return int64(x), nil
	case types.Uint:
		return uint64(x), nil
	case types.Double:
		f := float64(x)
		if math.IsInf(f, 0) || math.IsNaN(f) {
			return nil, fmt.Errorf("the number %v has no JSON form", f)
		}
		return f, nil
	case types.Bool:
		return bool(x), nil
	case types.Null:
		return nil, nil
	case types.Timestamp, types.Duration, types.Bytes:
		return Text(v)
	case traits.Lister:
		var out []any
		n, _ := x.Size().(types.Int)
		for i := types.Int(0); i < n; i++ {
			item, err := native(x.Get(i))
			if err != nil {
				return nil, err
			}
			out = append(out, item)
		}
		if out == nil {
			out = []any{}
		}
		return out, nil
	case traits.Mapper:
		out := map[string]any{}
		it := x.Iterator()
		for it.HasNext() == types.True {
			k := it.Next()
			ks, err := Text(k)
			if err != nil {
				return nil, err
			}
			item, err := native(x.Get(k))
			if err != nil {
				return nil, err
			}
			out[ks] = item
		}
		return out, nil
	}
	return nil, fmt.Errorf("a value of type %s cannot be rendered as text", v.Type().TypeName())
}

// jsonDecode is json(string): the decoded value. An integral number in
// int64's range is an int, any other number a double.
func jsonDecode(v ref.Val) ref.Val {
	s, ok := v.(types.String)
	if !ok {
		return types.NewErr("json() takes a string")
	}
	d, err := DecodeJSON([]byte(s))
	if err != nil {
		return types.NewErr("json(): %v", err)
	}
	return types.DefaultTypeAdapter.NativeToValue(d)
}

// DecodeJSON decodes one JSON value: objects as map[string]any, arrays as
// []any, an integral number in int64's range as int64, other numbers as
// float64.
func DecodeJSON(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("invalid JSON: more than one value")
	}
	return numbers(v), nil
}

func numbers(v any) any {
	switch x := v.(type) {
	case json.Number:
		if i, err := strconv.ParseInt(string(x), 10, 64); err == nil {
			return i
		}
		f, _ := strconv.ParseFloat(string(x), 64)
		return f
	case []any:
		for i := range x {
			x[i] = numbers(x[i])
		}
	case map[string]any:
		for k := range x {
			x[k] = numbers(x[k])
		}
	}
	return v
}

// Input parses the text of an input of type typ into the value expressions
// see. A file input's value is a map {name, size, digest}; pass it through
// FileInput instead.
func Input(typ, text string) (any, error) {
	switch typ {
	case TypeInt:
		i, err := strconv.ParseInt(strings.TrimSpace(text), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%q is not an int (a base-10 integer)", text)
		}
		return i, nil
	case TypeNumber:
		d, err := DecodeJSON([]byte(text))
		if err != nil {
			return nil, fmt.Errorf("%q is not a number", text)
		}
		switch n := d.(type) {
		case int64:
			return float64(n), nil
		case float64:
			return n, nil
		}
		return nil, fmt.Errorf("%q is not a number", text)
	case TypeBool:
		switch strings.ToLower(text) {
		case "true":
			return true, nil
		case "false":
			return false, nil
		}
		return nil, fmt.Errorf("%q is not a bool (true or false)", text)
	case TypeJSON:
		d, err := DecodeJSON([]byte(text))
		if err != nil {
			return nil, fmt.Errorf("%q is not JSON: %v", abbreviate(text), err)
		}
		return d, nil
	}
	return text, nil
}

// JSONText encodes a JSON-like Go value as compact JSON.
func JSONText(v any) (string, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return "", err
	}
	return strings.TrimSuffix(b.String(), "\n"), nil
}

// FileInput is the value of a file input: {name, size, digest}.
func FileInput(name string, size int64, digest string) map[string]any {
	return map[string]any{"name": name, "size": size, "digest": digest}
}

func abbreviate(s string) string {
	if len(s) > 60 {
		return s[:57] + "..."
	}
	return s
}
