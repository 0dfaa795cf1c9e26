//go:build bench

package bench

import "github.com/qinling-go/qinling/pkg/testutil"

// mode is one server configuration the benchmark runs.
type mode struct {
	name    string
	options []testutil.Option
	lists   bool // also time large lists on this server
}

// isolationModes are the execution modes compared against the baseline.
func isolationModes() []mode {
	return []mode{
		{name: "warm reuse", lists: true},
	}
}
