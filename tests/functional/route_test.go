//go:build functional

package functional

import (
	"fmt"
	"net/http"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/testutil"
)

// TestRouteWarmOwner: n concurrent 4-second calls of a fresh function leave
// ceil(n / function_concurrency) workers (function_concurrency is 3 by
// default): three leave one, six leave two. On devstack's two engines with
// the local orchestrator each engine can run only its own workers; the
// engine that finds another one owning the function's workers passes its
// executions on (docs/scaling.md, "Several engines") instead of starting a
// worker of its own. On the all-in-one (one engine) the same figures hold.
func TestRouteWarmOwner(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		calls, workers int
		sync           bool
	}{
		{calls: 3, workers: 1, sync: true},
		{calls: 6, workers: 2, sync: true},
		{calls: 3, workers: 1},
		{calls: 6, workers: 2},
	} {
		name := fmt.Sprintf("%d %s calls", tc.calls, map[bool]string{true: "sync", false: "async"}[tc.sync])
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			fid := newFunction(t, "route", "nap.main", map[string]string{"nap.py": napPy}, "timeout", "60")
			ids := make([]string, tc.calls)
			var wg sync.WaitGroup
			for i := range tc.calls {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r, err := srv.TryDo(http.MethodPost, "/v1/executions", map[string]any{
						"function_id": fid, "sync": tc.sync, "input": `{"seconds": 4}`})
					if assert.NoError(t, err) && assert.Equal(t, http.StatusCreated, r.Status, "%s", r) {
						obj, _ := decodeObject(r)
						ids[i], _ = obj["id"].(string)
					}
				}()
			}
			wg.Wait()
			for _, id := range ids {
				require.NotEmpty(t, id, "every call was taken")
				ex := waitExecution(t, srv, id)
				require.Equal(t, "success", ex["status"], "execution %s: %v", id, ex["result"])
			}
			r := admin.Do(t, http.MethodGet, "/v1/functions/"+fid+"/workers", nil)
			require.Equal(t, http.StatusOK, r.Status, "%s", r)
			ws, _ := r.Object(t)["workers"].([]any)
			require.Len(t, ws, tc.workers, "workers after %d concurrent calls: %v", tc.calls, ws)
		})
	}
}

// TestRouteOwnerDiesSync: qinling-api sends a warm function's sync calls
// straight to the engine owning its workers. SIGKILL that engine: every
// sync call made afterwards still ends success. One the API sends to the
// dead owner's queue before it learns of the death (the engine's lease
// lives up to [etcd] lock_ttl) comes back to the shared queue after the
// engine queue's TTL and another engine runs it: none is lost. Not
// parallel: it kills a daemon (see resilience_test.go).
func TestRouteOwnerDiesSync(t *testing.T) {
	testutil.SkipUnlessReal(t, srv, "the all-in-one has one in-process engine")
	st := srv.Stack
	require.GreaterOrEqual(t, st.Engines, 2, "needs QINLING_ENGINES >= 2 in devstack/settings")
	fid := newFunction(t, "sleeper", "sleeper.main", map[string]string{"sleeper.py": sleeperPy}, "timeout", "60")
	var id string
	for range 3 {
		id = succeeds(t, srv, fid, `{"seconds": 0}`, "slept 0")["id"].(string)
	}
	m := startedOn.FindStringSubmatch(waitStarted(t, st.Logs, []string{id})[id])
	require.NotNil(t, m, "the engine that ran %s", id)
	owner := m[1]
	runsAgainAfter(t, st, owner)
	t.Logf("SIGKILL %s, the owner of the function's worker", owner)
	require.NoError(t, st.KillDaemon(owner))
	for i := range 4 {
		succeeds(t, srv, fid, `{"seconds": 0}`, "slept 0")
		t.Logf("call %d after the kill: success", i)
	}
	require.NoError(t, st.Restart(owner), "devstack/restart.sh %s", owner)
	succeeds(t, srv, fid, `{"seconds": 0}`, "slept 0")
}
