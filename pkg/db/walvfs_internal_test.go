package db

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestWALVFS_LogReadsBack: the WAL as walvfs.c writes it (each frame's
// header and page in one write) is a log SQLite recovers from: a copy of
// the database file and its WAL taken while the service runs (as a crash
// leaves them, nothing checkpointed) opens with every committed execution.
func TestWALVFS_LogReadsBack(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	d, err := Open("sqlite", filepath.Join(dir, "q.sqlite"), Options{})
	require.NoError(t, err)
	t.Cleanup(func() { d.Close() })
	_, _, err = d.Sync(ctx)
	require.NoError(t, err)
	joined := walFramesJoined()
	const n = 300
	for range n {
		require.NoError(t, d.CreateExecution(ctx, &Execution{Base: Base{ProjectID: "p"}, Status: StatusRunning}))
	}
	require.Greater(t, walFramesJoined()-joined, int64(n), "frames written through walvfs.c")

	crashed := t.TempDir()
	for _, name := range []string{"q.sqlite", "q.sqlite-wal"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(crashed, name), b, 0o600))
	}
	c, err := Open("sqlite", filepath.Join(crashed, "q.sqlite"), Options{})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	var count int64
	require.NoError(t, c.gorm.Model(&Execution{}).Count(&count).Error)
	require.EqualValues(t, n, count)
	var check string
	require.NoError(t, c.gorm.Raw("PRAGMA integrity_check").Row().Scan(&check))
	require.Equal(t, "ok", check)
}
