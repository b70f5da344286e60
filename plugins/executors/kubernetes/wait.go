package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
)

// waitReady waits until the pod is Ready and returns its IP. It fails at
// once when the pod cannot start (its container ended, the image cannot be
// pulled after a retry, the container cannot be configured) and after
// timeout otherwise, quoting the pod's own reason either way.
func waitReady(ctx context.Context, kc kubernetes.Interface, namespace, name string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	id := namespace + "/" + name
	last := "no status yet"
	for {
		p, err := kc.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			if apierrors.IsNotFound(err) {
				return "", fmt.Errorf("kubernetes executor: pod %s was deleted while starting", id)
			}
			if ctx.Err() != nil {
				return "", notReady(ctx, id, timeout, last)
			}
			return "", fmt.Errorf("kubernetes executor: get pod %s: %w", id, err)
		}
		ip, state, fatal := readiness(p)
		if ip != "" {
			return ip, nil
		}
		last = state
		if fatal {
			return "", fmt.Errorf("kubernetes executor: pod %s cannot start: %s", id, state)
		}
		w, err := kc.CoreV1().Pods(namespace).Watch(ctx, metav1.ListOptions{
			FieldSelector: fields.OneTermEqualSelector("metadata.name", name).String(), ResourceVersion: p.ResourceVersion,
		})
		if err != nil {
			if ctx.Err() != nil {
				return "", notReady(ctx, id, timeout, last)
			}
			return "", fmt.Errorf("kubernetes executor: watch pod %s: %w", id, err)
		}
		gone, err := func() (bool, error) {
			defer w.Stop()
			for {
				select {
				case <-ctx.Done():
					return false, notReady(ctx, id, timeout, last)
				case ev, ok := <-w.ResultChan():
					if !ok {
						return false, nil // the watch ended: get and watch again
					}
					switch ev.Type {
					case watch.Deleted:
						return true, nil
					case watch.Added, watch.Modified:
						p, ok := ev.Object.(*corev1.Pod)
						if !ok {
							continue
						}
						ip, state, fatal := readiness(p)
						if ip != "" {
							return false, errReady(ip)
						}
						last = state
						if fatal {
							return false, fmt.Errorf("kubernetes executor: pod %s cannot start: %s", id, state)
						}
					}
				}
			}
		}()
		if r, ok := err.(errReady); ok {
			return string(r), nil
		}
		if err != nil {
			return "", err
		}
		if gone {
			return "", fmt.Errorf("kubernetes executor: pod %s was deleted while starting", id)
		}
	}
}

// errReady carries the pod IP out of the watch loop.
type errReady string

func (e errReady) Error() string { return "ready at " + string(e) }

func notReady(ctx context.Context, id string, timeout time.Duration, last string) error {
	if ctx.Err() == context.DeadlineExceeded {
		return fmt.Errorf("kubernetes executor: pod %s not ready within %s: %s (set readyTimeout under executor to wait longer)", id, timeout, last)
	}
	return fmt.Errorf("kubernetes executor: provision pod %s: %w", id, ctx.Err())
}

// fatalWaiting are container waiting reasons that do not heal by waiting.
var fatalWaiting = map[string]bool{
	"ImagePullBackOff": true, "InvalidImageName": true, "ErrImageNeverPull": true,
	"CreateContainerConfigError": true, "CreateContainerError": true, "RunContainerError": true,
	"CrashLoopBackOff": true,
}

// readiness reads a pod: its IP once Ready; otherwise a one-line account of
// why not, in the pod's own words, and whether it can never become Ready.
func readiness(p *corev1.Pod) (ip, state string, fatal bool) {
	if p.DeletionTimestamp != nil {
		return "", "pod is being deleted", true
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue && p.Status.PodIP != "" {
			return p.Status.PodIP, "", false
		}
	}
	switch p.Status.Phase {
	case corev1.PodFailed, corev1.PodSucceeded:
		return "", "pod " + string(p.Status.Phase) + ": " + terminated(p), true
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse {
			return "", join(c.Reason, c.Message), false
		}
	}
	for _, cs := range p.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil && w.Reason != "" {
			return "", join(w.Reason, w.Message), fatalWaiting[w.Reason]
		}
		if cs.State.Terminated != nil {
			return "", terminated(p), true
		}
		if cs.State.Running != nil {
			return "", "container running, not Ready yet (readiness probe on port 7443)", false
		}
	}
	if p.Status.Reason != "" {
		return "", join(p.Status.Reason, p.Status.Message), false
	}
	if p.Spec.NodeName == "" {
		return "", "Pending: not scheduled yet", false
	}
	return "", "Pending on node " + p.Spec.NodeName, false
}

// terminated says how a pod's container ended, in Kubernetes' words.
func terminated(p *corev1.Pod) string {
	if p.Status.Reason != "" { // Evicted, NodeLost, …
		return join(p.Status.Reason, p.Status.Message)
	}
	for _, cs := range p.Status.ContainerStatuses {
		if t := cs.State.Terminated; t != nil {
			s := fmt.Sprintf("container %s %s (exit code %d)", cs.Name, t.Reason, t.ExitCode)
			if t.Message != "" {
				s += ": " + strings.TrimSpace(t.Message)
			}
			return s
		}
	}
	return "no container status"
}

func join(reason, msg string) string {
	switch {
	case reason == "":
		return msg
	case msg == "":
		return reason
	}
	return reason + ": " + msg
}

// waitGone waits until the pod no longer exists, or wait passes.
func waitGone(ctx context.Context, kc kubernetes.Interface, namespace, name string, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		_, err := kc.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pod %s/%s still exists %s after it was deleted (is the node's kubelet up?)", namespace, name, wait)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
