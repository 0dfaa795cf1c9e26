package engine

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/db"
)

// TestBounds: a function's own min_workers and max_workers, where an admin
// set them, replace the deployment's (1 and 10 here) in every decision.
func TestBounds(t *testing.T) {
	n := func(v int) *int { return &v }
	for _, tc := range []struct {
		name           string
		fnMin, fnMax   *int
		l              load
		wantLo, wantHi int
		want           int
	}{
		{name: "defaults", l: load{inflight: 3, queued: 900}, wantLo: 1, wantHi: 10, want: 10},
		{name: "own maximum caps the target", fnMax: n(2), l: load{inflight: 3, queued: 900}, wantLo: 1, wantHi: 2, want: 2},
		{name: "own maximum above the deployment's", fnMax: n(40), l: load{inflight: 3, queued: 900}, wantLo: 1, wantHi: 40, want: 40},
		{name: "own minimum kept while idle", fnMin: n(3), l: load{workers: 5}, wantLo: 3, wantHi: 10, want: 3},
		{name: "own minimum on the first execution", fnMin: n(4), l: load{queued: 1}, wantLo: 4, wantHi: 10, want: 4},
		{name: "a minimum above the maximum is the maximum", fnMin: n(5), fnMax: n(3), l: load{queued: 1}, wantLo: 3, wantHi: 3, want: 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := ScalingOptions{}
			opts.setDefaults(3)
			e := &Engine{opts: Options{FunctionConcurrency: 3, MaxWorkers: 10, Scaling: opts}}
			lo, hi := e.bounds(&db.Function{MinWorkers: tc.fnMin, MaxWorkers: tc.fnMax})
			require.Equal(t, [2]int{tc.wantLo, tc.wantHi}, [2]int{lo, hi})
			tc.l.minW, tc.l.maxW = lo, hi
			got, _ := e.desired(tc.l)
			require.Equal(t, tc.want, got)
		})
	}
}
