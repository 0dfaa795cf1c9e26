package db_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/db"
	"github.com/qinling-go/qinling/pkg/errdefs"
)

// opener makes a fresh, migrated database of one kind.
type opener func(t *testing.T) *db.DB

// openers are the database kinds every test here runs against: SQLite
// always, MySQL (MariaDB) in the integration tier.
var openers = map[string]opener{
	"sqlite": func(t *testing.T) *db.DB {
		d, err := db.Open("sqlite", filepath.Join(t.TempDir(), "q.sqlite"), db.Options{})
		require.NoError(t, err)
		_, _, err = d.Sync(context.Background())
		require.NoError(t, err)
		t.Cleanup(func() { d.Close() })
		return d
	},
}

// each runs body once per database kind.
func each(t *testing.T, body func(t *testing.T, open opener)) {
	for name, open := range openers {
		t.Run(name, func(t *testing.T) { body(t, open) })
	}
}

func TestRuntimeVisibility(t *testing.T) {
	each(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		d := open(t)
		public := &db.Runtime{Base: db.Base{ProjectID: "admin"}, Image: "python3", Status: db.StatusAvailable, IsPublic: true}
		private := &db.Runtime{Base: db.Base{ProjectID: "admin"}, Image: "python3", Status: db.StatusAvailable, IsPublic: false}
		require.NoError(t, d.CreateRuntime(ctx, public))
		require.NoError(t, d.CreateRuntime(ctx, private))

		got, err := d.Runtime(ctx, db.Scope{ProjectID: "demo"}, private.ID)
		require.ErrorIs(t, err, errdefs.ErrNotFound, "another project's private runtime is invisible")
		require.Nil(t, got)
		rts, err := d.Runtimes(ctx, db.Scope{ProjectID: "demo"}, db.ListOptions{})
		require.NoError(t, err)
		require.Len(t, rts, 1)
		require.False(t, rts[0].UpdatedAt != nil, "updated_at stays null until modified")
		reread, err := d.Runtime(ctx, db.Scope{ProjectID: "admin"}, private.ID)
		require.NoError(t, err)
		require.False(t, reread.IsPublic, "an explicit false survives (no gorm default)")
	})
}

func TestExecutionFilters(t *testing.T) {
	each(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		d := open(t)
		fid := "f1"
		for _, st := range []string{db.StatusRunning, db.StatusSuccess, db.StatusFailed, db.StatusSuccess} {
			desc := "Created by Job j-" + st
			require.NoError(t, d.CreateExecution(ctx, &db.Execution{Base: db.Base{ProjectID: "p"}, FunctionID: &fid, Status: st, Description: &desc}))
		}
		require.NoError(t, d.CreateExecution(ctx, &db.Execution{Base: db.Base{ProjectID: "other"}, FunctionID: &fid, Status: db.StatusSuccess}))
		for _, tc := range []struct {
			name   string
			column string
			raw    string
			scope  db.Scope
			want   int
		}{
			{"eq by default", "status", "success", db.Scope{ProjectID: "p"}, 2},
			{"in list", "status", "in:success,failed", db.Scope{ProjectID: "p"}, 3},
			{"nin list", "status", "nin:success,failed", db.Scope{ProjectID: "p"}, 1},
			{"neq", "status", "neq:running", db.Scope{ProjectID: "p"}, 3},
			{"has substring", "description", "has:j-fail", db.Scope{ProjectID: "p"}, 1},
			{"has treats % literally", "description", "has:%", db.Scope{ProjectID: "p"}, 0},
			{"all projects", "status", "success", db.Internal, 3},
		} {
			t.Run(tc.name, func(t *testing.T) {
				f, err := db.ParseFilter(tc.column, tc.raw)
				require.NoError(t, err)
				es, err := d.Executions(ctx, tc.scope, db.ListOptions{Filters: []db.Filter{f}})
				require.NoError(t, err)
				require.Len(t, es, tc.want)
			})
		}
		n, err := d.RunningExecutions(ctx, fid, 0)
		require.NoError(t, err)
		require.Equal(t, 1, n)
	})
}

func TestFinishExecutionOnlyOnce(t *testing.T) {
	each(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		d := open(t)
		e := &db.Execution{Base: db.Base{ProjectID: "p"}, Status: db.StatusRunning}
		require.NoError(t, d.CreateExecution(ctx, e))
		res := `{"output": 1}`
		ok, err := d.FinishExecution(ctx, e.ID, db.StatusSuccess, &res, nil)
		require.NoError(t, err)
		require.True(t, ok)
		ok, err = d.FinishExecution(ctx, e.ID, db.StatusError, nil, nil)
		require.NoError(t, err)
		require.False(t, ok, "a finished execution is not overwritten")
		got, err := d.Execution(ctx, db.Scope{ProjectID: "p"}, e.ID)
		require.NoError(t, err)
		require.Equal(t, db.StatusSuccess, got.Status)
		require.NotNil(t, got.UpdatedAt)
	})
}

func TestCountExecution(t *testing.T) {
	each(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		d := open(t)
		f := &db.Function{Base: db.Base{ProjectID: "p"}, Code: `{"source":"package"}`}
		require.NoError(t, d.CreateFunction(ctx, f))
		for i := 0; i < 3; i++ {
			require.NoError(t, d.CountExecution(ctx, f.ID, 0))
		}
		// The API's way: the count and the insert in one transaction.
		e := &db.Execution{Base: db.Base{ProjectID: "p"}, FunctionID: &f.ID, Status: db.StatusRunning, Sync: true}
		require.NoError(t, d.CreateCountedExecution(ctx, e))
		stored, err := d.Execution(ctx, db.Internal, e.ID)
		require.NoError(t, err)
		require.Equal(t, db.StatusRunning, stored.Status)
		require.ErrorIs(t, d.CreateCountedExecution(ctx, &db.Execution{Base: db.Base{ID: e.ID, ProjectID: "p"}, FunctionID: &f.ID, Status: db.StatusRunning}),
			errdefs.ErrInvalid, "a failed insert")
		got, err := d.Function(ctx, db.Scope{ProjectID: "p"}, f.ID)
		require.NoError(t, err)
		require.Equal(t, 4, got.Count, "a failed insert is not counted")
		// Nor by the next transaction on its connection (on MySQL one round
		// trip each: a failed one must be rolled back, not left open for
		// the next BEGIN to commit).
		require.NoError(t, d.CreateCountedExecution(ctx, &db.Execution{Base: db.Base{ProjectID: "p"}, FunctionID: &f.ID, Status: db.StatusRunning}))
		got, err = d.Function(ctx, db.Scope{ProjectID: "p"}, f.ID)
		require.NoError(t, err)
		require.Equal(t, 5, got.Count, "a failed insert is not counted by the next one")
		_, err = d.Function(ctx, db.Scope{ProjectID: "q"}, f.ID)
		require.ErrorIs(t, err, errdefs.ErrNotFound)
	})
}
