package main

import "github.com/wiz-run/wiz/sdk/processor"

// Pack returns the std pack at the given version.
func Pack(version string) *processor.Pack {
	return &processor.Pack{
		Name:    "std",
		Version: version,
		Types: []processor.Type{
			execType(), shellType(), jsonType(), hashType(), gzipType(), gunzipType(),
		},
	}
}
