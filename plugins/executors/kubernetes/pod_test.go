package main

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func TestMakeObjects(t *testing.T) {
	t.Parallel()
	cfg, err := parseConfig([]byte(`{"namespace":"jobs","serviceAccount":"runner","nodeSelector":{"pool":"cpu"},
		"tolerations":[{"key":"dedicated","operator":"Exists"}],"imagePullSecrets":["regcred"],
		"resources":{"requests":{"cpu":"1"},"limits":{"memory":"512Mi"}}}`), "wiz:1.2.3")
	if err != nil {
		t.Fatal(err)
	}
	o := makeObjects(podRequest{Name: "wiz-executor-abc", RunID: "RUN1", Config: cfg, Slots: 3, LogLevel: "debug",
		CertPEM: []byte("C"), KeyPEM: []byte("K"), Token: "T", Holder: "me", Now: time.Unix(100, 0)})
	p := o.Pod
	for _, m := range []metav1.ObjectMeta{p.ObjectMeta, o.Secret.ObjectMeta, o.Lease.ObjectMeta} {
		if m.Name != "wiz-executor-abc" || m.Namespace != "jobs" || m.Labels[labelRun] != "RUN1" || m.Labels[labelManagedBy] != "wiz" {
			t.Errorf("meta %+v", m)
		}
		if len(m.OwnerReferences) != 0 {
			t.Errorf("%s has owners; executor objects are owner-free so they can be collected", m.Name)
		}
	}
	c := p.Spec.Containers[0]
	if c.Image != "wiz:1.2.3" || p.Spec.ServiceAccountName != "runner" || p.Spec.NodeSelector["pool"] != "cpu" ||
		p.Spec.Tolerations[0].Key != "dedicated" || p.Spec.ImagePullSecrets[0].Name != "regcred" || p.Spec.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("pod spec %+v", p.Spec)
	}
	if q := c.Resources.Limits[corev1.ResourceMemory]; q.String() != "512Mi" {
		t.Errorf("limits %v", c.Resources.Limits)
	}
	want := []string{"executor", "--listen", "$(POD_IP):7443", "--tls-cert", "/var/run/wiz/tls/tls.crt", "--tls-key", "/var/run/wiz/tls/tls.key",
		"--blob-dir", "/var/lib/wiz/blobs", "--work-dir", "/var/lib/wiz/work", "--run", "RUN1", "--slots", "3"}
	if len(c.Args) != len(want) {
		t.Fatalf("args %q, want %q", c.Args, want)
	}
	for i := range want {
		if c.Args[i] != want[i] {
			t.Errorf("args[%d] = %q, want %q", i, c.Args[i], want[i])
		}
	}
	if c.Env[0].ValueFrom.FieldRef.FieldPath != "status.podIP" || c.Env[1].ValueFrom.SecretKeyRef.Key != tokenKey {
		t.Errorf("env %+v", c.Env)
	}
	if string(o.Secret.Data[tokenKey]) != "T" || string(o.Secret.Data["tls.key"]) != "K" {
		t.Errorf("secret %v", o.Secret.Data)
	}
	if c.ReadinessProbe.TCPSocket.Port.IntValue() != executorPort {
		t.Errorf("probe %+v", c.ReadinessProbe)
	}

	// A service's executor waits for its restarted Manager: it gets the
	// orphan timeout, and its Lease lasts that much longer, so that no
	// collector takes the pod while it waits.
	o = makeObjects(podRequest{Name: "wiz-executor-abc", RunID: "RUN1", Config: cfg, Holder: "me", Now: time.Unix(100, 0), OrphanTimeout: time.Minute})
	if args := o.Pod.Spec.Containers[0].Args; args[len(args)-2] != "--orphan-timeout" || args[len(args)-1] != "1m0s" {
		t.Errorf("args %q, want --orphan-timeout 1m0s last", args)
	}
	if got, want := *o.Lease.Spec.LeaseDurationSeconds, int32((leaseDuration+time.Minute)/time.Second); got != want {
		t.Errorf("lease duration %ds, want %ds", got, want)
	}
}

// readiness quotes the pod's own reasons; unit cases beside the end-to-end test.
func TestReadiness(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		status corev1.PodStatus
		ip     string
		state  string
		fatal  bool
	}{
		{"ready", corev1.PodStatus{PodIP: "10.1.2.3", Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}, "10.1.2.3", "", false},
		{"unschedulable", corev1.PodStatus{Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: "Unschedulable", Message: "0/3 nodes are available"}}}, "", "Unschedulable: 0/3 nodes are available", false},
		{"pulling", corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImagePull", Message: "not found"}}}}}, "", "ErrImagePull: not found", false},
		{"backoff", corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: "Back-off pulling image"}}}}}, "", "ImagePullBackOff: Back-off pulling image", true},
		{"crashloop", corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}}}}, "", "CrashLoopBackOff", true},
		{"oom", corev1.PodStatus{Phase: corev1.PodFailed, ContainerStatuses: []corev1.ContainerStatus{{Name: "executor", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "OOMKilled", ExitCode: 137}}}}}, "", "pod Failed: container executor OOMKilled (exit code 137)", true},
		{"evicted", corev1.PodStatus{Phase: corev1.PodFailed, Reason: "Evicted", Message: "The node was low on resource: memory."}, "", "pod Failed: Evicted: The node was low on resource: memory.", true},
	} {
		ip, state, fatal := readiness(&corev1.Pod{Status: tc.status})
		if ip != tc.ip || state != tc.state || fatal != tc.fatal {
			t.Errorf("%s: got (%q, %q, %v), want (%q, %q, %v)", tc.name, ip, state, fatal, tc.ip, tc.state, tc.fatal)
		}
	}
}

// collectOrphans on a fake clientset: which executors count as orphans.
func TestCollectOrphans(t *testing.T) {
	t.Parallel()
	now := time.Now()
	cfg, _ := parseConfig([]byte(`{"namespace":"ns"}`), "wiz:1")
	mk := func(name string, renewed time.Time) objects {
		o := makeObjects(podRequest{Name: name, RunID: "R", Config: cfg, Holder: "h", Now: renewed})
		for _, m := range []*metav1.ObjectMeta{&o.Pod.ObjectMeta, &o.Secret.ObjectMeta, &o.Lease.ObjectMeta} {
			m.CreationTimestamp = metav1.NewTime(renewed)
		}
		return o
	}
	live, dead := mk("live", now), mk("dead", now.Add(-time.Hour))
	noLease := mk("nolease", now.Add(-time.Hour))
	young := mk("young", now) // being made: its Lease is not there yet in this fake
	kc := fake.NewClientset(live.Pod, live.Secret, live.Lease, dead.Pod, dead.Secret, dead.Lease, noLease.Pod, noLease.Secret, young.Pod)
	// The fake deletes at once, so waitGone returns at once.
	n, err := collectOrphans(context.Background(), kc, "ns", now)
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("collected %d, want 2 (dead, nolease)", n)
	}
	pods, _ := kc.CoreV1().Pods("ns").List(context.Background(), metav1.ListOptions{})
	var names []string
	for _, p := range pods.Items {
		names = append(names, p.Name)
	}
	if len(names) != 2 {
		t.Errorf("pods left %v, want live and young", names)
	}
}
