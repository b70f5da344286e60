// Command wiz-executor-kubernetes is wiz's Kubernetes executor backend: for
// each executor the Manager asks for, it creates a pod running `wiz executor`
// (labels wiz.run=<run id>, a fresh TLS identity and one-time token in a
// Secret), waits until the pod is Ready, returns the pod's IP, and deletes
// the pod, its Secret and its Lease at Teardown. Executors on pods are remote:
// the Manager sends them packs and input blobs by digest.
//
// Pods whose backend died (a killed Manager) are collected by the next
// backend that starts in the same namespace: every pod has a Lease of the
// same name that its backend renews, and pods whose Lease expired are deleted.
package main

import "github.com/wiz-run/wiz/sdk/executor"

// version is set at build time with -ldflags "-X main.version=…".
var version = "0.1.0"

func main() {
	executor.Serve(executor.Info{Name: "kubernetes", Version: version}, newBackend(version))
}
