//go:build functional

package functional

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/testutil"
)

// TestRuntimeErrorKeepsWholeReason: a runtime whose image cannot run ends in
// error with the whole reason as its description — the image and every
// image that can run, which upstream's 255-character column used to cut.
func TestRuntimeErrorKeepsWholeReason(t *testing.T) {
	t.Parallel()
	image := "registry.example.com/" + strings.Repeat("team/", 40) + "busybox:1.36"
	rt := createRuntime(t, admin, image, "long-busybox")
	rt = waitRuntime(t, admin, rt["id"].(string))
	require.Equal(t, "error", rt["status"], "%v", rt)
	reason, _ := rt["description"].(string)
	assert.Greater(t, len(reason), 255, "the reason is longer than upstream's column")
	for _, want := range []string{image, "python3-runtime", "openstackqinling/python3-runtime:0.0.2", "openstackqinling/nodejs-runtime"} {
		assert.Contains(t, reason, want, "the runtime's reason must keep %q", want)
	}
}

// TestLogOfRunningExecution: `openstack function execution log show` on a
// running execution prints the log body as it is; it says the execution is
// running rather than printing an empty line.
func TestLogOfRunningExecution(t *testing.T) {
	t.Parallel()
	// Far longer than the two requests below take.
	fid := newFunction(t, "sleeper", "sleeper.main",
		map[string]string{"sleeper.py": "import time\n\ndef main(**kwargs):\n    time.sleep(8)\n    return 'awake'\n"}, "timeout", "60")
	ex := execute(t, srv, fid, nil, false)
	id := ex["id"].(string)
	r := call(t, srv, http.MethodGet, "/v1/executions/"+id+"/log", nil, "Accept", "text/plain")
	expect(t, r, http.StatusOK)
	assert.True(t, strings.HasPrefix(r.Header.Get("Content-Type"), "text/plain"), "%s", r)
	assert.Contains(t, string(r.Body), "Execution "+id+" is still running")
	ex = waitExecution(t, srv, id)
	require.Equal(t, "success", ex["status"], "%v", ex)
	r = call(t, srv, http.MethodGet, "/v1/executions/"+id+"/log", nil, "Accept", "text/plain")
	assert.NotContains(t, string(r.Body), "still running", "a finished execution's log is only its log")
}

// TestRefillRacingDeleteIsNoWarning: a runtime deleted while its pool
// refills stops the worker being started, which then exits before it was
// ready. That is the delete working, not something for the operator to look
// into: no warning. Running a function takes the pool's only free worker
// and starts the refill; the function and its runtime are deleted right
// after, while the refill's worker is still starting (a sandboxed
// interpreter takes far longer to start than two requests take).
func TestRefillRacingDeleteIsNoWarning(t *testing.T) {
	testutil.SkipIfReal(t, srv, "reads the all-in-one's debug log")
	t.Parallel()
	s := testutil.StartAllInOne(t, testutil.WithConfig("DEFAULT", "debug", "true"),
		testutil.WithConfig("local_orchestrator", "pool_size", "1"))
	tgt := testutil.ServerTarget(s)
	pkg := testutil.Zip(t, map[string]string{"hello.py": helloPy})
	for i := range 3 {
		rt := compatRuntime(t, tgt, "python3", fmt.Sprintf("refill-race-%d", i))
		fn := createFunction(t, tgt, packageForm(rt, "refill-race", "hello.main", pkg))
		ex := execute(t, tgt, fn["id"].(string), nil, true)
		require.Equal(t, "success", ex["status"], "%v", ex)
		expect(t, call(t, tgt, http.MethodDelete, "/v1/functions/"+fn["id"].(string), nil), http.StatusNoContent)
		expect(t, call(t, tgt.As(testutil.Admin), http.MethodDelete, "/v1/runtimes/"+rt, nil), http.StatusNoContent)
	}
	// The last refill ends once its worker is reaped: wait for its line.
	const raced = "pool refill stopped: the pool was deleted"
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(tgt.Logs(), raced) && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
	}
	logs := tgt.Logs()
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, "refill") {
			assert.NotContains(t, line, "level=WARN", "a refill racing a delete is not for the operator")
		}
	}
	if !strings.Contains(logs, raced) {
		t.Skip("every refill had ended before its runtime was deleted: no race to check")
	}
}
