package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/wiz-run/wiz/sdk/executor"
)

// teardownWait bounds how long Teardown waits for a deleted pod to be gone.
const teardownWait = 30 * time.Second

// EnvKubeContext names the kubeconfig context to use (wiz --kube-context).
const EnvKubeContext = "WIZ_KUBE_CONTEXT"

type backend struct {
	version string
	log     hclog.Logger
	holder  string // this process's identity in Leases

	clientOnce sync.Once
	client     kubernetes.Interface
	clientErr  error

	mu        sync.Mutex
	executors map[string]*pod // by executor ID (namespace/name)
	collected map[string]bool // namespaces whose orphans were collected
}

// pod is one running executor pod and the goroutine renewing its Lease.
type pod struct {
	namespace, name string
	stop            context.CancelFunc
	renewed         chan struct{} // closed when the renewer ends
}

func newBackend(version string) *backend {
	host, _ := os.Hostname()
	return &backend{
		version:   version,
		log:       hclog.New(&hclog.LoggerOptions{Name: "kubernetes", Output: os.Stderr, JSONFormat: true, Level: hclog.LevelFromString(os.Getenv("WIZ_LOG_LEVEL"))}),
		holder:    fmt.Sprintf("wiz-executor-kubernetes/%s/%d", host, os.Getpid()),
		executors: map[string]*pod{},
		collected: map[string]bool{},
	}
}

// kube returns the API client: the kubeconfig from KUBECONFIG or
// ~/.kube/config (context from WIZ_KUBE_CONTEXT, else the current one), or
// the in-cluster config when there is no kubeconfig.
func (b *backend) kube() (kubernetes.Interface, error) {
	b.clientOnce.Do(func() {
		rules := clientcmd.NewDefaultClientConfigLoadingRules()
		overrides := &clientcmd.ConfigOverrides{CurrentContext: os.Getenv(EnvKubeContext)}
		cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides).ClientConfig()
		if err != nil {
			if clientcmd.IsEmptyConfig(err) {
				err = fmt.Errorf("no kubeconfig found (KUBECONFIG, ~/.kube/config) and not running in a cluster")
			}
			b.clientErr = fmt.Errorf("kubernetes executor: load kubeconfig: %w; set KUBECONFIG or --kube-context", err)
			return
		}
		cfg.UserAgent = "wiz-executor-kubernetes/" + b.version
		cfg.QPS, cfg.Burst = 50, 100
		b.client, b.clientErr = kubernetes.NewForConfig(cfg)
	})
	return b.client, b.clientErr
}

// Provision implements executor.Backend: one pod, Ready, per call.
func (b *backend) Provision(ctx context.Context, req *executor.ProvisionRequest) (*executor.ProvisionResponse, error) {
	cfg, err := parseConfig(req.Config, "wiz:"+b.version)
	if err != nil {
		return nil, err
	}
	kc, err := b.kube()
	if err != nil {
		return nil, err
	}
	b.collectOnce(kc, cfg.Namespace)

	certPEM, keyPEM, err := executor.SelfSigned(serverName)
	if err != nil {
		return nil, fmt.Errorf("kubernetes executor: make TLS certificate: %w", err)
	}
	token, err := randomHex(32)
	if err != nil {
		return nil, fmt.Errorf("kubernetes executor: make token: %w", err)
	}
	suffix, err := randomHex(5)
	if err != nil {
		return nil, err
	}
	name := "wiz-executor-" + suffix
	objs := makeObjects(podRequest{Name: name, RunID: req.RunID, Config: cfg, Slots: req.Slots, LogLevel: req.LogLevel,
		CertPEM: certPEM, KeyPEM: keyPEM, Token: token, Holder: b.holder, Now: time.Now(), OrphanTimeout: req.OrphanTimeout})
	id := cfg.Namespace + "/" + name
	// The Lease first: a pod is never without one, so no collector takes a
	// pod that is being made for an orphan.
	if _, err := kc.CoordinationV1().Leases(cfg.Namespace).Create(ctx, objs.Lease, metav1.CreateOptions{}); err != nil {
		return nil, createError("lease", id, err)
	}
	b.track(kc, cfg.Namespace, name)
	fail := func(err error) (*executor.ProvisionResponse, error) {
		_ = b.remove(context.Background(), kc, id, false)
		return nil, err
	}
	if _, err := kc.CoreV1().Secrets(cfg.Namespace).Create(ctx, objs.Secret, metav1.CreateOptions{}); err != nil {
		return fail(createError("secret", id, err))
	}
	if _, err := kc.CoreV1().Pods(cfg.Namespace).Create(ctx, objs.Pod, metav1.CreateOptions{}); err != nil {
		return fail(createError("pod", id, err))
	}
	b.log.Debug("pod created", "pod", id, "run", req.RunID)
	ip, err := waitReady(ctx, kc, cfg.Namespace, name, cfg.readyTimeout)
	if err != nil {
		return fail(err)
	}
	b.log.Debug("pod ready", "pod", id, "ip", ip)
	return &executor.ProvisionResponse{
		ExecutorID: id,
		Endpoint: executor.Endpoint{
			Address: net.JoinHostPort(ip, fmt.Sprint(executorPort)), CACertPEM: certPEM, ServerName: serverName, Token: token,
		},
		Remote: true,
	}, nil
}

// Adopt implements executor.Adopter: a restarted Manager takes over an
// executor pod that an earlier process of this backend made for it, before
// it was killed. The pod's Lease is renewed from now on by this process;
// the endpoint is read back from the pod and its Secret.
func (b *backend) Adopt(ctx context.Context, req *executor.AdoptRequest) (*executor.AdoptResponse, error) {
	id := req.ExecutorID
	namespace, name, ok := strings.Cut(id, "/")
	if !ok {
		return nil, fmt.Errorf("adopt executor pod %q: not NAMESPACE/NAME: %w", id, executor.ErrGone)
	}
	kc, err := b.kube()
	if err != nil {
		return nil, err
	}
	gone := func(what string, err error) (*executor.AdoptResponse, error) {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("adopt executor pod %s: its %s is gone: %w", id, what, executor.ErrGone)
		}
		return nil, fmt.Errorf("adopt executor pod %s: read its %s: %w", id, what, err)
	}
	// The Lease first: once renewed, no collector takes the pod.
	if err := renewLease(ctx, kc, namespace, name); err != nil {
		return gone("lease", err)
	}
	p, err := kc.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return gone("pod", err)
	}
	ip, state, _ := readiness(p)
	if ip == "" {
		return nil, fmt.Errorf("adopt executor pod %s: it no longer serves (%s): %w", id, state, executor.ErrGone)
	}
	sec, err := kc.CoreV1().Secrets(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return gone("secret", err)
	}
	b.mu.Lock()
	tracked := b.executors[id] != nil
	b.mu.Unlock()
	if !tracked {
		b.track(kc, namespace, name)
	}
	b.log.Info("adopted executor pod", "pod", id, "run", req.RunID)
	return &executor.AdoptResponse{
		Endpoint: executor.Endpoint{
			Address: net.JoinHostPort(ip, fmt.Sprint(executorPort)), CACertPEM: sec.Data[corev1.TLSCertKey], ServerName: serverName, Token: string(sec.Data[tokenKey]),
		},
		Remote: true,
	}, nil
}

// Teardown implements executor.Backend: it deletes the pod, its Secret and
// its Lease, and waits (bounded) until the pod is gone.
func (b *backend) Teardown(ctx context.Context, req *executor.TeardownRequest) (*executor.TeardownResponse, error) {
	kc, err := b.kube()
	if err != nil {
		return nil, err
	}
	if err := b.remove(ctx, kc, req.ExecutorID, true); err != nil {
		return nil, err
	}
	return &executor.TeardownResponse{}, nil
}

// Diagnose implements executor.Diagnoser: when the Manager loses an
// executor mid-task, it says why the pod ended, in Kubernetes' words (deleted,
// OOMKilled, evicted, exit code), for the task's error.
func (b *backend) Diagnose(ctx context.Context, req *executor.DiagnoseRequest) (*executor.DiagnoseResponse, error) {
	namespace, name, ok := strings.Cut(req.ExecutorID, "/")
	if !ok {
		return &executor.DiagnoseResponse{}, nil
	}
	kc, err := b.kube()
	if err != nil {
		return &executor.DiagnoseResponse{}, nil
	}
	reason := endReason(ctx, kc, namespace, name)
	if reason == "" {
		return &executor.DiagnoseResponse{}, nil
	}
	return &executor.DiagnoseResponse{Reason: fmt.Sprintf("executor pod %s ended: %s", req.ExecutorID, reason)}, nil
}

// track starts renewing the pod's Lease until remove stops it.
func (b *backend) track(kc kubernetes.Interface, namespace, name string) {
	ctx, cancel := context.WithCancel(context.Background())
	p := &pod{namespace: namespace, name: name, stop: cancel, renewed: make(chan struct{})}
	b.mu.Lock()
	b.executors[namespace+"/"+name] = p
	b.mu.Unlock()
	go func() { // owned by p: ends when remove cancels it
		defer close(p.renewed)
		t := time.NewTicker(leaseDuration / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if err := renewLease(ctx, kc, namespace, name); err != nil && ctx.Err() == nil {
				b.log.Warn("renew lease", "pod", namespace+"/"+name, "error", err)
			}
		}
	}()
}

func renewLease(ctx context.Context, kc kubernetes.Interface, namespace, name string) error {
	l, err := kc.CoordinationV1().Leases(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	now := metav1.NewMicroTime(time.Now())
	l.Spec.RenewTime = &now
	_, err = kc.CoordinationV1().Leases(namespace).Update(ctx, l, metav1.UpdateOptions{})
	return err
}

// remove stops renewing and deletes the pod, Secret and Lease of an
// executor; explain: log why the pod ended if it died before its run did.
func (b *backend) remove(ctx context.Context, kc kubernetes.Interface, id string, explain bool) error {
	namespace, name, ok := strings.Cut(id, "/")
	if !ok {
		return nil // not one of ours: nothing to tear down
	}
	b.mu.Lock()
	p := b.executors[id]
	delete(b.executors, id)
	b.mu.Unlock()
	if p != nil {
		p.stop()
		<-p.renewed
	}
	// A pod that died before its run ended: say why, in Kubernetes' words,
	// before the pod and its status are gone. The host logs it (at info and
	// above, as it does all plugin logs).
	if p != nil && explain {
		if reason := endReason(ctx, kc, namespace, name); reason != "" {
			b.log.Warn(fmt.Sprintf("executor pod %s ended before its run: %s", id, reason), "pod", id)
		}
	}
	return deleteExecutor(ctx, kc, namespace, name, teardownWait)
}

// endReason says why a pod is no longer serving, or "" when it still is. A
// pod whose executor no longer answers but whose end its kubelet has not
// reported yet is given a few seconds to say; so is an API server that does
// not answer at once. A pod whose executor still accepts connections on
// three tries in a row is alive.
func endReason(ctx context.Context, kc kubernetes.Interface, namespace, name string) string {
	deadline := time.Now().Add(3 * time.Second)
	alive := 0
	for {
		p, err := kc.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			return "the pod was deleted"
		case err != nil:
			p = nil // try again until the deadline
		case p.DeletionTimestamp != nil:
			return "the pod was deleted"
		case p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded:
			return terminated(p)
		}
		if time.Now().After(deadline) {
			return ""
		}
		if p != nil {
			if ip, _, _ := readiness(p); ip != "" {
				// Ready, as last reported: if the executor still accepts
				// connections it is alive; if not, its end is not reported yet.
				conn, err := net.DialTimeout("tcp", net.JoinHostPort(ip, fmt.Sprint(executorPort)), 500*time.Millisecond)
				if err == nil {
					conn.Close()
					if alive++; alive == 3 {
						return ""
					}
				} else {
					alive = 0
				}
			}
		}
		select {
		case <-ctx.Done():
			return ""
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// deleteExecutor deletes the pod, then its Secret and Lease, waiting up to
// wait for the pod to be gone. Objects already gone are not an error.
func deleteExecutor(ctx context.Context, kc kubernetes.Interface, namespace, name string, wait time.Duration) error {
	var errs []string
	if err := kc.CoreV1().Pods(namespace).Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		errs = append(errs, fmt.Sprintf("delete pod: %v", err))
	} else if err == nil {
		if err := waitGone(ctx, kc, namespace, name, wait); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if err := kc.CoreV1().Secrets(namespace).Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		errs = append(errs, fmt.Sprintf("delete secret: %v", err))
	}
	if err := kc.CoordinationV1().Leases(namespace).Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		errs = append(errs, fmt.Sprintf("delete lease: %v", err))
	}
	if len(errs) > 0 {
		return fmt.Errorf("kubernetes executor: tear down %s/%s: %s", namespace, name, strings.Join(errs, "; "))
	}
	return nil
}

func createError(what, id string, err error) error {
	hint := ""
	switch {
	case apierrors.IsForbidden(err):
		hint = "; give the user or service account the Role in deploy/rbac.yaml"
	case apierrors.IsNotFound(err):
		hint = "; does the namespace exist?"
	}
	return fmt.Errorf("kubernetes executor: create %s %s: %v%s", what, id, err, hint)
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}
