// Package executor is the SDK for writing a wiz executor backend: a plugin that
// sets up an environment (a local process, a Kubernetes pod, …) and starts
// `wiz executor` in it. A backend never runs tasks itself: the Manager pushes
// tasks to the executor it started, over the endpoint Provision returns.
//
// A backend's main is a few lines:
//
//	func main() {
//		executor.Serve(executor.Info{Name: "local", Version: "0.1.0"}, &backend{})
//	}
package executor
