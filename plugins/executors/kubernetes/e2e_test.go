package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"

	appsv1 "k8s.io/api/apps/v1"
	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/wiz-run/wiz/plugins/executors/kubernetes/internal/testcluster"
	"github.com/wiz-run/wiz/plugins/executors/kubernetes/internal/testkubelet"
)

// The end-to-end test: a real kube-apiserver and etcd, the test kubelet
// running pods as Docker containers, the wiz image built from deploy/, and
// the real `wiz run` with this backend, as the service account deploy/rbac.yaml
// makes.

const (
	e2eNamespace = testcluster.ServiceAccountNamespace
	e2eImage     = "wiz:k8s-e2e"
	e2eVersion   = "0.0.0-k8s-e2e"
)

// e2eBin holds wiz and its bundled plugins, built static by TestMain.
var e2eBin string

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "wiz-k8s-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		for _, b := range []struct{ name, pkg string }{
			{"wiz", "../../../cmd/wiz"},
			{"wiz-executor-kubernetes", "."},
			{"wiz-executor-local", "../local"},
			{"wiz-processors-std", "../../processors/std"},
		} {
			cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-X main.version="+e2eVersion, "-o", filepath.Join(dir, b.name), b.pkg)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				fmt.Fprintf(os.Stderr, "build %s: %v\n%s", b.name, err, out)
				return 1
			}
		}
		e2eBin = dir
		return m.Run()
	}()
	os.Exit(code)
}

// e2e is one cluster, kubelet and image shared by the subtests.
type e2e struct {
	t       *testing.T
	cluster *testcluster.Cluster
	kubelet *testkubelet.Kubelet
	home    string

	mu   sync.Mutex
	seen map[string]*corev1.Pod // every executor pod seen, last state
}

func startE2E(t *testing.T) *e2e {
	t.Helper()
	if _, err := testcluster.BinDir(); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("docker", "version", "--format", "{{.Server.Version}}").CombinedOutput(); err != nil {
		t.Fatalf("needs a running Docker Engine: `docker version` failed: %v: %s (start dockerd, or install docker.io from Debian)", err, bytes.TrimSpace(out))
	}
	start := time.Now()
	build := exec.Command("../../../deploy/build-image.sh", e2eImage)
	build.Env = append(os.Environ(), "WIZ_BIN_DIR="+e2eBin)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the wiz image: %v\n%s", err, out)
	}
	t.Logf("image %s built in %s", e2eImage, time.Since(start).Round(time.Millisecond))

	start = time.Now()
	c, err := testcluster.Start(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	t.Logf("kube-apiserver and etcd ready in %s", time.Since(start).Round(time.Millisecond))
	ctx := context.Background()
	k, err := testkubelet.Start(ctx, testkubelet.Config{Client: c.Admin, NodeName: "node-1", Labels: map[string]string{"pool": "wiz"},
		StateDir: t.TempDir(), Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Stop)
	if _, err := c.Admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: e2eNamespace}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	applyRBAC(t, c.Admin, "../../../deploy/rbac.yaml")
	e := &e2e{t: t, cluster: c, kubelet: k, home: t.TempDir(), seen: map[string]*corev1.Pod{}}
	e.recordPods()
	return e
}

// applyRBAC creates the objects of deploy/rbac.yaml.
func applyRBAC(t *testing.T, kc kubernetes.Interface, path string) {
	t.Helper()
	apply(t, kc, path, nil)
}

// apply creates the objects of a manifest of deploy/; dryRun: validated by
// the API server and not stored.
func apply(t *testing.T, kc kubernetes.Interface, path string, dryRun []string) {
	t.Helper()
	opts := metav1.CreateOptions{DryRun: dryRun}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, doc := range strings.Split(string(b), "\n---\n") {
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode([]byte(doc), nil, nil)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		switch o := obj.(type) {
		case *corev1.ServiceAccount:
			_, err = kc.CoreV1().ServiceAccounts(o.Namespace).Create(ctx, o, opts)
		case *rbacv1.Role:
			_, err = kc.RbacV1().Roles(o.Namespace).Create(ctx, o, opts)
		case *rbacv1.RoleBinding:
			_, err = kc.RbacV1().RoleBindings(o.Namespace).Create(ctx, o, opts)
		case *corev1.PersistentVolumeClaim:
			_, err = kc.CoreV1().PersistentVolumeClaims(o.Namespace).Create(ctx, o, opts)
		case *corev1.Service:
			_, err = kc.CoreV1().Services(o.Namespace).Create(ctx, o, opts)
		case *appsv1.Deployment:
			_, err = kc.AppsV1().Deployments(o.Namespace).Create(ctx, o, opts)
		default:
			t.Fatalf("%s: unexpected %T", path, obj)
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
	}
}

// recordPods watches executor pods and keeps the last state of each.
func (e *e2e) recordPods() {
	ctx, cancel := context.WithCancel(context.Background())
	w, err := e.cluster.Admin.CoreV1().Pods(e2eNamespace).Watch(ctx, metav1.ListOptions{LabelSelector: labelRun})
	if err != nil {
		e.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { // owned by the test: ends at cleanup
		defer close(done)
		for ev := range w.ResultChan() {
			if p, ok := ev.Object.(*corev1.Pod); ok && ev.Type != watch.Error {
				e.mu.Lock()
				e.seen[p.Name] = p
				e.mu.Unlock()
			}
		}
	}()
	e.t.Cleanup(func() { cancel(); w.Stop(); <-done })
}

// pods returns the executor pods seen since the call to mark.
func (e *e2e) podsOfRun(runID string) []*corev1.Pod {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []*corev1.Pod
	for _, p := range e.seen {
		if p.Labels[labelRun] == runID {
			out = append(out, p)
		}
	}
	return out
}

// wiz runs the wiz CLI as the service account user, in dir.
func (e *e2e) wiz(dir string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(e2eBin, "wiz"), append([]string{"--kube-context", "wiz"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "WIZ_HOME="+e.home, "KUBECONFIG="+e.cluster.Kubeconfig, "WIZ_KUBE_LEASE_SECONDS=3")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

func (e *e2e) run(dir string, args ...string) (string, int) {
	e.t.Helper()
	cmd := e.wiz(dir, args...)
	out, err := cmd.CombinedOutput()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			e.t.Fatalf("wiz %v: %v", args, err)
		}
		code = ee.ExitCode()
	}
	return string(out), code
}

// noneLeft fails unless the namespace has no executor pod, Secret or Lease.
func (e *e2e) noneLeft(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	kc := e.cluster.Admin
	sel := metav1.ListOptions{LabelSelector: labelRun}
	pods, err := kc.CoreV1().Pods(e2eNamespace).List(ctx, sel)
	if err != nil {
		t.Fatal(err)
	}
	secrets, err := kc.CoreV1().Secrets(e2eNamespace).List(ctx, sel)
	if err != nil {
		t.Fatal(err)
	}
	leases, err := kc.CoordinationV1().Leases(e2eNamespace).List(ctx, sel)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(pods.Items) + len(secrets.Items) + len(leases.Items); n > 0 {
		t.Errorf("left behind: %d pods, %d secrets, %d leases", len(pods.Items), len(secrets.Items), len(leases.Items))
	}
	// A pod deleted after it ended goes at once (the API server needs no
	// kubelet for that); its container goes at the kubelet's next sync.
	deadline := time.Now().Add(10 * time.Second)
	for e.kubelet.ContainerCount() > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if n := e.kubelet.ContainerCount(); n > 0 {
		t.Errorf("%d containers left behind 10 s after their pods were deleted", n)
	}
}

func writeFile(t *testing.T, dir, name, body string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(strings.ReplaceAll(body, "IMAGE", e2eImage)), 0o644); err != nil {
		t.Fatal(err)
	}
}

var runIDRE = regexp.MustCompile(`run ([0-9A-Za-z]{27})`)

func TestKubernetesExecutorEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts kube-apiserver, etcd and Docker containers (make test runs it)")
	}
	e := startE2E(t)

	t.Run("pipeline on reused pods", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, dir, "p.yaml", `name: k8s
executor:
  backend: kubernetes
  namespace: wiz
  image: IMAGE
  readyTimeout: 60s
  serviceAccount: wiz
  nodeSelector: {pool: wiz}
  tolerations: [{key: dedicated, operator: Equal, value: wiz, effect: NoSchedule}]
  imagePullSecrets: [regcred]
inputs:
  text: {type: string}
processors:
  up:
    uses: std/exec
    with: {command: [tr, a-z, A-Z]}
    inputs: {stdin: inputs.text}
  where:
    uses: std/exec
    with: {command: [hostname]}
    after: [up]
  big:
    uses: std/shell
    with: {script: "head -c 3000000 /dev/zero | tr '\\0' x"}
  digest:
    uses: std/hash
    inputs: {in: big}
  count:
    uses: std/exec
    with: {command: [wc, -c]}
    inputs: {stdin: big}
  sized:
    uses: std/exec
    with: {command: [hostname]}
    resources: {requests: {cpu: 100m, memory: 64Mi}, limits: {memory: 256Mi}}
`)
		start := time.Now()
		out, code := e.run(dir, "run", "p.yaml", "-i", "text=hello")
		t.Logf("wiz run took %s:\n%s", time.Since(start).Round(time.Millisecond), out)
		if code != 0 {
			t.Fatalf("wiz run exited %d", code)
		}
		if !strings.Contains(out, "Succeeded") {
			t.Fatalf("run did not succeed")
		}
		m := runIDRE.FindStringSubmatch(out)
		outputs := map[string]string{}
		for _, p := range []string{"up", "where", "digest", "count", "sized"} {
			o, code := e.run(dir, "runs", "output", "last", p)
			if code != 0 {
				t.Fatalf("runs output %s: exit %d: %s", p, code, o)
			}
			outputs[p] = strings.TrimSpace(o)
		}
		if outputs["up"] != "HELLO" {
			t.Errorf("up = %q, want HELLO", outputs["up"])
		}
		if outputs["digest"] != "e55b8bdf621ddaa8f462c74745db9680d3bb7536a9cf854f8d6668b34a287890" || outputs["count"] != "3000000" {
			t.Errorf("digest %q count %q: the 3 MB file did not reach the pod's processors whole", outputs["digest"], outputs["count"])
		}
		// The 3 MB Wiz File, streamed back from the pod.
		o, code := e.run(dir, "runs", "output", "last", "big", "--output-file", "big.out")
		if code != 0 {
			t.Fatalf("runs output big: %s", o)
		}
		if st, err := os.Stat(filepath.Join(dir, "big.out")); err != nil || st.Size() != 3000000 {
			t.Errorf("big.out: %v, size %v; want 3000000 bytes", err, st)
		}
		// Two resource shapes, two pods; each processor ran on a pod of its run.
		var runID string
		if m != nil {
			runID = m[1]
		} else {
			ro, _ := e.run(dir, "runs", "list")
			t.Fatalf("no run id in the output; runs list:\n%s", ro)
		}
		pods := e.podsOfRun(runID)
		if len(pods) != 2 {
			t.Fatalf("%d pods for run %s, want 2 (one per resource shape)", len(pods), runID)
		}
		byName := map[string]*corev1.Pod{}
		for _, p := range pods {
			byName[p.Name] = p
		}
		shared, sized := byName[outputs["where"]], byName[outputs["sized"]]
		if shared == nil || sized == nil || shared == sized {
			t.Fatalf("where ran on %q and sized on %q; want two different pods of the run (%v)", outputs["where"], outputs["sized"], byName)
		}
		res := sized.Spec.Containers[0].Resources
		if q := res.Limits[corev1.ResourceMemory]; q.Cmp(resource.MustParse("256Mi")) != 0 {
			t.Errorf("sized pod memory limit %v, want 256Mi", q.String())
		}
		if q := res.Requests[corev1.ResourceCPU]; q.Cmp(resource.MustParse("100m")) != 0 {
			t.Errorf("sized pod cpu request %v, want 100m", q.String())
		}
		if len(shared.Spec.Containers[0].Resources.Limits) != 0 {
			t.Errorf("shared pod has limits %v, want none", shared.Spec.Containers[0].Resources.Limits)
		}
		for _, p := range pods {
			if p.Labels[labelRun] != runID || p.Labels[labelManagedBy] != managedByValue {
				t.Errorf("pod %s labels %v", p.Name, p.Labels)
			}
			s := p.Spec
			// Admission adds Kubernetes' default tolerations after ours.
			if s.ServiceAccountName != "wiz" || s.NodeSelector["pool"] != "wiz" || len(s.Tolerations) == 0 || s.Tolerations[0].Key != "dedicated" ||
				len(s.ImagePullSecrets) != 1 || s.ImagePullSecrets[0].Name != "regcred" {
				t.Errorf("pod %s spec lacks the settings: serviceAccount %q nodeSelector %v tolerations %v imagePullSecrets %v",
					p.Name, s.ServiceAccountName, s.NodeSelector, s.Tolerations, s.ImagePullSecrets)
			}
		}
		e.noneLeft(t)
	})

	t.Run("pod deleted mid-task", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, dir, "p.yaml", `name: k8s-delete
executor: {backend: kubernetes, namespace: wiz, image: IMAGE}
processors:
  long:
    uses: std/exec
    with: {command: [sleep, "300"]}
`)
		cmd := e.wiz(dir, "run", "p.yaml")
		var buf bytes.Buffer
		cmd.Stdout, cmd.Stderr = &buf, &buf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		pod := e.waitRunningPod(t, exited)
		time.Sleep(time.Second) // the task is on its way or running
		deleted := time.Now()
		if err := e.cluster.Admin.CoreV1().Pods(e2eNamespace).Delete(context.Background(), pod, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		var err error
		select {
		case err = <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			t.Fatalf("wiz run still running 30 s after its pod was deleted:\n%s", buf.String())
		}
		took := time.Since(deleted)
		t.Logf("wiz run ended %s after the pod was deleted:\n%s", took.Round(time.Millisecond), buf.String())
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
			t.Errorf("wiz run: %v, want exit 1 (run Failed)", err)
		}
		if took > 15*time.Second {
			t.Errorf("the run took %s to fail after its pod was deleted, want seconds", took)
		}
		show, _ := e.run(dir, "runs", "show", "last")
		if !strings.Contains(buf.String()+show, "kubernetes executor "+e2eNamespace+"/"+pod+" went away mid-task") {
			t.Errorf("runs show does not name the executor pod %s/%s:\n%s", e2eNamespace, pod, show)
		}
		// The backend says what happened to the pod, in the processor's error.
		if !strings.Contains(show, "executor pod "+e2eNamespace+"/"+pod+" ended: the pod was deleted") {
			t.Errorf("runs show does not give the reason, the pod was deleted:\n%s", show)
		}
		e.noneLeft(t)
	})

	t.Run("pod OOMKilled mid-task", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, dir, "p.yaml", `name: k8s-oom
executor: {backend: kubernetes, namespace: wiz, image: IMAGE}
processors:
  hog:
    uses: std/shell
    with: {script: "head -c 400000000 /dev/zero | tr '\\0' a | sort > /dev/null; sleep 300"}
    resources: {limits: {memory: 64Mi}}
`)
		start := time.Now()
		out, code := e.run(dir, "--log-level", "info", "run", "p.yaml")
		took := time.Since(start)
		t.Logf("%s:\n%s", took.Round(time.Millisecond), out)
		if code != 1 {
			t.Errorf("exit %d, want 1 (run Failed)", code)
		}
		if !strings.Contains(out, "ended before its run: container executor OOMKilled (exit code 137)") {
			t.Errorf("the backend's log does not give the pod's reason, OOMKilled")
		}
		if !strings.Contains(out, "hog") || !strings.Contains(out, "Failed") {
			t.Errorf("the processor did not fail")
		}
		if took > 60*time.Second {
			t.Errorf("took %s to fail", took)
		}
		m := runIDRE.FindStringSubmatch(out)
		if m == nil {
			t.Fatal("no run id in the output")
		}
		pods := e.podsOfRun(m[1])
		if len(pods) != 1 {
			t.Fatalf("%d pods for the run, want 1", len(pods))
		}
		// The pod did die of OOM, and the processor's error says so.
		if !e.kubelet.OOMKilled(e2eNamespace, pods[0].Name) {
			t.Errorf("pod %s was not OOM-killed", pods[0].Name)
		}
		if !strings.Contains(out, "kubernetes executor "+e2eNamespace+"/"+pods[0].Name+" went away mid-task") {
			t.Errorf("the error does not name the executor pod")
		}
		if !strings.Contains(out, "executor pod "+e2eNamespace+"/"+pods[0].Name+" ended: container executor OOMKilled (exit code 137)") {
			t.Errorf("the processor's error does not give Kubernetes' reason, OOMKilled")
		}
		e.noneLeft(t)
	})

	t.Run("unschedulable pod", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, dir, "p.yaml", `name: k8s-unsched
executor: {backend: kubernetes, namespace: wiz, image: IMAGE, nodeSelector: {pool: gpu}, readyTimeout: 4s}
processors:
  a: {uses: std/exec, with: {command: ["true"]}}
`)
		start := time.Now()
		out, code := e.run(dir, "run", "p.yaml")
		t.Logf("%s:\n%s", time.Since(start).Round(time.Millisecond), out)
		if code != 1 {
			t.Errorf("exit %d, want 1", code)
		}
		show, _ := e.run(dir, "runs", "show", "last")
		for _, want := range []string{"not ready within 4s", "Unschedulable: 0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector"} {
			if !strings.Contains(out+show, want) {
				t.Errorf("the error does not say %q", want)
			}
		}
		e.noneLeft(t)
	})

	t.Run("missing image", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, dir, "p.yaml", `name: k8s-noimage
executor: {backend: kubernetes, namespace: wiz, image: "wiz-no-such-image:9.9", readyTimeout: 60s}
processors:
  a: {uses: std/exec, with: {command: ["true"]}}
`)
		start := time.Now()
		out, code := e.run(dir, "run", "p.yaml")
		took := time.Since(start)
		t.Logf("%s:\n%s", took.Round(time.Millisecond), out)
		if code != 1 {
			t.Errorf("exit %d, want 1", code)
		}
		show, _ := e.run(dir, "runs", "show", "last")
		if !strings.Contains(out+show, "cannot start: ImagePullBackOff: Back-off pulling image \"wiz-no-such-image:9.9\"") {
			t.Errorf("the error does not quote ImagePullBackOff for the image")
		}
		if took > 30*time.Second {
			t.Errorf("took %s to fail, want well within readyTimeout (60s)", took)
		}
		e.noneLeft(t)
	})

	t.Run("deploy manifests are valid", func(t *testing.T) {
		// The API server validates the daemon's Deployment, PVC and Service.
		apply(t, e.cluster.Admin, "../../../deploy/daemon.yaml", []string{metav1.DryRunAll})
	})

	t.Run("bad settings", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, dir, "p.yaml", `name: k8s-bad
executor: {backend: kubernetes, namespace: wiz, image: IMAGE}
processors:
  a:
    uses: std/exec
    with: {command: ["true"]}
    resources: {limits: {memory: lots}}
`)
		out, code := e.run(dir, "run", "p.yaml")
		show, _ := e.run(dir, "runs", "show", "last")
		if code == 0 || !strings.Contains(out+show, `resources.limits.memory: "lots" is not a quantity`) {
			t.Errorf("exit %d; want the bad quantity named:\n%s\n%s", code, out, show)
		}
		e.noneLeft(t)
	})

	t.Run("orphans of a killed manager are collected", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, dir, "p.yaml", `name: k8s-orphan
executor: {backend: kubernetes, namespace: wiz, image: IMAGE}
processors:
  long:
    uses: std/exec
    with: {command: [sleep, "300"]}
`)
		cmd := e.wiz(dir, "run", "p.yaml")
		var buf bytes.Buffer
		cmd.Stdout, cmd.Stderr = &buf, &buf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		orphan := e.waitRunningPod(t, exited)
		// The Manager dies without tearing anything down; its backend dies with it.
		_ = cmd.Process.Kill()
		<-exited
		time.Sleep(4 * time.Second) // WIZ_KUBE_LEASE_SECONDS=3: the orphan's Lease expires
		if _, err := e.cluster.Admin.CoreV1().Pods(e2eNamespace).Get(context.Background(), orphan, metav1.GetOptions{}); err != nil {
			t.Fatalf("the orphan pod should still exist before a backend collects it: %v", err)
		}
		writeFile(t, dir, "q.yaml", `name: k8s-next
executor: {backend: kubernetes, namespace: wiz, image: IMAGE}
processors:
  a: {uses: std/exec, with: {command: ["true"]}}
`)
		out, code := e.run(dir, "run", "q.yaml")
		if code != 0 {
			t.Fatalf("next run: exit %d:\n%s", code, out)
		}
		e.noneLeft(t)
	})

	t.Run("a killed daemon's tasks are re-attached on their pods", func(t *testing.T) {
		testDaemonReattach(t, e)
	})
}

// testDaemonReattach: kill -9 of wiz daemon while two runs have tasks in
// flight on their executor pods; the next daemon on the data dir adopts the
// pods, re-attaches the tasks and collects their results: every processor
// ran once (attempts 1), each run on its one pod.
func testDaemonReattach(t *testing.T, e *e2e) {
	dir, home := t.TempDir(), t.TempDir()
	writeFile(t, dir, "p.yaml", `name: k8s-reattach
executor: {backend: kubernetes, namespace: wiz, image: IMAGE}
processors:
  first: {uses: std/shell, with: {script: "echo hello"}}
  mid-1: {uses: std/shell, inputs: {stdin: first}, with: {script: 'sleep 12; echo "1 heard $(cat)"'}}
  mid-2: {uses: std/shell, inputs: {stdin: first}, with: {script: 'sleep 12; echo "2 heard $(cat)"'}}
  last: {uses: std/shell, inputs: {a: mid-1, b: mid-2}, with: {script: 'cat "$WIZ_INPUT_A" "$WIZ_INPUT_B"'}}
`)
	wiz := func(args ...string) *exec.Cmd {
		cmd := e.wiz(dir, args...)
		cmd.Env = append(cmd.Env, "WIZ_HOME="+home)
		return cmd
	}
	run := func(args ...string) string {
		t.Helper()
		out, err := wiz(args...).CombinedOutput()
		if err != nil {
			t.Fatalf("wiz %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	startDaemon := func() (*exec.Cmd, <-chan error) {
		t.Helper()
		_ = os.Remove(filepath.Join(home, "wiz.sock")) // a killed daemon's
		d := wiz("daemon", "--listen", "127.0.0.1:0")
		var out bytes.Buffer
		d.Stdout, d.Stderr = &out, &out
		if err := d.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- d.Wait() }()
		deadline := time.Now().Add(60 * time.Second)
		for {
			if _, err := os.Stat(filepath.Join(home, "wiz.sock")); err == nil {
				return d, exited
			}
			select {
			case err := <-exited:
				t.Fatalf("wiz daemon exited: %v\n%s", err, out.String())
			case <-time.After(50 * time.Millisecond): // the daemon starts in its own process
			}
			if time.Now().After(deadline) {
				t.Fatalf("wiz daemon did not listen within 60 s:\n%s", out.String())
			}
		}
	}
	d, exited := startDaemon()
	var ids []string
	var clients []chan error
	for range 2 {
		c := wiz("run", "p.yaml")
		var out bytes.Buffer
		c.Stdout, c.Stderr = &out, &out
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- c.Wait() }()
		clients = append(clients, done)
		// Its run's ID, once it is listed.
		deadline := time.Now().Add(60 * time.Second)
		for len(ids) < len(clients) {
			for _, m := range regexp.MustCompile(`(?m)^([0-9A-Za-z]{27}) `).FindAllStringSubmatch(run("runs", "list"), -1) {
				if !slices.Contains(ids, m[1]) {
					ids = append(ids, m[1])
				}
			}
			if time.Now().After(deadline) {
				t.Fatal("the run was not listed within 60 s")
			}
			time.Sleep(50 * time.Millisecond) // the client starts in its own process
		}
	}
	// Both runs have their two mid tasks Running on their pods.
	// (The mid tasks take 12 s, so that the kill comes while they run even
	// on a busy machine.)
	running := regexp.MustCompile(`(?m)^mid-\d +std/shell +Running`)
	deadline := time.Now().Add(90 * time.Second)
	for _, id := range ids {
		for len(running.FindAllString(run("runs", "show", id), -1)) < 2 {
			if time.Now().After(deadline) {
				t.Fatalf("run %s: its mid tasks were not Running within 90 s:\n%s", id, run("runs", "show", id))
			}
			time.Sleep(100 * time.Millisecond) // pods start in Docker
		}
	}
	_ = d.Process.Kill() // kill -9: its backend dies with it; the pods stay
	<-exited
	for _, c := range clients {
		<-c
	}

	d, exited = startDaemon()
	for _, id := range ids {
		out, err := wiz("runs", "watch", id).CombinedOutput()
		if err != nil {
			t.Fatalf("runs watch %s: %v\n%s", id, err, out)
		}
		var rec struct {
			Continued  int `json:"continued"`
			Processors []struct {
				Name     string `json:"name"`
				State    string `json:"state"`
				Attempts int    `json:"attempts"`
			} `json:"processors"`
		}
		js := run("runs", "show", id, "-o", "json")
		if err := json.Unmarshal([]byte(js), &rec); err != nil {
			t.Fatalf("runs show -o json: %v\n%s", err, js)
		}
		if rec.Continued != 1 || len(rec.Processors) != 4 {
			t.Errorf("run %s: continued %d, %d processors; want 1 and 4:\n%s", id, rec.Continued, len(rec.Processors), js)
		}
		for _, p := range rec.Processors {
			if p.State != "Succeeded" || p.Attempts != 1 {
				t.Errorf("run %s: %s %s after %d attempts; want Succeeded after 1 (re-attached, not run again)", id, p.Name, p.State, p.Attempts)
			}
		}
		if got := run("runs", "output", id, "last"); got != "1 heard hello\n2 heard hello\n" {
			t.Errorf("run %s: last's output %q", id, got)
		}
		if pods := e.podsOfRun(id); len(pods) != 1 {
			t.Errorf("run %s used %d executor pods, want its one pod adopted", id, len(pods))
		}
	}
	_ = d.Process.Signal(os.Interrupt)
	<-exited
	e.noneLeft(t)
}

// waitRunningPod waits for the one Ready executor pod and returns its name.
func (e *e2e) waitRunningPod(t *testing.T, exited <-chan error) string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			t.Fatalf("wiz run exited early: %v", err)
		default:
		}
		pods, err := e.cluster.Admin.CoreV1().Pods(e2eNamespace).List(context.Background(), metav1.ListOptions{LabelSelector: labelRun})
		if err == nil {
			for _, p := range pods.Items {
				if _, _, fatal := readiness(&p); !fatal && p.Status.PodIP != "" {
					for _, c := range p.Status.Conditions {
						if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
							return p.Name
						}
					}
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("no Ready executor pod within 60 s")
	return ""
}

// TestCLIErrors runs the real wiz with this backend where no cluster is
// needed: errors a user meets before any pod exists.
func TestCLIErrors(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the wiz binaries")
	}
	t.Parallel()
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: here, context: {cluster: c, user: u}}]
current-context: here
`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bad.yaml"), []byte(`name: bad
executor: {backend: kubernetes, namespace: Bad_NS}
processors:
  a: {uses: std/exec, with: {command: ["true"]}}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ok.yaml"), []byte(`name: ok
executor: {backend: kubernetes, namespace: wiz}
processors:
  a: {uses: std/exec, with: {command: ["true"]}}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		env  []string
		want string
		code int
	}{
		// A bad setting is refused when the file is applied, at the setting.
		{"bad namespace", []string{"run", "bad.yaml"}, nil, `bad.yaml:2:33: setting "namespace" of executor kubernetes: kubernetes executor: namespace "Bad_NS" is not a valid namespace name`, 2},
		{"unknown context", []string{"--kube-context", "nope", "run", "ok.yaml"}, nil, `kubernetes executor: load kubeconfig: context "nope" does not exist`, 1},
		{"context from env", []string{"run", "ok.yaml"}, []string{"WIZ_KUBE_CONTEXT=gone"}, `context "gone" does not exist`, 1},
		{"no kubeconfig", []string{"run", "ok.yaml"}, []string{"KUBECONFIG=" + filepath.Join(dir, "missing"), "HOME=" + dir}, `set KUBECONFIG or --kube-context`, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			home := t.TempDir()
			cmd := exec.Command(filepath.Join(e2eBin, "wiz"), tc.args...)
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), "WIZ_HOME="+home, "KUBECONFIG="+kubeconfig)
			cmd.Env = append(cmd.Env, tc.env...)
			out, err := cmd.CombinedOutput()
			show := exec.Command(filepath.Join(e2eBin, "wiz"), "runs", "show", "last")
			show.Env = append(os.Environ(), "WIZ_HOME="+home)
			showOut, _ := show.CombinedOutput()
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != tc.code {
				t.Errorf("wiz %v: %v, want exit %d", tc.args, err, tc.code)
			}
			if !strings.Contains(string(out)+string(showOut), tc.want) {
				t.Errorf("wiz %v does not say %q:\n%s\n%s", tc.args, tc.want, out, showOut)
			}
		})
	}
}
