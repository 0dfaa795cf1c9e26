//go:build functional

package functional

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/testutil"
)

// TestJobsFireOnceWithTwoAPIs runs a second qinling-api process beside the
// stack's, on the same MySQL database: both run the job handler every 3 s,
// and every run of every job must still start exactly one execution. It is
// parallel: most of it waits for the next whole minute, and the second API
// changes nothing that the tests beside it read.
func TestJobsFireOnceWithTwoAPIs(t *testing.T) {
	if !srv.Real() {
		t.Skip("needs the devstack stack (QINLING_REAL_STACK=1): two API processes share its MySQL database; the all-in-one's SQLite and embedded etcd belong to one process")
	}
	t.Parallel()
	second := startSecondAPI(t, srv.Stack)
	fid := helloFunction(t)

	const jobs = 4
	var ids []string
	for i := 0; i < jobs; i++ {
		// Alternate the API that creates the job: either may fire any job.
		api := srv
		if i%2 == 1 {
			api = second
		}
		r := call(t, api, "POST", "/v1/jobs", map[string]any{
			"name": fmt.Sprintf("twice-%d", i), "function_id": fid, "function_version": 0,
			"pattern": "* * * * *", "count": 1, "function_input": `{"name": "job"}`,
			"function_alias": nil, "first_execution_time": nil,
		})
		expect(t, r, http.StatusCreated)
		ids = append(ids, r.Object(t)["id"].(string))
	}
	list := func(id string) []any {
		r := call(t, srv, "GET", "/v1/executions?description=has:"+id, nil)
		expect(t, r, http.StatusOK)
		return r.Object(t)["executions"].([]any)
	}
	for _, id := range ids {
		// The next whole minute, then a few handler periods.
		job := waitFor(t, srv, "/v1/jobs/"+id, 2*time.Minute, func(j map[string]any) bool { return j["status"] == "done" })
		require.EqualValues(t, 0, job["count"])
		// The run is claimed (count 0, done) just before its execution row
		// is written.
		require.Eventually(t, func() bool { return len(list(id)) > 0 }, 30*time.Second, 200*time.Millisecond,
			"job %s is done but no execution appeared", id)
	}
	// Two more handler periods, in which a duplicate run would show up.
	time.Sleep(6 * time.Second)
	for _, id := range ids {
		execs := list(id)
		require.Len(t, execs, 1, "job %s fired %d times with two job handlers", id, len(execs))
		ex := waitExecution(t, srv, execs[0].(map[string]any)["id"].(string))
		require.Equal(t, "success", ex["status"], "%v", ex)
	}
}

// startSecondAPI starts another qinling-api with the stack's configuration,
// its own port and state directory, and returns a target for it.
func startSecondAPI(t *testing.T, st *testutil.Stack) *testutil.Target {
	t.Helper()
	dir := t.TempDir()
	port := testutil.FreePort(t)
	extra := filepath.Join(dir, "second-api.conf")
	require.NoError(t, os.WriteFile(extra, []byte(fmt.Sprintf("[DEFAULT]\nstate_path = %s\n\n[api]\nport = %d\n", dir, port)), 0o600))
	logf, err := os.Create(filepath.Join(dir, "qinling-api.log"))
	require.NoError(t, err)
	cmd := exec.Command(filepath.Join(st.Dir, "bin", "qinling-api"),
		"--config-file", filepath.Join(st.Dir, "etc", "qinling.conf"), "--config-file", extra)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			lines := strings.Split(string(b), "\n")
			t.Logf("second qinling-api log (last lines):\n%s", strings.Join(lines[max(0, len(lines)-60):], "\n"))
		}
	})
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	require.Eventually(t, func() bool {
		resp, err := http.Get(url + "/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 60*time.Second, 100*time.Millisecond, "second qinling-api did not answer on %s", url)
	return srv.At(url)
}
