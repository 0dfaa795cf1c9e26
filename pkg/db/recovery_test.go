package db_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/db"
)

func TestExecutionRecoveryQueries(t *testing.T) {
	each(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		d := open(t)
		fid := db.NewID() // a UUID, as the column's size expects
		mk := func(sync bool) string {
			e := &db.Execution{Base: db.Base{ProjectID: "p"}, FunctionID: &fid, Status: db.StatusRunning, Sync: sync}
			require.NoError(t, d.CreateExecution(ctx, e))
			return e.ID
		}
		startedA, startedB, queuedAsync, queuedSync := mk(false), mk(true), mk(false), mk(true)

		ok, err := d.StartExecution(ctx, startedA, "engine-a")
		require.NoError(t, err)
		require.True(t, ok, "the first engine starts it")
		ok, err = d.StartExecution(ctx, startedA, "engine-b")
		require.NoError(t, err)
		require.False(t, ok, "a started execution is never started again")
		ok, err = d.StartExecution(ctx, startedB, "engine-b")
		require.NoError(t, err)
		require.True(t, ok)

		engines, err := d.StartedExecutionEngines(ctx)
		require.NoError(t, err)
		require.ElementsMatch(t, []string{"engine-a", "engine-b"}, engines)

		queued, err := d.UnstartedAsync(ctx)
		require.NoError(t, err)
		require.Len(t, queued, 1)
		require.Equal(t, queuedAsync, queued[0].ID)

		n, err := d.EndEngineExecutions(ctx, "engine-a", `{"output": "gone"}`)
		require.NoError(t, err)
		require.EqualValues(t, 1, n)
		got, err := d.Execution(ctx, db.Internal, startedA)
		require.NoError(t, err)
		require.Equal(t, db.StatusError, got.Status)
		require.Equal(t, `{"output": "gone"}`, *got.Result)
		require.Equal(t, "engine-a", *got.Engine)
		require.NotNil(t, got.StartedAt)

		n, err = d.EndUnstartedSync(ctx, `{"output": "stopped"}`)
		require.NoError(t, err)
		require.EqualValues(t, 1, n)
		got, err = d.Execution(ctx, db.Internal, queuedSync)
		require.NoError(t, err)
		require.Equal(t, db.StatusError, got.Status)

		ok, err = d.StartExecution(ctx, startedA, "engine-c")
		require.NoError(t, err)
		require.False(t, ok, "an ended execution does not start")
		engines, err = d.StartedExecutionEngines(ctx)
		require.NoError(t, err)
		require.Equal(t, []string{"engine-b"}, engines)
	})
}
