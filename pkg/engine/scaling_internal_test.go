package engine

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestDesired is the scaling rules' arithmetic: function_concurrency 3, at
// most 10 workers, stale after 200 ms.
func TestDesired(t *testing.T) {
	for _, tc := range []struct {
		name       string
		policy     string
		target     int
		min        int
		l          load
		want       int
		wantReason string
	}{
		{name: "first execution", l: load{queued: 1}, want: 1, wantReason: "target"},
		{name: "demand over target", l: load{workers: 1, inflight: 3, queued: 4}, want: 3, wantReason: "target"},
		{name: "clamped to the maximum", l: load{workers: 1, inflight: 3, queued: 900}, want: 10, wantReason: "target"},
		{name: "idle keeps the minimum", min: 2, l: load{workers: 5}, want: 2, wantReason: "target"},
		{name: "a larger target packs", target: 6, l: load{workers: 1, inflight: 3, queued: 4}, want: 2, wantReason: "target"},
		{name: "stale queue of a long function bursts", target: 30,
			l: load{workers: 1, inflight: 3, queued: 10, oldest: time.Second, avgRun: 5 * time.Second}, want: 5, wantReason: "burst"},
		{name: "stale queue of a short function needs few", target: 30,
			l: load{workers: 1, inflight: 3, queued: 10, oldest: time.Second, avgRun: 50 * time.Millisecond}, want: 2, wantReason: "burst"},
		{name: "fresh queue does not burst", target: 30,
			l: load{workers: 1, inflight: 3, queued: 10, oldest: 10 * time.Millisecond, avgRun: 5 * time.Second}, want: 1, wantReason: "target"},
		{name: "upstream: first worker", policy: PolicyUpstream, l: load{queued: 1}, want: 1, wantReason: "no worker"},
		{name: "upstream: one more at a time", policy: PolicyUpstream, l: load{workers: 2, inflight: 6, queued: 100}, want: 3, wantReason: "load above function_concurrency"},
		{name: "upstream: one at a time while starting", policy: PolicyUpstream, l: load{workers: 2, scaling: 1, inflight: 6, queued: 100}, want: 3, wantReason: "steady"},
		{name: "upstream: within the rule", policy: PolicyUpstream, l: load{workers: 2, inflight: 6}, want: 2, wantReason: "steady"},
		{name: "upstream: at the maximum", policy: PolicyUpstream, l: load{workers: 10, inflight: 30, queued: 5}, want: 10, wantReason: "steady"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := ScalingOptions{Policy: tc.policy, TargetPerWorker: tc.target, MinWorkers: tc.min, BurstAfter: 200 * time.Millisecond}
			opts.setDefaults(3)
			e := &Engine{opts: Options{FunctionConcurrency: 3, MaxWorkers: 10, Scaling: opts}}
			tc.l.minW, tc.l.maxW = e.bounds(nil)
			got, reason := e.desired(tc.l)
			require.Equal(t, tc.want, got)
			require.Equal(t, tc.wantReason, reason)
		})
	}
}
