package db

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestExecutionPagesWritten: a warm execution on SQLite (its counted
// insert, then its end as the engine stores it, with a start and usage)
// writes 10 to 11 pages to the WAL, each a frame and two pwrites: the
// row, its id, created_at, project_id and function index entries, the
// running index's entry and the function's count at the insert; the row,
// the running index's entry and usage_hourly's row at the end, with a page
// split now and then (at most 12 allowed). Up to migration 10 the end moved the execution's
// entry in two indexes that held its status, ~14.4 pages
// (docs/benchmarks.md, "Ninth round").
func TestExecutionPagesWritten(t *testing.T) {
	ctx := context.Background()
	d := syncedSQLite(t)
	f := &Function{Base: Base{ProjectID: "p"}, MemorySize: 32 << 20, Code: "{}"}
	require.NoError(t, d.CreateFunction(ctx, f))
	run := func(n int) {
		for range n {
			e := &Execution{Base: Base{ProjectID: "p"}, FunctionID: &f.ID, Status: StatusRunning, Sync: true}
			require.NoError(t, d.CreateCountedExecution(ctx, e))
			result := `{"output": null}`
			done, err := d.Finish(ctx, e.ID, Outcome{Status: StatusSuccess, Result: &result,
				Usage: Usage{DurationMS: 1, MemorySize: 32 << 20}, StartedBy: "engine", StartedAt: now()})
			require.NoError(t, err)
			require.True(t, done)
		}
	}
	// Enough executions that the indexes have interior pages, as a
	// service's have.
	run(300)
	checkpoint := func(mode string) (frames int) {
		var busy, done int
		require.NoError(t, d.gorm.Raw("PRAGMA wal_checkpoint("+mode+")").Row().Scan(&busy, &frames, &done))
		return frames
	}
	checkpoint("TRUNCATE")
	joined := walFramesJoined()
	const n = 200
	run(n)
	frames := checkpoint("PASSIVE")
	t.Logf("%d frames for %d executions: %.1f each", frames, n, float64(frames)/n)
	require.LessOrEqual(t, float64(frames)/n, 12.0)
	// Each written with one system call (walvfs.c); other tests' databases
	// may add to the process's count meanwhile.
	require.GreaterOrEqual(t, walFramesJoined()-joined, int64(frames), "every frame's header and page in one write")
}
