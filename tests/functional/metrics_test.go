//go:build functional

package functional

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/testutil"
)

// TestMetrics runs executions and reads /metrics (the API's and, on the
// real stack, every engine's): the counters of this test's functions moved
// by exactly what ran, and every output passes `promtool check metrics`.
// Other tests run at the same time, so only series of this test's own
// functions are held to exact figures; shared ones must at least move.
func TestMetrics(t *testing.T) {
	t.Parallel()
	good := newFunction(t, "metrics-good", "hello.main", map[string]string{"hello.py": helloPy})
	bad := newFunction(t, "metrics-bad", "bad.main", map[string]string{"bad.py": "def main(**kwargs):\n    raise ValueError('boom')\n"})
	project := srv.ProjectID(t)

	before := srv.ScrapeAll(t, true)
	runs := []struct {
		fid, input, want string
		sync             bool
	}{
		{good, `{"name": "a"}`, "success", true},
		{good, `{"name": "b"}`, "success", true},
		{good, `{"name": "c"}`, "success", false},
		{bad, `{}`, "failed", true},
		{bad, `{}`, "failed", false},
	}
	for _, r := range runs {
		ex := execute(t, srv, r.fid, r.input, r.sync)
		if !r.sync {
			ex = waitExecution(t, srv, ex["id"].(string))
		}
		require.Equal(t, r.want, ex["status"], "%v", ex)
	}
	// A request for no function is refused before anything is recorded.
	r := call(t, srv, http.MethodPost, "/v1/executions", map[string]any{"function_id": "6d2b0a9e-0000-4000-8000-00000000beef"})
	expect(t, r, http.StatusNotFound)

	after := srv.ScrapeAll(t, true)
	delta := func(name string, labels map[string]string) float64 {
		return after.Sum(name, labels) - before.Sum(name, labels)
	}
	for _, tc := range []struct {
		name   string
		metric string
		labels map[string]string
		want   float64
	}{
		{"successes of the good function", "qinling_executions_total", map[string]string{"project_id": project, "function_id": good, "status": "success"}, 3},
		{"nothing else of the good function", "qinling_executions_total", map[string]string{"function_id": good}, 3},
		{"failures of the bad function", "qinling_executions_total", map[string]string{"project_id": project, "function_id": bad, "status": "failed"}, 2},
		{"nothing else of the bad function", "qinling_executions_total", map[string]string{"function_id": bad}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, delta(tc.metric, tc.labels))
		})
	}
	for _, tc := range []struct {
		name   string
		metric string
		labels map[string]string
		least  float64
	}{
		{"function failures", "qinling_executions_failed_total", map[string]string{"reason": "function"}, 2},
		{"refused request", "qinling_executions_rejected_total", map[string]string{"reason": "not_found"}, 1},
		{"execution requests by route template", "qinling_http_requests_total", map[string]string{"method": "POST", "route": "/v1/executions", "code": "201"}, 5},
		{"execution durations", "qinling_execution_duration_seconds_count", nil, 5},
		{"waits before a worker", "qinling_execution_wait_seconds_count", nil, 5},
		{"memory-time of the project", "qinling_execution_memory_byte_seconds_total", map[string]string{"project_id": project}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.GreaterOrEqual(t, delta(tc.metric, tc.labels), tc.least)
		})
	}
	// One worker per function on each engine that ran it (one execution
	// at a time never needs a second).
	for _, fid := range []string{good, bad} {
		cold := delta("qinling_cold_starts_total", map[string]string{"function_id": fid})
		workers := after.Sum("qinling_function_workers", map[string]string{"function_id": fid})
		require.True(t, cold >= 1 && cold <= float64(srv.Engines()), "cold starts of %s: %v", fid, cold)
		require.Equal(t, cold, workers, "workers of %s", fid)
	}
	require.Positive(t, after.Sum("qinling_pool_workers", nil), "prewarmed pool workers")
	require.Positive(t, after.Sum("process_resident_memory_bytes", nil), "the process collector")
	require.Positive(t, after.Sum("go_goroutines", nil), "the Go collector")
	for key := range after {
		require.NotContains(t, key, "/v1/functions/"+good, "raw paths are never labels")
	}
}

// TestMetricsInPrometheus: the devstack stack's Prometheus, scraping the API
// and every engine, ends up with exactly the executions that ran.
func TestMetricsInPrometheus(t *testing.T) {
	testutil.SkipUnlessReal(t, srv, "devstack's Prometheus")
	t.Parallel()
	good := newFunction(t, "prometheus-good", "hello.main", map[string]string{"hello.py": helloPy})
	bad := newFunction(t, "prometheus-bad", "bad.main", map[string]string{"bad.py": "def main(**kwargs):\n    raise ValueError('boom')\n"})
	want := map[string]float64{good: 0, bad: 0}
	for i := range 6 {
		fid, status := good, "success"
		if i%3 == 2 {
			fid, status = bad, "failed"
		}
		ex := execute(t, srv, fid, `{}`, i%2 == 0)
		ex = waitExecution(t, srv, ex["id"].(string))
		require.Equal(t, status, ex["status"], "%v", ex)
		want[fid]++
	}
	project := srv.ProjectID(t)
	for fid, n := range want {
		query := fmt.Sprintf(`sum(qinling_executions_total{project_id=%q,function_id=%q})`, project, fid)
		var got float64
		// Prometheus scrapes every PROMETHEUS_SCRAPE_INTERVAL (5 s).
		testutil.WaitFor(t, "Prometheus to have scraped "+query, time.Minute, time.Second, func() (bool, any) {
			v, ok, err := srv.Stack.PrometheusQuery(query)
			require.NoError(t, err)
			got = v
			return ok && v == n, v
		})
		require.Equal(t, n, got, query)
	}
	// Every target is up: the API and each engine.
	up, ok, err := srv.Stack.PrometheusQuery(`sum(up{job=~"qinling-api|qinling-engine"})`)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, float64(1+srv.Engines()), up)
}
