//go:build functional

package functional

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/testutil"
)

// TestStateSurvivesRestart: runtimes, functions, packages and executions are
// durable; after a restart the runtime's pool comes back and functions run.
func TestStateSurvivesRestart(t *testing.T) {
	testutil.SkipIfReal(t, srv, "it restarts a private all-in-one server (the real stack's restarts are TestEngineCrash and TestBrokerRestart)")
	t.Parallel()
	aio := testutil.StartAllInOne(t)
	s := testutil.ServerTarget(aio)

	rt := createRuntime(t, s, "python3", "python3")
	rtID := rt["id"].(string)
	rt = waitRuntime(t, s, rtID)
	require.Equal(t, "available", rt["status"], "%v", rt)

	pkg := testutil.Zip(t, map[string]string{"hello.py": helloPy})
	fn := createFunction(t, s, packageForm(rtID, "durable", "hello.main", pkg))
	fid := fn["id"].(string)
	before := succeeds(t, s, fid, `{"name": "before"}`, "Hello, before")

	require.NoError(t, aio.Restart())

	r := call(t, s, http.MethodGet, "/v1/functions/"+fid, nil)
	expect(t, r, http.StatusOK)
	got := r.Object(t)
	assert.Equal(t, "durable", got["name"])
	assert.Equal(t, testutil.MD5(pkg), testutil.ObjectOf(t, got["code"])["md5sum"])

	r = call(t, s, http.MethodGet, "/v1/executions/"+before["id"].(string), nil)
	expect(t, r, http.StatusOK)
	assert.Equal(t, "success", r.Object(t)["status"])

	waitFor(t, s, "/v1/runtimes/"+rtID, runtimeReady, func(rt map[string]any) bool {
		return rt["status"] == "available"
	})
	succeeds(t, s, fid, `{"name": "after"}`, "Hello, after")

	r = call(t, s, http.MethodGet, "/v1/functions/"+fid+"?download=true", nil, "Content-Type", "")
	expect(t, r, http.StatusOK)
	assert.Equal(t, testutil.MD5(pkg), testutil.MD5(r.Body), "package after restart")
}
