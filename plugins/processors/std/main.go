// Command wiz-processors-std is wiz's bundled processor pack, std: native
// programs (exec, shell) planned here and run by `wiz executor`, and data
// processors (json, hash, gzip, gunzip) run inside this pack.
package main

import "github.com/wiz-run/wiz/sdk/processor"

// version is set at build time with -ldflags "-X main.version=…".
var version = "0.1.0"

func main() {
	processor.Serve(Pack(version))
}
