package main

import (
	"context"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// collectTimeout bounds one collection of orphans.
const collectTimeout = time.Minute

// collectOnce collects orphans in a namespace the first time this backend
// process provisions there, in the background.
func (b *backend) collectOnce(kc kubernetes.Interface, namespace string) {
	b.mu.Lock()
	done := b.collected[namespace]
	b.collected[namespace] = true
	b.mu.Unlock()
	if done {
		return
	}
	go func() { // bounded by collectTimeout; the process exits when its host ends it
		ctx, cancel := context.WithTimeout(context.Background(), collectTimeout)
		defer cancel()
		n, err := collectOrphans(ctx, kc, namespace, time.Now())
		if err != nil {
			b.log.Warn("collect orphaned executor pods", "namespace", namespace, "error", err)
			return
		}
		if n > 0 {
			b.log.Info("collected orphaned executor pods", "namespace", namespace, "count", n)
		}
	}()
}

// collectOrphans deletes executor pods (and their Secrets and Leases) whose
// Lease has not been renewed for leaseDuration, or that have no Lease: their
// backend process, and so the Manager that wanted them, is gone. It returns
// how many executors it deleted.
func collectOrphans(ctx context.Context, kc kubernetes.Interface, namespace string, now time.Time) (int, error) {
	sel := metav1.ListOptions{LabelSelector: labelRun + "," + labelManagedBy + "=" + managedByValue}
	leases, err := kc.CoordinationV1().Leases(namespace).List(ctx, sel)
	if err != nil {
		return 0, err
	}
	live := map[string]bool{}
	expired := map[string]bool{}
	for _, l := range leases.Items {
		renew := l.CreationTimestamp.Time
		if l.Spec.RenewTime != nil {
			renew = l.Spec.RenewTime.Time
		}
		d := leaseDuration
		if l.Spec.LeaseDurationSeconds != nil {
			d = time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second
		}
		if now.Sub(renew) > d {
			expired[l.Name] = true
		} else {
			live[l.Name] = true
		}
	}
	names := map[string]bool{}
	pods, err := kc.CoreV1().Pods(namespace).List(ctx, sel)
	if err != nil {
		return 0, err
	}
	for _, p := range pods.Items {
		// A pod without a Lease is an orphan only once it is older than a
		// Lease's life: its Lease is made before it.
		if !live[p.Name] && (expired[p.Name] || now.Sub(p.CreationTimestamp.Time) > leaseDuration) {
			names[p.Name] = true
		}
	}
	secrets, err := kc.CoreV1().Secrets(namespace).List(ctx, sel)
	if err != nil {
		return 0, err
	}
	for _, s := range secrets.Items {
		if !live[s.Name] && (expired[s.Name] || now.Sub(s.CreationTimestamp.Time) > leaseDuration) {
			names[s.Name] = true
		}
	}
	for n := range expired {
		names[n] = true
	}
	count := 0
	for n := range names {
		if err := deleteExecutor(ctx, kc, namespace, n, teardownWait); err != nil && !apierrors.IsNotFound(err) {
			return count, err
		}
		count++
	}
	return count, nil
}
