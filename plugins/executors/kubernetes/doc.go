// Package kubernetes will hold the Kubernetes executor backend: a go-plugin
// binary that runs `wiz executor` in pods. It is not built yet (see the
// Kubernetes executor issue); pipelines that ask for `executor: kubernetes`
// get an error saying that no such backend is installed.
package kubernetes
