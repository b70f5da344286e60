package testkubelet_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/wiz-run/wiz/plugins/executors/kubernetes/internal/testcluster"
	"github.com/wiz-run/wiz/plugins/executors/kubernetes/internal/testkubelet"
)

// busyboxImage builds a FROM-scratch image holding only Debian's static busybox.
func busyboxImage(t *testing.T) string {
	t.Helper()
	ctx := t.TempDir()
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Fatalf("no /bin/busybox: install Debian's busybox-static (deploy/build-image.sh does)")
	}
	b, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ctx, "busybox"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	df := "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\nRUN [\"/bin/mkdir\", \"-p\", \"/tmp\"]\n"
	if err := os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte(df), 0o644); err != nil {
		t.Fatal(err)
	}
	tag := "wiz-testkubelet-busybox:test"
	cmd := exec.Command("docker", "build", "-q", "-t", tag, ctx)
	cmd.Env = append(os.Environ(), "DOCKER_BUILDKIT=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("docker build: %v\n%s", err, out)
	}
	return tag
}

func TestKubelet(t *testing.T) {
	if testing.Short() {
		t.Skip("starts kube-apiserver, etcd and Docker containers")
	}
	c, err := testcluster.Start(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	image := busyboxImage(t)
	ctx := context.Background()
	k, err := testkubelet.Start(ctx, testkubelet.Config{Client: c.Admin, NodeName: "node-1", Labels: map[string]string{"pool": "a"},
		Taints: []corev1.Taint{{Key: "dedicated", Value: "wiz", Effect: corev1.TaintEffectNoSchedule}}, StateDir: t.TempDir(), Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Stop)
	ns := "kt"
	if _, err := c.Admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pods := c.Admin.CoreV1().Pods(ns)
	tolerate := []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "wiz", Effect: corev1.TaintEffectNoSchedule}}

	waitPod := func(name string, what string, ok func(*corev1.Pod) bool) *corev1.Pod {
		t.Helper()
		var last *corev1.Pod
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			p, err := pods.Get(ctx, name, metav1.GetOptions{})
			if err == nil {
				last = p
				if ok(p) {
					return p
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("pod %s: not %s within 30 s; last status: %+v", name, what, last)
		return nil
	}

	t.Run("runs a pod with its IP, secret and readiness", func(t *testing.T) {
		if _, err := c.Admin.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "s1"},
			Data: map[string][]byte{"word": []byte("swordfish")}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		_, err := pods.Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "web"},
			Spec: corev1.PodSpec{
				NodeSelector: map[string]string{"pool": "a"}, Tolerations: tolerate,
				Volumes: []corev1.Volume{{Name: "sec", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "s1"}}}},
				Containers: []corev1.Container{{
					Name: "main", Image: image,
					Command: []string{"/bin/sh", "-c", `mkdir -p /tmp/w && echo "$POD_IP" > /tmp/w/ip && cat /s/word > /tmp/w/secret && echo "$TOKEN" > /tmp/w/token && exec httpd -f -p 8080 -h /tmp/w`},
					Env: []corev1.EnvVar{
						{Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
						{Name: "TOKEN", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "s1"}, Key: "word"}}},
					},
					VolumeMounts:   []corev1.VolumeMount{{Name: "sec", MountPath: "/s"}},
					ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(8080)}}},
				}},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		p := waitPod("web", "Ready", func(p *corev1.Pod) bool { return podReady(p) })
		if p.Status.Phase != corev1.PodRunning || p.Spec.NodeName != "node-1" || p.Status.PodIP == "" {
			t.Fatalf("phase %s node %q IP %q, want Running on node-1 with an IP", p.Status.Phase, p.Spec.NodeName, p.Status.PodIP)
		}
		for file, want := range map[string]string{"ip": p.Status.PodIP, "secret": "swordfish", "token": "swordfish"} {
			if got := httpGet(t, fmt.Sprintf("http://%s:8080/%s", p.Status.PodIP, file)); got != want {
				t.Errorf("%s in the pod = %q, want %q", file, got, want)
			}
		}
		start := time.Now()
		if err := pods.Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		waitGone(t, func() error { _, err := pods.Get(ctx, "web", metav1.GetOptions{}); return err })
		t.Logf("deleted in %s", time.Since(start))
		if n := k.ContainerCount(); n != 0 {
			t.Errorf("%d containers remain after the pod was deleted", n)
		}
	})

	t.Run("unschedulable", func(t *testing.T) {
		for name, spec := range map[string]corev1.PodSpec{
			"wrong-pool":    {NodeSelector: map[string]string{"pool": "b"}, Tolerations: tolerate},
			"no-toleration": {},
		} {
			spec.Containers = []corev1.Container{{Name: "main", Image: image, Command: []string{"sleep", "100"}}}
			if _, err := pods.Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: spec}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			p := waitPod(name, "Unschedulable", func(p *corev1.Pod) bool {
				for _, c := range p.Status.Conditions {
					if c.Type == corev1.PodScheduled && c.Reason == corev1.PodReasonUnschedulable {
						return true
					}
				}
				return false
			})
			t.Logf("%s: %s", name, p.Status.Conditions[0].Message)
			if p.Spec.NodeName != "" {
				t.Errorf("%s bound to %s", name, p.Spec.NodeName)
			}
			if err := pods.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("missing image", func(t *testing.T) {
		spec := corev1.PodSpec{Tolerations: tolerate, Containers: []corev1.Container{{Name: "main", Image: "no-such-image:1", Command: []string{"true"}}}}
		if _, err := pods.Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "noimage"}, Spec: spec}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitPod("noimage", "ImagePullBackOff", func(p *corev1.Pod) bool {
			return len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].State.Waiting != nil &&
				p.Status.ContainerStatuses[0].State.Waiting.Reason == "ImagePullBackOff"
		})
		if err := pods.Delete(ctx, "noimage", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		waitGone(t, func() error { _, err := pods.Get(ctx, "noimage", metav1.GetOptions{}); return err })
	})

	t.Run("OOMKilled", func(t *testing.T) {
		spec := corev1.PodSpec{Tolerations: tolerate, Containers: []corev1.Container{{
			Name: "main", Image: image,
			// The shell stays small; the child that fills memory is what the
			// OOM killer picks, and the whole container goes, as with memory.oom.group.
			Command:   []string{"/bin/sh", "-c", `head -c 200000000 /dev/zero | tr '\0' a | sort > /dev/null; sleep 100`},
			Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("32Mi")}},
		}}}
		if _, err := pods.Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "hog"}, Spec: spec}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		p := waitPod("hog", "terminated", func(p *corev1.Pod) bool {
			return len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].State.Terminated != nil
		})
		if term := p.Status.ContainerStatuses[0].State.Terminated; term.Reason != "OOMKilled" || p.Status.Phase != corev1.PodFailed {
			t.Errorf("terminated %+v phase %s, want OOMKilled and Failed", term, p.Status.Phase)
		}
		if err := pods.Delete(ctx, "hog", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		waitGone(t, func() error { _, err := pods.Get(ctx, "hog", metav1.GetOptions{}); return err })
	})
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(b))
}

func waitGone(t *testing.T, get func() error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if err := get(); apierrors.IsNotFound(err) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("object not gone within 20 s")
}
