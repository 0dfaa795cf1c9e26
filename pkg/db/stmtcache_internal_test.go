package db

import (
	"context"
	"errors"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
)

// TestStmtPool_TransactionStatementsKept: a statement first run in a
// transaction is kept once the transaction ends and then runs, prepared,
// inside later transactions, still as part of them (a rollback undoes it).
func TestStmtPool_TransactionStatementsKept(t *testing.T) {
	const insert = "INSERT INTO kv (k, v) VALUES (?, ?)"
	errUndo := errors.New("undo")
	for _, tc := range []struct {
		name string
		// end is what the second transaction returns: nil commits it.
		end  error
		rows int64
	}{
		{name: "committed", end: nil, rows: 2},
		{name: "rolled back", end: errUndo, rows: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			d, err := Open("sqlite", filepath.Join(t.TempDir(), "q.sqlite"), Options{})
			require.NoError(t, err)
			t.Cleanup(func() { d.Close() })
			pool := d.gorm.Config.ConnPool.(*stmtPool)
			g := d.gorm.WithContext(ctx)
			require.NoError(t, g.Exec("CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT)").Error)
			require.Nil(t, pool.cached("CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT)"), "schema changes are not kept")

			require.NoError(t, g.Transaction(func(tx *gorm.DB) error {
				require.Nil(t, pool.cached(insert))
				return tx.Exec(insert, "a", "1").Error
			}))
			require.NotNil(t, pool.cached(insert), "kept once the transaction ended")

			err = g.Transaction(func(tx *gorm.DB) error {
				if err := tx.Exec(insert, "b", "2").Error; err != nil {
					return err
				}
				return tc.end
			})
			require.ErrorIs(t, err, tc.end)
			var n int64
			require.NoError(t, g.Raw("SELECT count(*) FROM kv").Scan(&n).Error)
			require.Equal(t, tc.rows, n)
		})
	}
}

// TestStmtPool_Bounded: past maxStmts, statements run unprepared.
func TestStmtPool_Bounded(t *testing.T) {
	ctx := context.Background()
	d, err := Open("sqlite", filepath.Join(t.TempDir(), "q.sqlite"), Options{})
	require.NoError(t, err)
	t.Cleanup(func() { d.Close() })
	pool := d.gorm.Config.ConnPool.(*stmtPool)
	for i := 0; i < maxStmts+10; i++ {
		var n int
		require.NoError(t, d.gorm.WithContext(ctx).Raw("SELECT ? + "+strconv.Itoa(i), 1).Scan(&n).Error)
		require.Equal(t, 1+i, n)
	}
	require.Len(t, pool.stmts, maxStmts)
}
