package sdk

import (
	"github.com/hashicorp/go-plugin"
)

// ProtocolVersion is the plugin protocol version this SDK speaks. Host and
// plugin agree on it in the go-plugin handshake; a plugin built for another
// version is refused with an error naming both versions.
//
// History:
//   - 1: first protocol: packs Describe/Plan/Process, backends
//     Describe/Provision/Teardown (wiz 0.1).
const ProtocolVersion = 1

// Plugin names in the go-plugin plugin set. A binary serves exactly one kind.
const (
	// PackPluginName is the name a processor pack is served under.
	PackPluginName = "pack"
	// BackendPluginName is the name an executor backend is served under.
	BackendPluginName = "executor"
)

// Handshake is the go-plugin handshake shared by wiz and every wiz plugin. The
// magic cookie only tells a user who runs a plugin binary by hand that it is
// not meant to be run directly; it is not a security measure.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  ProtocolVersion,
	MagicCookieKey:   "WIZ_PLUGIN",
	MagicCookieValue: "9b1f0c52-wiz-plugin-7d4e",
}

// MaxMessageSize is the gRPC message size limit set explicitly on both sides of
// every plugin connection. Large data crosses as Wiz Files, not in one message.
const MaxMessageSize = 64 << 20
