// Command wiz-executor-local is wiz's bundled local executor backend: it starts
// `wiz executor` as a child process on 127.0.0.1 with a fresh token and a
// fresh self-signed TLS certificate.
package main

import "github.com/wiz-run/wiz/sdk/executor"

// version is set at build time with -ldflags "-X main.version=…".
var version = "0.1.0"

func main() {
	executor.Serve(executor.Info{Name: "local", Version: version}, newBackend())
}
