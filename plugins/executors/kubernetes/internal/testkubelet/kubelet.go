// Package testkubelet is a small kubelet for tests: it registers one Node with
// a real kube-apiserver, schedules pods onto it (or marks them Unschedulable,
// as kube-scheduler would), runs each pod's first container as a Docker
// container on a private Docker network so that every pod has its own IP,
// and reports the pod's status from the container's state.
//
// What it does, as a kubelet would: secret volumes and env (value, secretKeyRef,
// the downward API's status.podIP, metadata.name, metadata.namespace,
// spec.nodeName), command and args, memory and CPU limits (docker --memory,
// --cpus), tcpSocket readiness probes, image presence (a missing image is
// ErrImagePull, then ImagePullBackOff: it never pulls), OOMKilled, graceful
// deletion (the container is removed, then the pod), and removal of containers
// whose pod is gone. As on cgroup v2 kubelets (memory.oom.group), an OOM kill
// inside a container kills the whole container and reports OOMKilled.
//
// What it does not do: restart containers (every pod behaves as
// restartPolicy: Never), run more than one container per pod, init containers,
// other volume kinds, exec or HTTP probes. Pods using them are run without.
package testkubelet

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// Config configures a Kubelet.
type Config struct {
	// Client talks to the API server with rights over nodes, pods, bindings and secrets.
	Client kubernetes.Interface
	// NodeName names the Node; Labels and Taints are the Node's.
	NodeName string
	Labels   map[string]string
	Taints   []corev1.Taint
	// StateDir holds secret volumes; it must be a path the Docker daemon can mount.
	StateDir string
	// Logf logs what the kubelet does (e.g. t.Logf); nil: silent.
	Logf func(format string, args ...any)
}

// Kubelet runs pods bound to its Node as Docker containers.
type Kubelet struct {
	cfg     Config
	network string
	subnet  *net.IPNet
	label   string // docker label value marking this kubelet's containers

	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu   sync.Mutex
	pods map[types.UID]*podState
	used map[string]bool // allocated IPs
	oom  map[string]bool // container IDs that had an OOM event
	// oomPods are the pods (namespace/name) whose container had an OOM kill.
	oomPods map[string]bool
}

// OOMKilled says whether the pod's container was OOM-killed, even if the pod
// is gone since.
func (k *Kubelet) OOMKilled(namespace, name string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.oomPods[namespace+"/"+name]
}

type podState struct {
	key       string // namespace/name
	container string // docker container ID, once started
	ip        string
	waiting   string // waiting reason before the container starts
	waitMsg   string
	pulls     int // failed image checks
	started   time.Time
	lastSent  string // last status sent, as JSON, to skip no-op updates
}

// Start registers the Node, makes a private Docker network and starts the
// kubelet's loops. Call Stop to end them and remove every container it made.
func Start(ctx context.Context, cfg Config) (*Kubelet, error) {
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	if out, err := exec.Command("docker", "version", "--format", "{{.Server.Version}}").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("test kubelet needs a running Docker Engine (`docker version` failed: %s); start dockerd or install docker.io", strings.TrimSpace(string(out)))
	}
	k := &Kubelet{cfg: cfg, label: cfg.NodeName + "-" + strconv.Itoa(os.Getpid()), pods: map[types.UID]*podState{}, used: map[string]bool{}, oom: map[string]bool{}, oomPods: map[string]bool{}}
	if err := k.makeNetwork(); err != nil {
		return nil, err
	}
	if err := k.registerNode(ctx); err != nil {
		k.removeNetwork()
		return nil, err
	}
	ctx, k.cancel = context.WithCancel(context.Background())
	events, err := k.watchOOM(ctx)
	if err != nil {
		k.cancel()
		k.removeNetwork()
		return nil, err
	}
	k.wg.Add(2)
	go func() { defer k.wg.Done(); k.readOOM(events) }()
	go func() { defer k.wg.Done(); k.loop(ctx) }()
	return k, nil
}

// Stop ends the loops, removes the kubelet's containers and its network.
func (k *Kubelet) Stop() {
	k.cancel()
	k.wg.Wait()
	if ids := k.containers(); len(ids) > 0 {
		_ = exec.Command("docker", append([]string{"rm", "-f"}, ids...)...).Run()
	}
	k.removeNetwork()
}

// Network is the name of the Docker network pods run on.
func (k *Kubelet) Network() string { return k.network }

// ContainerCount returns how many containers of this kubelet exist.
func (k *Kubelet) ContainerCount() int { return len(k.containers()) }

func (k *Kubelet) makeNetwork() error {
	name := "wiz-testkubelet-" + k.label
	var lastErr string
	for i := 0; i < 20; i++ {
		subnet := fmt.Sprintf("172.%d.%d.0/24", 24+rand.Intn(8), rand.Intn(256))
		out, err := exec.Command("docker", "network", "create", "--driver", "bridge", "--subnet", subnet,
			"--label", "wiz-testkubelet="+k.label, name).CombinedOutput()
		if err == nil {
			_, k.subnet, _ = net.ParseCIDR(subnet)
			k.network = name
			return nil
		}
		lastErr = strings.TrimSpace(string(out))
	}
	return fmt.Errorf("test kubelet: make a Docker network: %s", lastErr)
}

func (k *Kubelet) removeNetwork() {
	if k.network != "" {
		_ = exec.Command("docker", "network", "rm", k.network).Run()
	}
}

func (k *Kubelet) registerNode(ctx context.Context) error {
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: k.cfg.NodeName, Labels: k.cfg.Labels},
		Spec:       corev1.NodeSpec{Taints: k.cfg.Taints},
	}
	created, err := k.cfg.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("test kubelet: register node %s: %w", k.cfg.NodeName, err)
	}
	now := metav1.Now()
	created.Status = corev1.NodeStatus{
		Capacity:    corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("4Gi"), corev1.ResourcePods: resource.MustParse("110")},
		Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("4Gi"), corev1.ResourcePods: resource.MustParse("110")},
		Conditions:  []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", LastHeartbeatTime: now, LastTransitionTime: now}},
		Addresses:   []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: k.gateway()}},
	}
	if _, err := k.cfg.Client.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("test kubelet: node status: %w", err)
	}
	return nil
}

func (k *Kubelet) gateway() string {
	ip := append(net.IP(nil), k.subnet.IP.To4()...)
	ip[3] = 1
	return ip.String()
}

// allocIP hands out the next free address of the subnet from .10 on.
func (k *Kubelet) allocIP() (string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for i := 10; i < 255; i++ {
		ip := append(net.IP(nil), k.subnet.IP.To4()...)
		ip[3] = byte(i)
		if !k.used[ip.String()] {
			k.used[ip.String()] = true
			return ip.String(), nil
		}
	}
	return "", fmt.Errorf("test kubelet: no free pod IP in %s", k.subnet)
}

func (k *Kubelet) loop(ctx context.Context) {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		k.sync(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sync brings every pod's container and status in line with the API server.
func (k *Kubelet) sync(ctx context.Context) {
	list, err := k.cfg.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		if ctx.Err() == nil {
			k.cfg.Logf("testkubelet: list pods: %v", err)
		}
		return
	}
	live := map[types.UID]bool{}
	for i := range list.Items {
		pod := &list.Items[i]
		live[pod.UID] = true
		switch {
		case pod.Spec.NodeName == "":
			k.schedule(ctx, pod)
		case pod.Spec.NodeName != k.cfg.NodeName:
		case pod.DeletionTimestamp != nil:
			k.kill(ctx, pod)
		default:
			k.run(ctx, pod)
		}
	}
	// Containers whose pod is gone (deleted with grace 0, or by a test).
	k.mu.Lock()
	var gone []types.UID
	for uid := range k.pods {
		if !live[uid] {
			gone = append(gone, uid)
		}
	}
	k.mu.Unlock()
	for _, uid := range gone {
		k.forget(uid)
	}
}

// schedule binds a pod to the Node if its nodeSelector and tolerations allow,
// or marks it Unschedulable with kube-scheduler's wording.
func (k *Kubelet) schedule(ctx context.Context, pod *corev1.Pod) {
	if pod.DeletionTimestamp != nil {
		return
	}
	reason := ""
	for key, v := range pod.Spec.NodeSelector {
		if k.cfg.Labels[key] != v {
			reason = "1 node(s) didn't match Pod's node affinity/selector"
		}
	}
	for _, taint := range k.cfg.Taints {
		if taint.Effect != corev1.TaintEffectNoSchedule && taint.Effect != corev1.TaintEffectNoExecute {
			continue
		}
		tolerated := false
		for _, tol := range pod.Spec.Tolerations {
			if tol.ToleratesTaint(logr.Discard(), &taint, false) {
				tolerated = true
			}
		}
		if !tolerated {
			reason = fmt.Sprintf("1 node(s) had untolerated taint {%s: %s}", taint.Key, taint.Value)
		}
	}
	if reason == "" {
		err := k.cfg.Client.CoreV1().Pods(pod.Namespace).Bind(ctx, &corev1.Binding{
			ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID},
			Target:     corev1.ObjectReference{Kind: "Node", Name: k.cfg.NodeName},
		}, metav1.CreateOptions{})
		if err != nil && ctx.Err() == nil {
			k.cfg.Logf("testkubelet: bind %s/%s: %v", pod.Namespace, pod.Name, err)
		}
		return
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Reason == corev1.PodReasonUnschedulable {
			return
		}
	}
	pod.Status.Phase = corev1.PodPending
	pod.Status.Conditions = []corev1.PodCondition{{
		Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable,
		Message:            fmt.Sprintf("0/1 nodes are available: %s. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.", reason),
		LastTransitionTime: metav1.Now(),
	}}
	if _, err := k.cfg.Client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil && ctx.Err() == nil {
		k.cfg.Logf("testkubelet: mark %s/%s unschedulable: %v", pod.Namespace, pod.Name, err)
	}
}

// kill removes a deleted pod's container, then the pod itself.
func (k *Kubelet) kill(ctx context.Context, pod *corev1.Pod) {
	k.forget(pod.UID)
	zero := int64(0)
	err := k.cfg.Client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &pod.UID}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) && ctx.Err() == nil {
		k.cfg.Logf("testkubelet: finish deleting %s/%s: %v", pod.Namespace, pod.Name, err)
	}
}

// forget removes a pod's container, volumes and IP.
func (k *Kubelet) forget(uid types.UID) {
	k.mu.Lock()
	ps := k.pods[uid]
	delete(k.pods, uid)
	if ps != nil {
		delete(k.used, ps.ip)
	}
	k.mu.Unlock()
	if ps == nil {
		return
	}
	if ps.container != "" {
		// SIGTERM first, as a kubelet does, with a short grace.
		_ = exec.Command("docker", "stop", "-t", "2", ps.container).Run()
		// rm can race the end of a container that was just killed: retry
		// until it is gone.
		for i := 0; ; i++ {
			out, err := exec.Command("docker", "rm", "-f", ps.container).CombinedOutput()
			if err == nil || strings.Contains(string(out), "No such container") {
				break
			}
			if i == 50 {
				k.cfg.Logf("testkubelet: remove container %s: %s", ps.container, strings.TrimSpace(string(out)))
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	_ = os.RemoveAll(filepath.Join(k.cfg.StateDir, string(uid)))
}

func (k *Kubelet) state(pod *corev1.Pod) *podState {
	k.mu.Lock()
	defer k.mu.Unlock()
	ps := k.pods[pod.UID]
	if ps == nil {
		ps = &podState{key: pod.Namespace + "/" + pod.Name}
		k.pods[pod.UID] = ps
	}
	return ps
}

// run starts a bound pod's container if it has none, then reports its status.
func (k *Kubelet) run(ctx context.Context, pod *corev1.Pod) {
	ps := k.state(pod)
	if ps.container == "" {
		if err := k.start(ctx, pod, ps); err != nil {
			k.cfg.Logf("testkubelet: start %s/%s: %v", pod.Namespace, pod.Name, err)
		}
	}
	k.report(ctx, pod, ps)
}

func (k *Kubelet) start(ctx context.Context, pod *corev1.Pod, ps *podState) error {
	if len(pod.Spec.Containers) == 0 {
		return nil
	}
	c := pod.Spec.Containers[0]
	if err := exec.Command("docker", "image", "inspect", c.Image).Run(); err != nil {
		ps.pulls++
		ps.waiting, ps.waitMsg = "ErrImagePull", fmt.Sprintf("failed to pull and unpack image %q: the test kubelet never pulls, and the local Docker Engine has no such image", c.Image)
		if ps.pulls > 1 {
			ps.waiting, ps.waitMsg = "ImagePullBackOff", fmt.Sprintf("Back-off pulling image %q: ErrImagePull: the local Docker Engine has no such image", c.Image)
		}
		return nil
	}
	if ps.ip == "" {
		ip, err := k.allocIP()
		if err != nil {
			return err
		}
		ps.ip = ip
	}
	args := []string{"run", "-d", "--name", fmt.Sprintf("k8s_%s_%s_%s", c.Name, pod.Name, string(pod.UID)[:8]),
		"--network", k.network, "--ip", ps.ip, "--hostname", pod.Name,
		"--label", "wiz-testkubelet=" + k.label, "--label", "wiz-testkubelet.uid=" + string(pod.UID)}
	env, err := k.env(ctx, pod, c, ps.ip)
	if err != nil {
		ps.waiting, ps.waitMsg = "CreateContainerConfigError", err.Error()
		return nil
	}
	for _, e := range env {
		args = append(args, "--env", e)
	}
	mounts, err := k.volumes(ctx, pod, c)
	if err != nil {
		ps.waiting, ps.waitMsg = "ContainerCreating", "MountVolume.SetUp failed: "+err.Error()
		return nil
	}
	for _, m := range mounts {
		args = append(args, "--volume", m)
	}
	if q, ok := c.Resources.Limits[corev1.ResourceMemory]; ok {
		args = append(args, "--memory", strconv.FormatInt(q.Value(), 10), "--memory-swap", strconv.FormatInt(q.Value(), 10))
	}
	if q, ok := c.Resources.Limits[corev1.ResourceCPU]; ok {
		args = append(args, "--cpus", strconv.FormatFloat(float64(q.MilliValue())/1000, 'f', 3, 64))
	}
	if c.WorkingDir != "" {
		args = append(args, "--workdir", c.WorkingDir)
	}
	// $(VAR) in command and args expands to the container's env, as a kubelet does.
	vars := map[string]string{}
	for _, e := range env {
		k, v, _ := strings.Cut(e, "=")
		vars[k] = v
	}
	command, cargs := expand(c.Command, vars), expand(c.Args, vars)
	rest := cargs
	if len(command) > 0 {
		args = append(args, "--entrypoint", command[0])
		rest = append(append([]string{}, command[1:]...), cargs...)
	}
	args = append(args, c.Image)
	args = append(args, rest...)
	var stderr strings.Builder
	run := exec.CommandContext(ctx, "docker", args...)
	run.Stderr = &stderr
	out, err := run.Output()
	if err != nil {
		out = []byte(stderr.String())
		ps.waiting, ps.waitMsg = "RunContainerError", strings.TrimSpace(string(out))
		ps.container = ""
		// docker run may leave a created container behind.
		_ = exec.Command("docker", "rm", "-f", fmt.Sprintf("k8s_%s_%s_%s", c.Name, pod.Name, string(pod.UID)[:8])).Run()
		return fmt.Errorf("docker run: %s", strings.TrimSpace(string(out)))
	}
	k.mu.Lock()
	ps.container = strings.TrimSpace(string(out))
	ps.waiting, ps.waitMsg = "", ""
	ps.started = time.Now()
	k.mu.Unlock()
	k.cfg.Logf("testkubelet: started %s/%s at %s", pod.Namespace, pod.Name, ps.ip)
	return nil
}

func (k *Kubelet) env(ctx context.Context, pod *corev1.Pod, c corev1.Container, ip string) ([]string, error) {
	var out []string
	for _, e := range c.Env {
		v := e.Value
		if s := e.ValueFrom; s != nil {
			switch {
			case s.FieldRef != nil:
				switch s.FieldRef.FieldPath {
				case "status.podIP":
					v = ip
				case "metadata.name":
					v = pod.Name
				case "metadata.namespace":
					v = pod.Namespace
				case "spec.nodeName":
					v = pod.Spec.NodeName
				default:
					return nil, fmt.Errorf("test kubelet: unsupported fieldRef %s", s.FieldRef.FieldPath)
				}
			case s.SecretKeyRef != nil:
				sec, err := k.cfg.Client.CoreV1().Secrets(pod.Namespace).Get(ctx, s.SecretKeyRef.Name, metav1.GetOptions{})
				if err != nil {
					return nil, fmt.Errorf("secret %q not found", s.SecretKeyRef.Name)
				}
				b, ok := sec.Data[s.SecretKeyRef.Key]
				if !ok {
					return nil, fmt.Errorf("couldn't find key %s in Secret %s/%s", s.SecretKeyRef.Key, pod.Namespace, s.SecretKeyRef.Name)
				}
				v = string(b)
			}
		}
		out = append(out, e.Name+"="+v)
	}
	return out, nil
}

// volumes writes secret volumes under StateDir and returns docker -v specs.
func (k *Kubelet) volumes(ctx context.Context, pod *corev1.Pod, c corev1.Container) ([]string, error) {
	var out []string
	for _, vm := range c.VolumeMounts {
		var vol *corev1.Volume
		for i := range pod.Spec.Volumes {
			if pod.Spec.Volumes[i].Name == vm.Name {
				vol = &pod.Spec.Volumes[i]
			}
		}
		if vol == nil || vol.Secret == nil {
			continue // only secret volumes are supported
		}
		sec, err := k.cfg.Client.CoreV1().Secrets(pod.Namespace).Get(ctx, vol.Secret.SecretName, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("secret %q not found", vol.Secret.SecretName)
		}
		dir := filepath.Join(k.cfg.StateDir, string(pod.UID), "volumes", vm.Name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		mode := os.FileMode(0o644)
		if vol.Secret.DefaultMode != nil {
			mode = os.FileMode(*vol.Secret.DefaultMode)
		}
		files := map[string]string{}
		for key := range sec.Data {
			files[key] = key
		}
		if len(vol.Secret.Items) > 0 {
			files = map[string]string{}
			for _, it := range vol.Secret.Items {
				if _, ok := sec.Data[it.Key]; !ok {
					return nil, fmt.Errorf("secret %q has no key %q", vol.Secret.SecretName, it.Key)
				}
				files[it.Key] = it.Path
			}
		}
		for key, path := range files {
			if err := os.WriteFile(filepath.Join(dir, path), sec.Data[key], mode); err != nil {
				return nil, err
			}
		}
		out = append(out, dir+":"+vm.MountPath+":ro")
	}
	return out, nil
}

// dockerState is the part of `docker inspect`'s State the kubelet reads.
type dockerState struct {
	Status     string
	Running    bool
	OOMKilled  bool
	ExitCode   int
	Error      string
	StartedAt  time.Time
	FinishedAt time.Time
}

func (k *Kubelet) inspect(id string) (*dockerState, error) {
	out, err := exec.Command("docker", "inspect", "--format", "{{json .State}}", id).Output()
	if err != nil {
		return nil, fmt.Errorf("docker inspect %s: %w", id, err)
	}
	var s dockerState
	if err := json.Unmarshal(out, &s); err != nil {
		return nil, err
	}
	k.mu.Lock()
	if k.oom[id] {
		s.OOMKilled = true
	}
	k.mu.Unlock()
	return &s, nil
}

// report writes the pod's status from the container's state, if it changed.
func (k *Kubelet) report(ctx context.Context, pod *corev1.Pod, ps *podState) {
	if len(pod.Spec.Containers) == 0 {
		return
	}
	c := pod.Spec.Containers[0]
	st := pod.Status.DeepCopy()
	st.HostIP = k.gateway()
	st.HostIPs = []corev1.HostIP{{IP: st.HostIP}}
	if st.StartTime == nil {
		now := metav1.Now()
		st.StartTime = &now
	}
	cs := corev1.ContainerStatus{Name: c.Name, Image: c.Image, ImageID: "docker://" + c.Image}
	ready := false
	phase := corev1.PodPending
	switch {
	case ps.container == "":
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: ps.waiting, Message: ps.waitMsg}
		if ps.waiting == "" {
			cs.State.Waiting.Reason = "ContainerCreating"
		}
	default:
		ds, err := k.inspect(ps.container)
		if err != nil {
			k.cfg.Logf("testkubelet: %v", err)
			return
		}
		cs.ContainerID = "docker://" + ps.container
		started := true
		cs.Started = &started
		if ds.Running && !ds.OOMKilled {
			phase = corev1.PodRunning
			cs.State.Running = &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(ds.StartedAt.Truncate(time.Second))}
			ready = probe(c.ReadinessProbe, ps.ip)
		} else {
			if ds.Running { // OOM elsewhere in the container: kill it all, as memory.oom.group does
				_ = exec.Command("docker", "kill", ps.container).Run()
				ds.ExitCode = 137
				ds.FinishedAt = time.Now()
			}
			reason := "Completed"
			switch {
			case ds.OOMKilled:
				reason = "OOMKilled"
			case ds.ExitCode != 0:
				reason = "Error"
			}
			phase = corev1.PodSucceeded
			if ds.ExitCode != 0 || ds.OOMKilled {
				phase = corev1.PodFailed
			}
			cs.State.Terminated = &corev1.ContainerStateTerminated{
				ExitCode: int32(ds.ExitCode), Reason: reason, Message: ds.Error,
				StartedAt: metav1.NewTime(ds.StartedAt.Truncate(time.Second)), FinishedAt: metav1.NewTime(ds.FinishedAt.Truncate(time.Second)),
				ContainerID: cs.ContainerID,
			}
		}
	}
	cs.Ready = ready
	st.Phase = phase
	if ps.ip != "" {
		st.PodIP = ps.ip
		st.PodIPs = []corev1.PodIP{{IP: ps.ip}}
	}
	st.ContainerStatuses = []corev1.ContainerStatus{cs}
	cond := func(t corev1.PodConditionType, ok bool) corev1.PodCondition {
		s := corev1.ConditionFalse
		if ok {
			s = corev1.ConditionTrue
		}
		return corev1.PodCondition{Type: t, Status: s}
	}
	st.Conditions = []corev1.PodCondition{cond(corev1.PodScheduled, true), cond(corev1.PodInitialized, true),
		cond(corev1.ContainersReady, ready), cond(corev1.PodReady, ready)}
	// Keep transition times stable so an unchanged status is not rewritten.
	b, _ := json.Marshal(st)
	if string(b) == ps.lastSent {
		return
	}
	now := metav1.Now()
	for i := range st.Conditions {
		st.Conditions[i].LastTransitionTime = now
	}
	pod.Status = *st
	if _, err := k.cfg.Client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		if ctx.Err() == nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			k.cfg.Logf("testkubelet: status of %s/%s: %v", pod.Namespace, pod.Name, err)
		}
		return
	}
	ps.lastSent = string(b)
}

// probe runs a tcpSocket readiness probe; a container without one is ready
// when running.
func probe(p *corev1.Probe, ip string) bool {
	if p == nil || p.TCPSocket == nil {
		return true
	}
	conn, err := net.DialTimeout("tcp", net.JoinHostPort(ip, p.TCPSocket.Port.String()), time.Second)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

// containers lists the IDs of this kubelet's containers.
func (k *Kubelet) containers() []string {
	out, err := exec.Command("docker", "ps", "-aq", "--filter", "label=wiz-testkubelet="+k.label).Output()
	if err != nil {
		return nil
	}
	return strings.Fields(string(out))
}

// watchOOM starts `docker events` for OOM events of this kubelet's containers.
func (k *Kubelet) watchOOM(ctx context.Context) (*bufio.Scanner, error) {
	cmd := exec.CommandContext(ctx, "docker", "events", "--filter", "type=container", "--filter", "event=oom",
		"--filter", "label=wiz-testkubelet="+k.label, "--format", "{{.ID}}")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("test kubelet: docker events: %w", err)
	}
	k.wg.Add(1)
	go func() { defer k.wg.Done(); _ = cmd.Wait() }() // reaps it when ctx ends
	return bufio.NewScanner(out), nil
}

func (k *Kubelet) readOOM(sc *bufio.Scanner) {
	for sc.Scan() {
		id := strings.TrimSpace(sc.Text())
		k.mu.Lock()
		for _, ps := range k.pods {
			if ps.container != "" && strings.HasPrefix(ps.container, id) {
				k.oom[ps.container] = true
				k.oomPods[ps.key] = true
			}
		}
		k.mu.Unlock()
	}
}

// expand replaces $(VAR) with env values; $$(VAR) escapes, as in Kubernetes.
func expand(in []string, vars map[string]string) []string {
	var out []string
	for _, s := range in {
		var b strings.Builder
		for i := 0; i < len(s); i++ {
			if strings.HasPrefix(s[i:], "$$(") {
				b.WriteString("$(")
				i += 2
				continue
			}
			if strings.HasPrefix(s[i:], "$(") {
				if j := strings.IndexByte(s[i:], ')'); j > 0 {
					if v, ok := vars[s[i+2:i+j]]; ok {
						b.WriteString(v)
						i += j
						continue
					}
				}
			}
			b.WriteByte(s[i])
		}
		out = append(out, b.String())
	}
	return out
}
