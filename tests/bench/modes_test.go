//go:build bench

package bench

import (
	"os"
	"strings"
	"testing"

	"github.com/qinling-go/qinling/pkg/testutil"
)

// mode is one server configuration the benchmark runs.
type mode struct {
	name    string
	options []testutil.Option
	lists   bool // also time large lists on this server
}

// strict returns the options of strict isolation plus extra [engine] or
// [local_orchestrator] settings (section, key, value triples).
func strict(extra ...string) []testutil.Option {
	opts := []testutil.Option{testutil.WithConfig("engine", "isolation", "strict")}
	for i := 0; i+2 < len(extra); i += 3 {
		opts = append(opts, testutil.WithConfig(extra[i], extra[i+1], extra[i+2]))
	}
	return opts
}

// isolationModes are the execution modes compared against the baseline:
// warm reuse, strict isolation as configured by default (the benchmark's
// function is busy, so it gets a function zygote), and three strict
// variants that show what each part buys: importing the function in every
// execution (runtime zygote), forking when the call arrives instead of
// before (no prepared process), and a fresh interpreter per call through
// the whole service (no zygote).
func isolationModes() []mode {
	return []mode{
		{name: "warm reuse", lists: true},
		{name: "strict", options: strict()},
		{name: "strict, runtime zygote", options: strict("engine", "preload_policy", "runtime")},
		{name: "strict, no prepared process", options: strict("local_orchestrator", "strict_spares", "0")},
		{name: "strict, no zygote (fresh interpreter)", options: strict("engine", "preload_policy", "none")},
	}
}

// withLists is false when QINLING_BENCH_LISTS=0: the large-list timings
// fill a project with thousands of rows, which a run about latency skips.
var withLists = os.Getenv("QINLING_BENCH_LISTS") != "0"

// selectedModes are the modes QINLING_BENCH_MODES names (comma-separated,
// e.g. "warm reuse,strict"), or all of them when it is unset; the baseline
// always runs, the ratios need it. "real stack" names the devstack row.
func selectedModes(t *testing.T) []mode {
	names := os.Getenv("QINLING_BENCH_MODES")
	if names == "" {
		return isolationModes()
	}
	want := map[string]bool{}
	for _, n := range strings.Split(names, ",") {
		want[strings.TrimSpace(n)] = true
	}
	var out []mode
	for _, m := range isolationModes() {
		if want[m.name] {
			out = append(out, m)
			delete(want, m.name)
		}
	}
	delete(want, realStackName) // realstack_test.go
	if len(want) > 0 {
		t.Fatalf("QINLING_BENCH_MODES names unknown modes %v", want)
	}
	return out
}
