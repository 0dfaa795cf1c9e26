//go:build functional

package functional

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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
