//go:build functional

package functional

import (
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// burnPy spends some CPU, then fails when asked to.
const burnPy = "def main(fail=False, **kwargs):\n" +
	"    n = 0\n" +
	"    for i in range(300000):\n" +
	"        n += i * i\n" +
	"    if fail:\n" +
	"        raise ValueError('asked to fail')\n" +
	"    return n\n"

// TestUsage: what executions used is in their result's timing and in
// GET /v1/usage, which keeps counting them after they are deleted
// (docs/operations.md, "Usage").
func TestUsage(t *testing.T) {
	t.Parallel()
	from := time.Now().UTC().Add(-time.Minute)
	fid := newFunction(t, "usage", "burn.main", map[string]string{"burn.py": burnPy})
	ok := execute(t, srv, fid, `{"fail": false}`, true)
	require.Equal(t, "success", ok["status"], "%v", ok)
	bad := execute(t, srv, fid, `{"fail": true}`, true)
	require.Equal(t, "failed", bad["status"], "%v", bad)

	var res struct {
		Duration float64 `json:"duration"`
		Timing   struct {
			CPUMS      *float64 `json:"cpu_ms"`
			MemorySize float64  `json:"memory_size"`
			GBSeconds  float64  `json:"gb_seconds"`
			ColdStart  bool     `json:"cold_start"`
		} `json:"timing"`
	}
	require.NoError(t, json.Unmarshal([]byte(ok["result"].(string)), &res))
	assert.True(t, res.Timing.ColdStart, "the function's first execution waited for a worker")
	assert.Positive(t, res.Timing.MemorySize)
	assert.InDelta(t, res.Timing.MemorySize/(1<<30)*res.Duration, res.Timing.GBSeconds, 1e-6, "GB-seconds are memory_size × duration")
	if os.Geteuid() == 0 && os.Getenv("QINLING_ORCHESTRATOR") != "kubernetes" {
		require.NotNil(t, res.Timing.CPUMS, "the worker's cgroup counts its CPU time: %s", ok["result"])
		assert.Positive(t, *res.Timing.CPUMS)
	}

	r := call(t, srv, http.MethodDelete, "/v1/executions/"+ok["id"].(string), nil)
	expect(t, r, http.StatusNoContent)
	q := url.Values{"start": {from.Format(time.RFC3339)}, "end": {time.Now().UTC().Add(time.Hour).Format(time.RFC3339)}}
	r = call(t, srv, http.MethodGet, "/v1/usage?"+q.Encode(), nil)
	expect(t, r, http.StatusOK)
	var body struct {
		Usages []struct {
			ProjectID string `json:"project_id"`
			Functions []struct {
				FunctionID string  `json:"function_id"`
				Executions int     `json:"executions"`
				Succeeded  int     `json:"succeeded"`
				Failed     int     `json:"failed"`
				Duration   float64 `json:"duration"`
				GBSeconds  float64 `json:"gb_seconds"`
			} `json:"function_usages"`
		} `json:"usages"`
	}
	r.Decode(t, &body)
	require.Len(t, body.Usages, 1, "%s", r)
	require.Equal(t, srv.ProjectID(t), body.Usages[0].ProjectID)
	var found bool
	for _, f := range body.Usages[0].Functions {
		if f.FunctionID != fid {
			continue
		}
		found = true
		assert.Equal(t, 2, f.Executions, "a deleted execution still counts")
		assert.Equal(t, 1, f.Succeeded)
		assert.Equal(t, 1, f.Failed)
		assert.GreaterOrEqual(t, f.Duration, res.Duration)
		assert.GreaterOrEqual(t, f.GBSeconds, res.Timing.GBSeconds)
	}
	require.True(t, found, "the function's usage is listed: %s", r)

	r = call(t, srv, http.MethodGet, "/v1/usage?start=last+week", nil)
	expect(t, r, http.StatusBadRequest)
	assert.Contains(t, r.Fault(t), "Invalid start time")
}
