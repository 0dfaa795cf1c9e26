package db_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/db"
)

// TestExecutionWrites: the per-execution writes, fixed statements since
// they no longer go through gorm's builder (hotwrite.go), store what the
// rows say: the counted insert every field of the execution and one more
// on its function's or version's count, the end (with its start or without)
// its own columns and nothing else.
func TestExecutionWrites(t *testing.T) {
	each(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		d := open(t)
		f := &db.Function{Base: db.Base{ProjectID: "p"}, Code: `{"source":"package"}`}
		require.NoError(t, d.CreateFunction(ctx, f))
		v, err := d.CreateFunctionVersion(ctx, f, nil)
		require.NoError(t, err)
		// Milliseconds: what MySQL's DATETIME(3) keeps.
		at := time.Now().UTC().Truncate(time.Millisecond)
		str := func(s string) *string { return &s }
		for _, tc := range []struct {
			name    string
			version int
			started bool
		}{
			{name: "function, ended with its start", started: true},
			{name: "version, ended after its own start mark", version: v.VersionNumber},
		} {
			t.Run(tc.name, func(t *testing.T) {
				e := &db.Execution{Base: db.Base{ProjectID: "p", CreatedAt: at.Add(-time.Second)}, FunctionID: &f.ID,
					FunctionVersion: tc.version, FunctionAlias: str("live"), Description: str("d"), Status: db.StatusRunning,
					Sync: true, Input: str(`{"a":1}`), Trigger: str(db.TriggerWebhook), UserID: str("u")}
				require.NoError(t, d.CreateCountedExecution(ctx, e))
				stored, err := d.Execution(ctx, db.Internal, e.ID)
				require.NoError(t, err)
				require.Equal(t, *e, *stored, "every field as inserted")
				fn, err := d.Function(ctx, db.Internal, f.ID)
				require.NoError(t, err)
				ver, err := d.FunctionVersion(ctx, db.Internal, f.ID, v.VersionNumber)
				require.NoError(t, err)
				if tc.version == 0 {
					require.Equal(t, 1, fn.Count)
				} else {
					require.Equal(t, 1, ver.Count)
				}

				o := db.Outcome{Status: db.StatusFailed, Result: str(`{"output":"x"}`), Logs: str("log"), End: at}
				want := *e
				want.Status, want.Result, want.Logs, want.UpdatedAt = o.Status, o.Result, o.Logs, &at
				if tc.started {
					o.StartedBy, o.StartedAt = "engine-1", at.Add(-time.Millisecond)
					want.Engine, want.StartedAt = &o.StartedBy, &o.StartedAt
				}
				want.Input = e.Input
				ok, err := d.Finish(ctx, e.ID, o)
				require.NoError(t, err)
				require.True(t, ok)
				ended, err := d.Execution(ctx, db.Internal, e.ID)
				require.NoError(t, err)
				require.Equal(t, want, *ended)
				ok, err = d.Finish(ctx, e.ID, o)
				require.NoError(t, err)
				require.False(t, ok, "an ended execution is not ended again")
			})
		}
	})
}
