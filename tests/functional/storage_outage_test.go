//go:build functional

package functional

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/testutil"
)

// TestPackageStorageOutage stops the stack's Swift proxy (devstack/stop.sh,
// by its recorded PID) on a stack whose packages are in Swift or in its S3
// API, and starts it again (devstack/restart.sh swift-proxy). While it is
// down an upload and a version (a server-side copy) answer 503 naming the
// package storage, and an execution that needs a package no engine has
// ends `error` with the same reason, sync or async, at once rather than
// hanging. Once it is back, the same API and engine processes (no restart)
// run that function and take uploads again. Like the tests of
// resilience_test.go it is not parallel, so nothing else feels the outage,
// and the proxy runs again when it ends, failed or not.
func TestPackageStorageOutage(t *testing.T) {
	testutil.SkipUnlessReal(t, srv, "needs the stack's Swift")
	st := srv.Stack
	storage := testutil.SkipUnlessObjectStorage(t, st.Env)
	daemons := []string{"qinling-api"}
	for i := 1; i <= st.Engines; i++ {
		daemons = append(daemons, fmt.Sprintf("engine-%d", i))
	}
	pids := func() map[string]int {
		out := map[string]int{}
		for _, d := range daemons {
			pid, err := st.DaemonPID(d)
			require.NoError(t, err)
			out[d] = pid
		}
		return out
	}
	before := pids()
	rtID := pythonRuntime(t)
	// Made before the outage and never run: no engine has its package.
	cold := newFunction(t, "outage-cold", "hello.main", map[string]string{"hello.py": helloPy})
	unavailable := fmt.Sprintf("Package storage unavailable (%s); try again later.", storage)

	runsAgainAfter(t, st, "swift-proxy")
	require.NoError(t, st.Stop("swift-proxy"))
	t.Logf("swift-proxy stopped; packages in %s", storage)

	t.Run("upload answers 503", func(t *testing.T) {
		r := call(t, srv, http.MethodPost, "/v1/functions",
			packageForm(rtID, "outage-upload", "hello.main", testutil.Zip(t, map[string]string{"hello.py": helloPy})))
		if r.Status == http.StatusCreated {
			rememberFunction(srv, r.Object(t)["id"].(string))
		}
		expect(t, r, http.StatusServiceUnavailable)
		assert.Equal(t, unavailable, r.Fault(t))
	})
	t.Run("version answers 503", func(t *testing.T) {
		r := call(t, srv, http.MethodPost, "/v1/functions/"+cold+"/versions", map[string]any{})
		expect(t, r, http.StatusServiceUnavailable)
		assert.Equal(t, unavailable, r.Fault(t))
	})
	for _, sync := range []bool{true, false} {
		t.Run(fmt.Sprintf("execution sync=%v ends error", sync), func(t *testing.T) {
			ex := execute(t, srv, cold, nil, sync)
			if !sync {
				ex = waitExecution(t, srv, ex["id"].(string))
			}
			require.Equal(t, "error", ex["status"], "execution %v", ex)
			out, _ := result(t, ex)
			assert.Contains(t, out, unavailable, "execution %v", ex)
			t.Logf("execution %s: %s: %v", ex["id"], ex["status"], out)
		})
	}

	require.NoError(t, st.Restart("swift-proxy"))
	t.Log("swift-proxy started again")
	succeeds(t, srv, cold, nil, "Hello, World")
	fresh := newFunction(t, "outage-after", "back.main", map[string]string{"back.py": "def main(**kwargs):\n    return 'back'\n"})
	succeeds(t, srv, fresh, nil, "back")
	r := call(t, srv, http.MethodPost, "/v1/functions/"+cold+"/versions", map[string]any{})
	expect(t, r, http.StatusCreated)
	assert.Equal(t, before, pids(), "qinling-api and the engines keep running through the outage")
}
