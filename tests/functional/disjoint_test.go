//go:build functional

package functional

import (
	"fmt"
	"io/fs"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/testutil"
)

// TestEnginesShareNoDisk is the devstack stack with packages in Swift or S3
// (QINLING_STORAGE=swift|s3): the API and each engine have state
// directories of their own, as on separate machines, and nothing but the
// store carries a package from the API to the engines. Every engine runs
// the function (seen in its own /metrics), and no package file is left in
// an engine's state directory: engines read packages into their workers'
// directories only.
func TestEnginesShareNoDisk(t *testing.T) {
	testutil.SkipUnlessReal(t, srv, "needs the stack's API and engines as separate processes")
	st := srv.Stack
	testutil.SkipUnlessObjectStorage(t, st.Env)
	require.GreaterOrEqual(t, st.Engines, 2, "needs QINLING_ENGINES >= 2")
	fid := newFunction(t, "disjoint", "hello.main", map[string]string{"hello.py": helloPy})

	urls := srv.MetricsURLs(t)[1:] // the engines'; the first is the API's
	ran := func() []float64 {
		out := make([]float64, len(urls))
		for i, u := range urls {
			out[i] = testutil.ParseMetrics(t, testutil.ScrapeMetrics(t, u, "")).Sum("qinling_executions_total", map[string]string{"function_id": fid})
		}
		return out
	}
	everyEngine := func(counts []float64) bool {
		if len(counts) < 2 {
			return false // not measured yet
		}
		for _, n := range counts {
			if n == 0 {
				return false
			}
		}
		return true
	}
	// An execution goes to the engine that has the function's workers
	// (warm_owner); with none it is the broker's pick. So each round starts
	// with the workers detached, and rounds of concurrent executions reach
	// every engine after a few at most.
	const rounds, perRound = 10, 6
	var counts []float64
	for round := 0; round < rounds && !everyEngine(counts); round++ {
		expect(t, call(t, admin, http.MethodPost, "/v1/functions/"+fid+"/detach", nil), http.StatusAccepted)
		ended := make([]map[string]any, perRound)
		var wg sync.WaitGroup
		for i := range ended {
			wg.Go(func() { ended[i] = execute(t, srv, fid, `{"name": "disk"}`, true) })
		}
		wg.Wait()
		for _, ex := range ended {
			require.Equal(t, "success", ex["status"], "round %d: execution %v: %v", round, ex["id"], ex["result"])
		}
		counts = ran()
	}
	require.True(t, everyEngine(counts), "executions of %s per engine after %d rounds: %v", fid, rounds, counts)
	t.Logf("executions of %s per engine: %v", fid, counts)

	for i := 1; i <= st.Engines; i++ {
		dir := filepath.Join(st.Dir, "data", "qinling", fmt.Sprintf("engine-%d", i))
		var zips []string
		require.NoError(t, filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() && strings.HasSuffix(path, ".zip") {
				zips = append(zips, path)
			}
			return err
		}))
		require.Empty(t, zips, "package files in engine-%d's state directory %s", i, dir)
	}
}
