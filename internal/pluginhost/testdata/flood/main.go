// Command flood is a test processor pack whose flood/shout logs as much as
// it is told to through the SDK's Emitter, to check that a pack's logs are
// held to max_log_size as a program's are.
package main

import (
	"bytes"
	"context"
	"fmt"

	"github.com/wiz-run/wiz/sdk/processor"
)

func main() {
	processor.Serve(&processor.Pack{
		Name:    "flood",
		Version: "1.0.0",
		Types: []processor.Type{{
			Name:      "shout",
			Doc:       "Logs first-line, MB megabytes of 100-byte lines, then last-line.",
			Fields:    []processor.Field{{Name: "mb", Type: "int", Default: 10, Doc: "megabytes to log"}},
			Processor: processor.ProcessorFunc(shout),
		}},
	})
}

func shout(_ context.Context, req *processor.Request, emit processor.Emitter) error {
	var c struct {
		MB int `json:"mb"`
	}
	if err := req.Decode(&c); err != nil {
		return err
	}
	emit.Log("stderr", []byte("first-line\n"))
	line := append(bytes.Repeat([]byte("x"), 99), '\n')
	chunk := bytes.Repeat(line, 640) // 64,000 bytes
	for sent := 0; sent < c.MB*1_000_000; sent += len(chunk) {
		emit.Log("stderr", chunk)
	}
	emit.Log("stderr", []byte("last-line\n"))
	return emit.Output("out", processor.Text(fmt.Sprintf("logged %d MB\n", c.MB)))
}
