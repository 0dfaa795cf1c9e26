package engine_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/orchestrator"
	"github.com/qinling-go/qinling/orchestrator/fake"
	"github.com/qinling-go/qinling/pkg/db"
	"github.com/qinling-go/qinling/pkg/engine"
	"github.com/qinling-go/qinling/pkg/metrics"
	"github.com/qinling-go/qinling/pkg/testutil"
)

// gather reads a registry as a scrape would.
func gather(t *testing.T, m *metrics.Metrics) testutil.Series {
	t.Helper()
	fams, err := m.Registry().Gather()
	require.NoError(t, err)
	var buf bytes.Buffer
	for _, f := range fams {
		_, err := expfmt.MetricFamilyToText(&buf, f)
		require.NoError(t, err)
	}
	return testutil.ParseMetrics(t, buf.Bytes())
}

// TestEngine_Metrics: every execution the engine finishes is counted once,
// with its status and reason, and its worker's cold start.
func TestEngine_Metrics(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name       string
		entry      string
		setup      func(h *harness)
		wantStatus map[string]float64 // of the three executions
		wantReason map[string]float64
		coldStarts float64
		workers    float64
	}{
		{name: "success", entry: "hello.main", wantStatus: map[string]float64{db.StatusSuccess: 3}, coldStarts: 1, workers: 1},
		{
			name: "function failure", entry: "missing.main", coldStarts: 1, workers: 1,
			wantStatus: map[string]float64{db.StatusFailed: 3}, wantReason: map[string]float64{metrics.ReasonFunction: 3},
		},
		{
			// The first run loses its worker; the next ones get a new one.
			name: "worker lost", entry: "hello.main", coldStarts: 2, workers: 1,
			setup:      func(h *harness) { h.orch.FailRuns(fmt.Errorf("reset: %w", orchestrator.ErrWorkerLost)) },
			wantStatus: map[string]float64{db.StatusFailed: 1, db.StatusSuccess: 2}, wantReason: map[string]float64{metrics.ReasonWorkerLost: 1},
		},
		{
			name: "no capacity", entry: "hello.main",
			setup:      func(h *harness) { h.orch.SetErrors(fake.Errors{ScaleUpErr: orchestrator.ErrNoCapacity}) },
			wantStatus: map[string]float64{db.StatusError: 3}, wantReason: map[string]float64{"internal": 3},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := metrics.New()
			h := newHarness(t, engine.Options{Name: "e1", Metrics: m})
			m.WatchWorkers(h.eng.Workers)
			h.orch.Handle("hello.main", hello)
			f := h.function(t, tc.entry)
			if tc.setup != nil {
				tc.setup(h)
			}
			for range 2 {
				require.NoError(t, h.eng.CreateExecution(ctx, h.execution(t, f)))
			}
			// Delivered again: already finished, not counted again.
			args := h.execution(t, f)
			require.NoError(t, h.eng.CreateExecution(ctx, args))
			require.NoError(t, h.eng.CreateExecution(ctx, args))

			s := gather(t, m)
			for status, n := range tc.wantStatus {
				key := map[string]string{"project_id": "p", "function_id": f.ID, "status": status}
				require.Equal(t, n, s[testutil.SeriesKey("qinling_executions_total", key)], status)
			}
			require.Equal(t, 3.0, s.Sum("qinling_executions_total", nil), "each execution once")
			require.Equal(t, 0.0, s["qinling_executions_in_flight"])
			for reason, n := range tc.wantReason {
				require.Equal(t, n, s[testutil.SeriesKey("qinling_executions_failed_total", map[string]string{"reason": reason})], reason)
			}
			require.Equal(t, 3-tc.wantStatus[db.StatusSuccess], s.Sum("qinling_executions_failed_total", nil))
			require.Equal(t, tc.coldStarts, s.Sum("qinling_cold_starts_total", map[string]string{"function_id": f.ID}))
			require.Equal(t, tc.workers, s.Sum("qinling_function_workers", map[string]string{"function_id": f.ID}))
			require.Equal(t, 3.0, s.Sum("qinling_pool_workers", map[string]string{"state": metrics.PoolAvailable}), "the fake's pool of 3")
			// hello takes 0.0123456 s at 32 MiB.
			require.InDelta(t, tc.wantStatus[db.StatusSuccess]*0.0123456*33554432, s.Sum("qinling_execution_memory_byte_seconds_total", nil), 1)
			require.Equal(t, 3-tc.wantStatus[db.StatusError], s["qinling_execution_wait_seconds_count"], "executions that reached a worker")
		})
	}
}
