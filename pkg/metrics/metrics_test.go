package metrics_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/metrics"
)

func scrape(t *testing.T, h http.Handler, auth string) (int, string) {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	if auth != "" {
		r.Header.Set("Authorization", auth)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	b, err := io.ReadAll(w.Result().Body)
	require.NoError(t, err)
	return w.Code, string(b)
}

func TestExecutionFinished(t *testing.T) {
	m := metrics.New()
	m.ExecutionFinished(metrics.Finished{ProjectID: "p1", FunctionID: "f1", Status: "success",
		Duration: 2 * time.Second, Wait: 10 * time.Millisecond, MemorySize: 1 << 30})
	m.ExecutionFinished(metrics.Finished{ProjectID: "p1", FunctionID: "f1", Status: "failed",
		Reason: metrics.ReasonFunction, Duration: 500 * time.Millisecond, MemorySize: 1 << 29})
	m.ExecutionFinished(metrics.Finished{ProjectID: "p2", FunctionID: "f2", Status: "error", Reason: "unavailable"})

	_, out := scrape(t, m.Handler(""), "")
	for _, want := range []string{
		`qinling_executions_total{function_id="f1",project_id="p1",status="success"} 1`,
		`qinling_executions_total{function_id="f1",project_id="p1",status="failed"} 1`,
		`qinling_executions_total{function_id="f2",project_id="p2",status="error"} 1`,
		`qinling_executions_failed_total{reason="function"} 1`,
		`qinling_executions_failed_total{reason="unavailable"} 1`,
		// 1 GiB x 2 s + 0.5 GiB x 0.5 s = 2.25 GiB-s
		`qinling_execution_memory_byte_seconds_total{project_id="p1"} 2.415919104e+09`,
		`qinling_execution_duration_seconds_count{status="success"} 1`,
		`qinling_execution_duration_seconds_sum{status="success"} 2`,
		// The execution that never reached a worker has no wait.
		`qinling_execution_wait_seconds_count 1`,
	} {
		require.Contains(t, out, want+"\n")
	}
	// An execution that used no time uses no memory-time either.
	require.NotContains(t, out, `qinling_execution_memory_byte_seconds_total{project_id="p2"}`)
}

func TestCountersAndGauges(t *testing.T) {
	m := metrics.New()
	done := m.ExecutionRunning()
	m.ExecutionRunning()
	m.ExecutionRejected("conflict")
	m.ColdStart("p1", "f1", 2, 300*time.Millisecond)
	m.ColdStart("p1", "f1", 0, time.Second) // nothing started: nothing counted
	_, out := scrape(t, m.Handler(""), "")
	require.Contains(t, out, "qinling_executions_in_flight 2\n")
	done()
	_, out = scrape(t, m.Handler(""), "")
	for _, want := range []string{
		"qinling_executions_in_flight 1",
		`qinling_executions_rejected_total{reason="conflict"} 1`,
		`qinling_cold_starts_total{function_id="f1",project_id="p1"} 2`,
		"qinling_cold_start_seconds_count 1",
		"qinling_cold_start_seconds_sum 0.3",
	} {
		require.Contains(t, out, want+"\n")
	}
}

func TestRoute(t *testing.T) {
	for _, tc := range []struct{ name, pattern, want string }{
		{"method and path", "GET /v1/functions/{id}", "/v1/functions/{id}"},
		{"path only", "/v1/executions", "/v1/executions"},
		{"exact root", "GET /{$}", "/{$}"},
		{"catch-all", "/", metrics.RouteUnmatched},
		{"no pattern", "", metrics.RouteUnmatched},
		{"host pattern", "GET example.com/v1", "/v1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, metrics.Route(tc.pattern))
		})
	}
}

func TestInstrumentHTTP(t *testing.T) {
	m := metrics.New()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/functions/{id}", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotFound)
	})
	mux.HandleFunc("GET /v1/panics", func(http.ResponseWriter, *http.Request) { panic("boom") })
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("x")) })
	h := m.InstrumentHTTP(mux)
	for _, req := range []struct{ method, path string }{
		{"GET", "/v1/functions/a"}, {"GET", "/v1/functions/b"}, {"GET", "/no/such/path"}, {"BREW", "/v1/functions/a"},
	} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(req.method, req.path, nil))
	}
	require.Panics(t, func() { h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/v1/panics", nil)) })

	_, out := scrape(t, m.Handler(""), "")
	for _, want := range []string{
		`qinling_http_requests_total{code="404",method="GET",route="/v1/functions/{id}"} 2`,
		`qinling_http_requests_total{code="200",method="GET",route="unmatched"} 1`,
		`qinling_http_requests_total{code="200",method="other",route="unmatched"} 1`,
		`qinling_http_requests_total{code="500",method="GET",route="/v1/panics"} 1`,
		`qinling_http_request_duration_seconds_count{method="GET",route="/v1/functions/{id}"} 2`,
	} {
		require.Contains(t, out, want+"\n")
	}
	require.NotContains(t, out, "/no/such/path")
	require.NotContains(t, out, "/v1/functions/a")
}

// TestWatchCollectors: the figures read at scrape time (workers from etcd
// and the pool, usage from the database) are served as read, and a failed
// read leaves out only its own metrics.
func TestWatchCollectors(t *testing.T) {
	workers := func(w metrics.Workers, err error) func(*metrics.Metrics) {
		return func(m *metrics.Metrics) {
			m.WatchWorkers(func(context.Context) (metrics.Workers, error) { return w, err })
		}
	}
	usage := func(u []metrics.UsageTotal, err error) func(*metrics.Metrics) {
		return func(m *metrics.Metrics) {
			m.WatchUsage(func(context.Context) ([]metrics.UsageTotal, error) { return u, err })
		}
	}
	total := metrics.UsageTotal{ProjectID: "p1", FunctionID: "f1", Succeeded: 3, Failed: 2,
		Duration: 2500 * time.Millisecond, CPU: 700 * time.Millisecond, MemoryByteSeconds: 1 << 30}
	for _, tc := range []struct {
		name     string
		watch    func(*metrics.Metrics)
		want     []string
		wantNone string
	}{
		{
			name: "workers snapshot",
			watch: workers(metrics.Workers{
				PerFunction: map[string]int{"f1": 2},
				Pools:       map[string]map[string]int{"r1": {metrics.PoolAvailable: 3, metrics.PoolUnavailable: 2}},
			}, nil),
			want: []string{
				`qinling_function_workers{function_id="f1"} 2`,
				`qinling_pool_workers{runtime_id="r1",state="available"} 3`,
				`qinling_pool_workers{runtime_id="r1",state="unavailable"} 2`,
			},
		},
		{
			name:     "failed workers read leaves the other metrics",
			watch:    workers(metrics.Workers{}, errors.New("etcd is down")),
			want:     []string{"qinling_executions_in_flight 0"},
			wantNone: "qinling_function_workers",
		},
		{
			name:  "usage totals",
			watch: usage([]metrics.UsageTotal{total}, nil),
			want: []string{
				`qinling_usage_executions_total{function_id="f1",outcome="succeeded",project_id="p1"} 3`,
				`qinling_usage_executions_total{function_id="f1",outcome="failed",project_id="p1"} 2`,
				`qinling_usage_duration_seconds_total{function_id="f1",project_id="p1"} 2.5`,
				`qinling_usage_cpu_seconds_total{function_id="f1",project_id="p1"} 0.7`,
				`qinling_usage_memory_byte_seconds_total{function_id="f1",project_id="p1"} 1.073741824e+09`,
			},
		},
		{
			name:     "nothing used yet",
			watch:    usage(nil, nil),
			want:     []string{"qinling_executions_in_flight 0"},
			wantNone: "qinling_usage_executions_total",
		},
		{
			name:     "failed usage read leaves the other metrics",
			watch:    usage(nil, errors.New("database is down")),
			want:     []string{"qinling_executions_in_flight 0"},
			wantNone: "qinling_usage_executions_total",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := metrics.New()
			tc.watch(m)
			_, out := scrape(t, m.Handler(""), "")
			for _, want := range tc.want {
				require.Contains(t, out, want+"\n")
			}
			if tc.wantNone != "" {
				require.NotContains(t, out, tc.wantNone+"{")
			}
		})
	}
}

// TestWatchUsageReadsOncePerScrapeBurst: scrapes close together share one
// read of the database; a later one reads again.
func TestWatchUsageReadsOncePerScrapeBurst(t *testing.T) {
	m := metrics.New()
	reads := 0
	m.WatchUsage(func(context.Context) ([]metrics.UsageTotal, error) {
		reads++
		return []metrics.UsageTotal{{ProjectID: "p", FunctionID: "f", Succeeded: int64(reads)}}, nil
	})
	for range 3 {
		_, out := scrape(t, m.Handler(""), "")
		require.Contains(t, out, `qinling_usage_executions_total{function_id="f",outcome="succeeded",project_id="p"} 1`+"\n")
	}
	require.Equal(t, 1, reads)
	require.Eventually(t, func() bool {
		_, out := scrape(t, m.Handler(""), "")
		return strings.Contains(out, `outcome="succeeded",project_id="p"} 2`+"\n")
	}, time.Minute, 500*time.Millisecond, "a scrape after the cache's few seconds reads again")
}

func TestHandlerToken(t *testing.T) {
	m := metrics.New()
	for _, tc := range []struct {
		name, token, auth string
		want              int
	}{
		{"open", "", "", http.StatusOK},
		{"token given", "s3cret", "Bearer s3cret", http.StatusOK},
		{"token missing", "s3cret", "", http.StatusUnauthorized},
		{"token wrong", "s3cret", "Bearer other", http.StatusUnauthorized},
		{"token not bearer", "s3cret", "s3cret", http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := scrape(t, m.Handler(tc.token), tc.auth)
			require.Equal(t, tc.want, code)
			if code == http.StatusOK {
				require.Contains(t, body, "go_goroutines ")
				require.Contains(t, body, "process_cpu_seconds_total ")
			}
		})
	}
}

// TestLint holds every metric to Prometheus's naming rules (the checks of
// promtool check metrics), with every collector holding a series.
func TestLint(t *testing.T) {
	m := metrics.New()
	m.ExecutionFinished(metrics.Finished{ProjectID: "p", FunctionID: "f", Status: "success", Duration: time.Second, Wait: time.Millisecond, MemorySize: 1})
	m.ExecutionFinished(metrics.Finished{ProjectID: "p", FunctionID: "f", Status: "failed", Reason: metrics.ReasonFunction})
	m.ExecutionRunning()
	m.ExecutionRejected("not_found")
	m.ColdStart("p", "f", 1, time.Millisecond)
	m.WatchWorkers(func(context.Context) (metrics.Workers, error) {
		return metrics.Workers{PerFunction: map[string]int{"f": 1}, Pools: map[string]map[string]int{"r": {metrics.PoolAvailable: 1}}}, nil
	})
	m.WatchUsage(func(context.Context) ([]metrics.UsageTotal, error) {
		return []metrics.UsageTotal{{ProjectID: "p", FunctionID: "f", Succeeded: 1, Duration: time.Second, MemoryByteSeconds: 1}}, nil
	})
	m.InstrumentHTTP(http.NotFoundHandler()).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	problems, err := testutil.GatherAndLint(m.Registry())
	require.NoError(t, err)
	require.Empty(t, problems)
	n, err := testutil.GatherAndCount(m.Registry())
	require.NoError(t, err)
	require.Positive(t, n)
	_, out := scrape(t, m.Handler(""), "")
	for _, name := range []string{"executions_total", "execution_duration_seconds", "execution_wait_seconds",
		"cold_start_seconds", "cold_starts_total", "executions_in_flight", "executions_rejected_total",
		"executions_failed_total", "execution_memory_byte_seconds_total", "http_requests_total",
		"http_request_duration_seconds", "function_workers", "pool_workers",
		"usage_executions_total", "usage_duration_seconds_total", "usage_cpu_seconds_total", "usage_memory_byte_seconds_total"} {
		require.True(t, strings.Contains(out, "# TYPE qinling_"+name+" "), name)
	}
}
