package db

import (
	"context"
	"database/sql/driver"
	"errors"
	"path/filepath"
	"runtime/metrics"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
)

// TestStmtPool_TransactionStatementsKept: a data statement first run in a
// transaction is prepared on the connection and kept, and runs, prepared,
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
			require.Nil(t, pool.stmts["CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT)"], "schema changes are not kept")

			require.NoError(t, g.Transaction(func(tx *gorm.DB) error {
				require.Nil(t, pool.connStmts[insert])
				return tx.Exec(insert, "a", "1").Error
			}))
			kept := pool.connStmts[insert]
			require.NotNil(t, kept, "kept once the transaction ended")

			err = g.Transaction(func(tx *gorm.DB) error {
				if err := tx.Exec(insert, "b", "2").Error; err != nil {
					return err
				}
				return tc.end
			})
			require.Same(t, kept, pool.connStmts[insert], "prepared once")
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

// goroutinesCreated is how many goroutines the process has started so far.
func goroutinesCreated() uint64 {
	s := []metrics.Sample{{Name: "/sched/goroutines-created:goroutines"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// TestStmtPool_NoGoroutinesPerStatement: a SQLite statement under a context
// that can be cancelled starts no goroutine (database/sql's Rows.awaitDone,
// go-sqlite3's stepping goroutines), nor does a transaction (database/sql's
// Tx.awaitDone: a transaction holds the connection instead, connTx). Once
// the context has ended, statements are refused.
func TestStmtPool_NoGoroutinesPerStatement(t *testing.T) {
	const runs = 20
	for _, tc := range []struct {
		name string
		run  func(g *gorm.DB) error
		// perRun is the most goroutines one run may start.
		perRun uint64
	}{
		{name: "query", run: func(g *gorm.DB) error {
			var vs []string
			return g.Raw("SELECT v FROM kv ORDER BY k").Scan(&vs).Error
		}},
		{name: "query of one row", run: func(g *gorm.DB) error {
			var v string
			return g.Raw("SELECT v FROM kv WHERE k = ?", "a").Row().Scan(&v)
		}},
		{name: "statement", run: func(g *gorm.DB) error {
			return g.Exec("UPDATE kv SET v = v || ? WHERE k = ?", "x", "a").Error
		}},
		{name: "transaction", run: func(g *gorm.DB) error {
			return g.Transaction(func(tx *gorm.DB) error {
				var vs []string
				if err := tx.Raw("SELECT v FROM kv ORDER BY k").Scan(&vs).Error; err != nil {
					return err
				}
				return tx.Exec("UPDATE kv SET v = ? WHERE k = ?", "y", "b").Error
			})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := Open("sqlite", filepath.Join(t.TempDir(), "q.sqlite"), Options{})
			require.NoError(t, err)
			t.Cleanup(func() { d.Close() })
			require.NoError(t, d.gorm.Exec("CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT)").Error)
			require.NoError(t, d.gorm.Exec("INSERT INTO kv (k, v) VALUES ('a', '1'), ('b', '2'), ('c', '3')").Error)

			ctx, cancel := context.WithCancel(context.Background())
			g := d.gorm.WithContext(ctx)
			require.NoError(t, tc.run(g), "first run, which prepares the statements")
			before := goroutinesCreated()
			for range runs {
				require.NoError(t, tc.run(g))
			}
			require.LessOrEqual(t, goroutinesCreated()-before, runs*tc.perRun)

			cancel()
			require.ErrorIs(t, tc.run(g), context.Canceled)
		})
	}
}

// TestConnTx_LeftInTransactionDiscarded: a connection still inside a
// transaction after its end (a rollback that failed) is not handed to the
// next statement: that one runs on a new connection, outside any
// transaction, and the old one's kept statements are finalized first, so
// no zombie connection keeps the file locked.
func TestConnTx_LeftInTransactionDiscarded(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "q.sqlite")
	d, err := Open("sqlite", path, Options{})
	require.NoError(t, err)
	g := d.gorm.WithContext(ctx)
	require.NoError(t, g.Exec("CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT)").Error)
	pool := d.gorm.Config.ConnPool.(*stmtPool)

	begun, err := pool.BeginTx(ctx, nil)
	require.NoError(t, err)
	tx := begun.(*connTx)
	_, err = tx.ExecContext(ctx, "INSERT INTO kv (k, v) VALUES (?, ?)", "a", "1")
	require.NoError(t, err)
	require.NotEmpty(t, pool.connStmts, "kept on the connection")
	errFailed := errors.New("rollback failed")
	require.ErrorIs(t, tx.end(func(driver.Tx) error { return errFailed }), errFailed)

	var n int64
	require.NoError(t, g.Raw("SELECT count(*) FROM kv").Scan(&n).Error)
	require.Zero(t, n, "the unfinished transaction's write is gone")
	require.NoError(t, g.Exec("INSERT INTO kv (k, v) VALUES (?, ?)", "b", "2").Error)
	require.NoError(t, d.Close())

	d, err = Open("sqlite", path, Options{})
	require.NoError(t, err)
	t.Cleanup(func() { d.Close() })
	require.NoError(t, d.gorm.WithContext(ctx).Raw("SELECT count(*) FROM kv").Scan(&n).Error)
	require.Equal(t, int64(1), n, "the write after it committed")
}
