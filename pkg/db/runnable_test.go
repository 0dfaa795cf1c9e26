package db_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/db"
	"github.com/qinling-go/qinling/pkg/errdefs"
)

// TestRunnableFunction: the one statement an execution's start reads
// returns what Function, Runtime and RunningCounts return, at each call:
// a function updated or in another project, a runtime no longer available
// or gone are seen at once, never as they were at an earlier start.
func TestRunnableFunction(t *testing.T) {
	each(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		d := open(t)
		rt := &db.Runtime{Base: db.Base{ProjectID: "admin"}, Image: "python3", Status: db.StatusAvailable, IsPublic: true}
		require.NoError(t, d.CreateRuntime(ctx, rt))
		f := &db.Function{Base: db.Base{ProjectID: "p1"}, RuntimeID: &rt.ID, MemorySize: 32 << 20, Timeout: 5, Code: "{}"}
		name, desc, entry, trust, lo, hi := "f", "d", "main.run", "t", 1, 3
		f.Name, f.Description, f.Entry, f.TrustID, f.MinWorkers, f.MaxWorkers = &name, &desc, &entry, &trust, &lo, &hi
		f.CPU, f.Count, f.LatestVersion = 100, 2, 4
		require.NoError(t, d.CreateFunction(ctx, f))
		require.NoError(t, d.SetUpdatedAt(ctx, f.ID, time.Now().Add(-time.Minute)))
		img := &db.Function{Base: db.Base{ProjectID: "p1"}, MemorySize: 32 << 20, Code: `{"source":"image","image":"busybox"}`}
		require.NoError(t, d.CreateFunction(ctx, img))
		for _, p := range []string{"p1", "p1", "p2"} {
			running(t, d, p, f.ID)
		}
		gone := "no-such-runtime"
		for _, tc := range []struct {
			name     string
			change   func(t *testing.T)
			scope    db.Scope
			id       string
			counts   bool
			wantKind errdefs.Kind // of the read, or else of CheckRuntime
			check    func(t *testing.T, r *db.Runnable)
		}{
			{name: "own function, counted", scope: db.Scope{ProjectID: "p1"}, id: f.ID, counts: true,
				check: func(t *testing.T, r *db.Runnable) {
					require.Equal(t, f.ID, r.ID)
					require.Equal(t, 5, r.Timeout)
					require.Equal(t, 3, r.RunningOfFunction, "every project's")
					require.Equal(t, 2, r.RunningInProject)
				}},
			{name: "every column as Function reads it", scope: db.Scope{ProjectID: "p1"}, id: f.ID,
				check: func(t *testing.T, r *db.Runnable) {
					want, err := d.Function(ctx, db.Scope{ProjectID: "p1"}, f.ID)
					require.NoError(t, err)
					require.NotNil(t, want.UpdatedAt)
					require.Equal(t, *want, r.Function)
				}},
			{name: "not counted", scope: db.Scope{ProjectID: "p1"}, id: f.ID,
				check: func(t *testing.T, r *db.Runnable) { require.Zero(t, r.RunningOfFunction+r.RunningInProject) }},
			{name: "another project's", scope: db.Scope{ProjectID: "p2"}, id: f.ID, counts: true, wantKind: errdefs.KindNotFound},
			{name: "any project's for an admin", scope: db.Internal, id: f.ID, check: func(t *testing.T, r *db.Runnable) { require.Equal(t, "p1", r.ProjectID) }},
			{name: "no such function", scope: db.Internal, id: "nope", wantKind: errdefs.KindNotFound},
			{name: "image function, no runtime", scope: db.Scope{ProjectID: "p1"}, id: img.ID,
				check: func(t *testing.T, r *db.Runnable) { require.Nil(t, r.RuntimeStatus) }},
			{name: "updated since", scope: db.Scope{ProjectID: "p1"}, id: f.ID,
				change: func(t *testing.T) { require.NoError(t, d.UpdateFunction(ctx, f.ID, map[string]any{"timeout": 9})) },
				check:  func(t *testing.T, r *db.Runnable) { require.Equal(t, 9, r.Timeout) }},
			{name: "runtime not available since", scope: db.Scope{ProjectID: "p1"}, id: f.ID, wantKind: errdefs.KindConflict,
				change: func(t *testing.T) {
					require.NoError(t, d.UpdateRuntime(ctx, rt.ID, map[string]any{"status": db.StatusError}))
				}},
			{name: "runtime gone", scope: db.Scope{ProjectID: "p1"}, id: f.ID, wantKind: errdefs.KindNotFound,
				change: func(t *testing.T) {
					require.NoError(t, d.UpdateFunction(ctx, f.ID, map[string]any{"runtime_id": gone}))
				}},
			{name: "deleted since", scope: db.Scope{ProjectID: "p1"}, id: img.ID, wantKind: errdefs.KindNotFound,
				change: func(t *testing.T) { require.NoError(t, d.DeleteFunction(ctx, img.ID)) }},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if tc.change != nil {
					tc.change(t)
				}
				r, err := d.RunnableFunction(ctx, tc.scope, tc.id, 0, "p1", tc.counts)
				if err == nil {
					err = r.CheckRuntime()
				}
				if tc.wantKind != "" {
					require.Equal(t, tc.wantKind, errdefs.KindOf(err), "error %v", err)
					return
				}
				require.NoError(t, err)
				tc.check(t, r)
			})
		}
	})
}
