// Package processor is the SDK for writing a wiz processor pack: one plugin
// binary that serves one or more named processor types.
//
// A type is either a data processor, which runs inside the pack and works on
// Wiz Data and Wiz Files (implement Processor), or a native-program wrapper,
// which turns its config into an invocation Plan that `wiz executor` carries
// out itself (implement Native). Plans are asked once per config and cached by
// the executor, so a thousand tasks of one wrapper cost one pack call.
//
// A pack's main is a few lines:
//
//	func main() {
//		processor.Serve(&processor.Pack{
//			Name:    "acme",
//			Version: "1.2.0",
//			Types:   []processor.Type{{Name: "upper", Processor: upper{}}},
//		})
//	}
package processor
