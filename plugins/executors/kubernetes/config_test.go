package main

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

func TestParseConfig(t *testing.T) {
	t.Parallel()
	c, err := parseConfig([]byte(`{"namespace":"jobs","image":"reg.example/wiz:1","serviceAccount":"wiz","nodeSelector":{"pool":"cpu"},
		"tolerations":[{"key":"dedicated","operator":"Equal","value":"wiz","effect":"NoSchedule"}],
		"imagePullSecrets":["regcred",{"name":"other"}],"readyTimeout":"90s",
		"resources":{"requests":{"cpu":"500m","memory":"128Mi"},"limits":{"memory":"1Gi"}}}`), "wiz:0.1.0")
	if err != nil {
		t.Fatal(err)
	}
	if c.Namespace != "jobs" || c.Image != "reg.example/wiz:1" || c.readyTimeout != 90*time.Second ||
		len(c.ImagePullSecrets) != 2 || c.ImagePullSecrets[1] != "other" || c.Tolerations[0].Effect != corev1.TaintEffectNoSchedule {
		t.Errorf("parsed %+v", c)
	}
	if q := c.requirements.Requests[corev1.ResourceCPU]; q.Cmp(resource.MustParse("0.5")) != 0 {
		t.Errorf("cpu request %s", q.String())
	}
	if q := c.requirements.Limits[corev1.ResourceMemory]; q.Value() != 1<<30 {
		t.Errorf("memory limit %s", q.String())
	}

	d, err := parseConfig(nil, "wiz:0.1.0")
	if err != nil {
		t.Fatal(err)
	}
	if d.Namespace != "default" || d.Image != "wiz:0.1.0" || d.readyTimeout != defaultReadyTimeout {
		t.Errorf("defaults %+v", d)
	}
}

func TestParseConfigErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{`{"namespaec":"x"}`, `unknown setting "namespaec" under executor (valid: image, imagePullPolicy, imagePullSecrets, namespace, nodeSelector, readyTimeout, resources, serviceAccount, tolerations)`},
		{`{"namespace":"Bad_NS"}`, `namespace "Bad_NS" is not a valid namespace name`},
		{`{"namespace":3}`, `setting namespace under executor has the wrong type`},
		{`{"resources":{"limits":{"memory":"lots"}}}`, `resources.limits.memory: "lots" is not a quantity`},
		{`{"resources":{"requests":{"cpu":"-1"}}}`, `resources.requests.cpu: "-1" is negative`},
		{`{"resources":{"requests":{"memory":"2Gi"},"limits":{"memory":"1Gi"}}}`, `resources.requests.memory (2Gi) is more than resources.limits.memory (1Gi)`},
		{`{"resources":{"limits":{"bad name!":"1"}}}`, `resources.limits: "bad name!" is not a resource name`},
		{`{"readyTimeout":"soon"}`, `readyTimeout "soon" is not a duration`},
		{`{"imagePullPolicy":"Sometimes"}`, `imagePullPolicy "Sometimes" is not one of Always, IfNotPresent, Never`},
		{`{"tolerations":[{"key":"a","operator":"Maybe"}]}`, `tolerations[0].operator "Maybe" is not Equal or Exists`},
		{`{"tolerations":[{"key":"a","effect":"Never"}]}`, `tolerations[0].effect "Never" is not NoSchedule`},
		{`{"tolerations":[{"key":"a","operator":"Exists","value":"v"}]}`, `tolerations[0] has operator Exists and a value`},
		{`{"tolerations":[{"key":"a","colour":"v"}]}`, `unknown setting "colour"`},
		{`{"nodeSelector":{"pool":"a b"}}`, `nodeSelector pool: "a b" is not a valid label value`},
		{`{"imagePullSecrets":["UPPER"]}`, `imagePullSecrets[0] "UPPER" is not a valid Secret name`},
		{`{"imagePullSecrets":[{"nam":"x"}]}`, `imagePullSecrets items must be Secret names or {name: NAME}`},
		{`{"image":"a b"}`, `image "a b" contains whitespace`},
		{`{"serviceAccount":"Not Valid"}`, `serviceAccount "Not Valid" is not a valid name`},
	} {
		_, err := parseConfig([]byte(tc.in), "wiz:1")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.in, err, tc.want)
			continue
		}
		if strings.Contains(err.Error(), "\n") || !strings.HasPrefix(err.Error(), "kubernetes executor: ") {
			t.Errorf("%s: error not one line naming the backend: %q", tc.in, err)
		}
	}
}

// ValidateSettings reports each setting the backend does not take, or
// cannot use, at that setting: wiz shows them when the pipeline is applied.
func TestValidateSettings(t *testing.T) {
	b := &backend{version: "1.0.0"}
	ds := b.ValidateSettings(map[string]any{"namespace": "ci", "namespaec": "x", "readyTimeout": "soon"})
	if len(ds) != 2 {
		t.Fatalf("diagnostics %+v, want 2", ds)
	}
	if ds[0].Path[0] != "namespaec" || !strings.Contains(ds[0].Message, `unknown setting "namespaec"`) {
		t.Errorf("first: %+v, want namespaec unknown", ds[0])
	}
	if ds[1].Path[0] != "readyTimeout" {
		t.Errorf("second: %+v, want readyTimeout", ds[1])
	}
	if ds := b.ValidateSettings(map[string]any{"namespace": "ci", "readyTimeout": "30s"}); len(ds) != 0 {
		t.Errorf("valid settings: %+v", ds)
	}
}
