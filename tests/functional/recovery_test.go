//go:build functional

package functional

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/coord/etcd"
	"github.com/qinling-go/qinling/pkg/testutil"
)

// The reasons an execution states when its engine could not finish it
// (pkg/engine/recovery.go, docs/reliability.md).
const (
	engineStoppedMsg = "Function execution failed: the engine stopped during the execution."
	noCallerMsg      = "Function execution failed: the service stopped before the execution ended, and its caller no longer waits for it."
)

// recoveryServer starts a private all-in-one with a python runtime and a
// sleeper function that has already run once (its worker is up).
func recoveryServer(t *testing.T, opts ...testutil.Option) (*testutil.Server, *testutil.Target, string, string) {
	t.Helper()
	aio := testutil.StartAllInOne(t, opts...)
	s := testutil.ServerTarget(aio)
	rtID := createRuntime(t, s, "python3", "python3")["id"].(string)
	require.Equal(t, "available", waitRuntime(t, s, rtID)["status"])
	fid := createFunction(t, s, packageForm(rtID, "sleeper", "sleeper.main",
		testutil.Zip(t, map[string]string{"sleeper.py": sleeperPy}), "timeout", "120"))["id"].(string)
	succeeds(t, s, fid, `{"seconds": 0}`, "slept 0")
	return aio, s, rtID, fid
}

// waitStarted waits until logs (a server's log) say each execution was
// handed to a worker: from then on its engine's stop is its end. It returns
// the log line of each.
func waitStarted(t *testing.T, logs func() string, ids []string) map[string]string {
	t.Helper()
	deadline := time.Now().Add(executionDone)
	for {
		lines := map[string]string{}
		for _, line := range strings.Split(logs(), "\n") {
			if !strings.Contains(line, "execution started") {
				continue
			}
			for _, id := range ids {
				if strings.Contains(line, id) {
					lines[id] = line
				}
			}
		}
		if len(lines) >= len(ids) {
			return lines
		}
		require.True(t, time.Now().Before(deadline), "%d of %d executions started after %s", len(lines), len(ids), executionDone)
		time.Sleep(100 * time.Millisecond)
	}
}

// requireOutput checks an execution ended with status and output.
func requireOutput(t *testing.T, ex map[string]any, status string, output any) {
	t.Helper()
	require.Equal(t, status, ex["status"], "execution %v", ex)
	out, _ := result(t, ex)
	require.Equal(t, output, out, "execution %v", ex)
}

// TestCrashRecovery: SIGKILL the all-in-one while asynchronous executions
// run (started on a worker) and wait (not started: their function's
// scaling lock is held), and while a synchronous one waits; after a
// restart none stays running: the started ones end in error saying the
// engine stopped, the waiting asynchronous ones run, and the synchronous
// one, whose caller is gone, ends in error saying so.
func TestCrashRecovery(t *testing.T) {
	testutil.SkipIfReal(t, srv, "it kills a private all-in-one server (the real stack's case is TestEngineCrashSettled)")
	t.Parallel()
	aio, s, rtID, sleeper := recoveryServer(t)

	var running []string
	for range 3 {
		running = append(running, execute(t, s, sleeper, `{"seconds": 100}`, false)["id"].(string))
	}
	waitStarted(t, aio.Log, running)

	// A function that never ran needs a worker, and adding one takes its
	// lock in etcd, which this test holds: its executions cannot start.
	waiting := createFunction(t, s, packageForm(rtID, "waiting", "sleeper.main",
		testutil.Zip(t, map[string]string{"sleeper.py": sleeperPy}), "timeout", "60"))["id"].(string)
	lockHolder, err := etcd.New(context.Background(), etcd.Config{
		Endpoints:   []string{"http://127.0.0.1:" + aio.Option("etcd", "port")},
		DialTimeout: 10 * time.Second, LockTTL: 30 * time.Second,
	})
	require.NoError(t, err)
	defer lockHolder.Close()
	_, err = lockHolder.Lock(context.Background(), fmt.Sprintf("function_worker_%s_0", waiting))
	require.NoError(t, err)
	var queued []string
	for i := range 3 {
		queued = append(queued, execute(t, s, waiting, fmt.Sprintf(`{"seconds": %d}`, i), false)["id"].(string))
	}
	syncSent := make(chan struct{})
	go func() {
		defer close(syncSent)
		// Its answer never comes: the server dies under it.
		_, _ = s.TryDo(http.MethodPost, "/v1/executions", map[string]any{
			"function_id": waiting, "function_version": 0, "sync": true, "input": `{"seconds": 0}`,
		})
	}()
	waitFor(t, s, "/v1/executions?function_id="+waiting, executionDone, func(l map[string]any) bool {
		return len(l["executions"].([]any)) == len(queued)+1
	})

	aio.Kill()
	<-syncSent
	require.NoError(t, aio.Restart())
	// The lock goes with this client's lease, which outlived the crash in
	// the embedded etcd's data.
	require.NoError(t, lockHolder.Close())

	for _, id := range running {
		requireOutput(t, waitExecution(t, s, id), "error", engineStoppedMsg)
	}
	for i, id := range queued {
		requireOutput(t, waitExecution(t, s, id), "success", fmt.Sprintf("slept %d", i))
	}
	r := call(t, s, http.MethodGet, "/v1/executions?function_id="+waiting+"&sync=true", nil)
	expect(t, r, http.StatusOK)
	var list struct{ Executions []map[string]any }
	require.NoError(t, json.Unmarshal(r.Body, &list))
	require.Len(t, list.Executions, 1, "the synchronous execution was recorded before the crash")
	requireOutput(t, waitExecution(t, s, list.Executions[0]["id"].(string)), "error", noCallerMsg)

	// The service runs as before, and nothing ran twice into a new state.
	succeeds(t, s, sleeper, `{"seconds": 0}`, "slept 0")
	for _, id := range running {
		r := call(t, s, http.MethodGet, "/v1/executions/"+id, nil)
		expect(t, r, http.StatusOK)
		assert.Equal(t, "error", r.Object(t)["status"])
	}
}

// TestShutdownDrain: SIGTERM with executions running; the one that ends
// within [engine] shutdown_grace_period ends normally, the other ends in
// error saying the engine stopped, and the process exits in time.
func TestShutdownDrain(t *testing.T) {
	testutil.SkipIfReal(t, srv, "it stops a private all-in-one server")
	t.Parallel()
	aio, s, _, sleeper := recoveryServer(t, testutil.WithConfig("engine", "shutdown_grace_period", "8s"))

	short := execute(t, s, sleeper, `{"seconds": 1}`, false)["id"].(string)
	long := execute(t, s, sleeper, `{"seconds": 100}`, false)["id"].(string)
	waitStarted(t, aio.Log, []string{short, long})

	require.NoError(t, aio.Stop(), "SIGTERM: a clean exit within the grace period")
	log := aio.Log()
	assert.Contains(t, log, "engine stopping: no more requests taken")
	assert.Contains(t, log, "ending executions still running after the grace period")

	require.NoError(t, aio.Restart())
	requireOutput(t, waitExecution(t, s, short), "success", "slept 1")
	requireOutput(t, waitExecution(t, s, long), "error", engineStoppedMsg)
}
