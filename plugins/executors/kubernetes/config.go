package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/wiz-run/wiz/sdk/executor"
)

// defaultReadyTimeout bounds how long Provision waits for a pod to be Ready.
const defaultReadyTimeout = 3 * time.Minute

// config is what a pipeline may set under `executor:` for this backend, plus
// the processor's `resources`, which the Manager adds.
type config struct {
	Namespace        string              `json:"namespace"`
	Image            string              `json:"image"`
	ImagePullPolicy  string              `json:"imagePullPolicy"`
	ServiceAccount   string              `json:"serviceAccount"`
	NodeSelector     map[string]string   `json:"nodeSelector"`
	Tolerations      []corev1.Toleration `json:"tolerations"`
	ImagePullSecrets []pullSecret        `json:"imagePullSecrets"`
	ReadyTimeout     string              `json:"readyTimeout"`
	Resources        *resources          `json:"resources"`

	readyTimeout time.Duration
	requirements corev1.ResourceRequirements
}

// pullSecret is a Secret name, written either as a string or as {name: ...}
// (Kubernetes' own form).
type pullSecret string

func (p *pullSecret) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*p = pullSecret(s)
		return nil
	}
	var o struct {
		Name string `json:"name"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&o); err != nil {
		return fmt.Errorf("imagePullSecrets items must be Secret names or {name: NAME}")
	}
	*p = pullSecret(o.Name)
	return nil
}

type resources struct {
	Requests map[string]string `json:"requests"`
	Limits   map[string]string `json:"limits"`
}

var settingNames = []string{"image", "imagePullPolicy", "imagePullSecrets", "namespace", "nodeSelector", "readyTimeout", "resources", "serviceAccount", "tolerations"}

// parseConfig reads and checks the settings; errors are one line naming the
// setting and what would be valid.
func parseConfig(raw []byte, defaultImage string) (*config, error) {
	c := &config{}
	if len(raw) > 0 {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(c); err != nil {
			msg := err.Error()
			if f, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
				return nil, fmt.Errorf("kubernetes executor: unknown setting %s under executor (valid: %s)", f, strings.Join(settingNames, ", "))
			}
			if _, field, ok := strings.Cut(msg, "Go struct field config."); ok {
				if i := strings.Index(field, " "); i > 0 {
					field = field[:i]
				}
				return nil, fmt.Errorf("kubernetes executor: setting %s under executor has the wrong type: %s", lowerFirst(field), msg)
			}
			return nil, fmt.Errorf("kubernetes executor: settings under executor: %s", msg)
		}
	}
	if c.Namespace == "" {
		c.Namespace = "default"
	}
	if errs := validation.IsDNS1123Label(c.Namespace); len(errs) > 0 {
		return nil, fmt.Errorf("kubernetes executor: namespace %q is not a valid namespace name: %s", c.Namespace, errs[0])
	}
	if c.Image == "" {
		c.Image = defaultImage
	}
	if strings.ContainsAny(c.Image, " \t\n") {
		return nil, fmt.Errorf("kubernetes executor: image %q contains whitespace", c.Image)
	}
	switch corev1.PullPolicy(c.ImagePullPolicy) {
	case "", corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		return nil, fmt.Errorf("kubernetes executor: imagePullPolicy %q is not one of Always, IfNotPresent, Never", c.ImagePullPolicy)
	}
	if c.ServiceAccount != "" {
		if errs := validation.IsDNS1123Subdomain(c.ServiceAccount); len(errs) > 0 {
			return nil, fmt.Errorf("kubernetes executor: serviceAccount %q is not a valid name: %s", c.ServiceAccount, errs[0])
		}
	}
	for k, v := range c.NodeSelector {
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			return nil, fmt.Errorf("kubernetes executor: nodeSelector key %q is not a valid label key: %s", k, errs[0])
		}
		if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
			return nil, fmt.Errorf("kubernetes executor: nodeSelector %s: %q is not a valid label value: %s", k, v, errs[0])
		}
	}
	for i, t := range c.Tolerations {
		switch t.Operator {
		case "", corev1.TolerationOpEqual, corev1.TolerationOpExists:
		default:
			return nil, fmt.Errorf("kubernetes executor: tolerations[%d].operator %q is not Equal or Exists", i, t.Operator)
		}
		switch t.Effect {
		case "", corev1.TaintEffectNoSchedule, corev1.TaintEffectPreferNoSchedule, corev1.TaintEffectNoExecute:
		default:
			return nil, fmt.Errorf("kubernetes executor: tolerations[%d].effect %q is not NoSchedule, PreferNoSchedule or NoExecute", i, t.Effect)
		}
		if t.Operator == corev1.TolerationOpExists && t.Value != "" {
			return nil, fmt.Errorf("kubernetes executor: tolerations[%d] has operator Exists and a value; drop the value", i)
		}
	}
	for i, s := range c.ImagePullSecrets {
		if errs := validation.IsDNS1123Subdomain(string(s)); len(errs) > 0 {
			return nil, fmt.Errorf("kubernetes executor: imagePullSecrets[%d] %q is not a valid Secret name: %s", i, s, errs[0])
		}
	}
	c.readyTimeout = defaultReadyTimeout
	if c.ReadyTimeout != "" {
		d, err := time.ParseDuration(c.ReadyTimeout)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("kubernetes executor: readyTimeout %q is not a duration like 90s or 5m", c.ReadyTimeout)
		}
		c.readyTimeout = d
	}
	if c.Resources != nil {
		var err error
		if c.requirements.Requests, err = quantities("requests", c.Resources.Requests); err != nil {
			return nil, err
		}
		if c.requirements.Limits, err = quantities("limits", c.Resources.Limits); err != nil {
			return nil, err
		}
		for name, lim := range c.requirements.Limits {
			if req, ok := c.requirements.Requests[name]; ok && req.Cmp(lim) > 0 {
				return nil, fmt.Errorf("kubernetes executor: resources.requests.%s (%s) is more than resources.limits.%s (%s)", name, req.String(), name, lim.String())
			}
		}
	}
	return c, nil
}

// quantities parses a map of resource quantities, naming the bad one.
func quantities(kind string, m map[string]string) (corev1.ResourceList, error) {
	if len(m) == 0 {
		return nil, nil
	}
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	out := corev1.ResourceList{}
	for _, name := range names {
		if errs := validation.IsQualifiedName(name); len(errs) > 0 {
			return nil, fmt.Errorf("kubernetes executor: resources.%s: %q is not a resource name (for example cpu, memory, ephemeral-storage)", kind, name)
		}
		q, err := resource.ParseQuantity(m[name])
		if err != nil {
			return nil, fmt.Errorf("kubernetes executor: resources.%s.%s: %q is not a quantity (for example 500m or 2 for cpu, 256Mi or 1Gi for memory)", kind, name, m[name])
		}
		if q.Sign() < 0 {
			return nil, fmt.Errorf("kubernetes executor: resources.%s.%s: %q is negative", kind, name, m[name])
		}
		out[corev1.ResourceName(name)] = q
	}
	return out, nil
}

func lowerFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToLower(s[:1]) + s[1:]
}

// ValidateSettings implements executor.SettingsValidator: wiz asks it when
// a pipeline is applied, so that a misspelt setting or a bad value fails
// there, at its position, not when a run starts.
func (b *backend) ValidateSettings(settings map[string]any) []executor.Diagnostic {
	return executor.CheckSettings(settings, settingNames, func(raw []byte) error {
		_, err := parseConfig(raw, "wiz:"+b.version)
		return err
	})
}
