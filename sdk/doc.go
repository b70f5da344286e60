// Package sdk holds what every wiz plugin shares with its host: the go-plugin
// handshake and the protocol version. Plugin authors import sdk/processor to
// write a processor pack and sdk/executor to write an executor backend; both
// build from this module's sdk/ and proto/ packages alone.
package sdk
