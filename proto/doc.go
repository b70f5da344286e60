// Package proto holds wiz's protocol definitions (.proto files) and the Go code
// generated from them: wizpb for the data model and persisted state, wizrpc for
// the executor API and the plugin APIs. Regenerate with `make proto`.
package proto
