package db_test

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/db"
)

// TestSQLiteConnectionSettings checks that the settings of sqlite.go are in
// effect however the database is opened: a new file, a file the service
// wrote and closed before (a restart: its WAL exists already, and SQLite
// would put the WAL index in a -shm file if the journal mode were set
// before the locking mode), and in memory.
func TestSQLiteConnectionSettings(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name string
		// path returns the DSN to open; "" is in memory.
		path func(t *testing.T) string
		want map[string]string
	}{
		{
			name: "new file",
			path: func(t *testing.T) string { return filepath.Join(t.TempDir(), "q.sqlite") },
			want: map[string]string{"locking_mode": "exclusive", "journal_mode": "wal", "temp_store": "2", "wal_autocheckpoint": "4096", "synchronous": "1", "foreign_keys": "1"},
		},
		{
			name: "reopened after a run",
			path: func(t *testing.T) string {
				p := filepath.Join(t.TempDir(), "q.sqlite")
				d, err := db.Open("sqlite", p, db.Options{})
				require.NoError(t, err)
				_, _, err = d.Sync(ctx)
				require.NoError(t, err)
				require.NoError(t, d.Close())
				return p
			},
			want: map[string]string{"locking_mode": "exclusive", "journal_mode": "wal", "temp_store": "2", "wal_autocheckpoint": "4096", "synchronous": "1", "foreign_keys": "1"},
		},
		{
			name: "in memory",
			path: func(*testing.T) string { return "" },
			// An in-memory database has no WAL.
			want: map[string]string{"locking_mode": "exclusive", "journal_mode": "memory", "temp_store": "2", "foreign_keys": "1"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := tc.path(t)
			d, err := db.Open("sqlite", path, db.Options{})
			require.NoError(t, err)
			t.Cleanup(func() { d.Close() })
			_, _, err = d.Sync(ctx)
			require.NoError(t, err)
			for name, want := range tc.want {
				got, err := db.Pragma(ctx, d, name)
				require.NoError(t, err, name)
				require.Equal(t, want, got, "PRAGMA %s", name)
			}
			if path == "" {
				return
			}
			_, err = os.Stat(path + "-shm")
			require.ErrorIs(t, err, os.ErrNotExist, "the WAL index is kept in the process's memory, not in a -shm file")
		})
	}
}

// TestSQLiteSecondOpenerLocked documents the price of the exclusive
// locking mode (docs/operations.md): while the service has its database
// open, another process or connection cannot read it, and is told so.
func TestSQLiteSecondOpenerLocked(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "q.sqlite")
	d, err := db.Open("sqlite", path, db.Options{})
	require.NoError(t, err)
	_, _, err = d.Sync(ctx)
	require.NoError(t, err)

	other, err := sql.Open("sqlite3", path+"?_busy_timeout=50")
	require.NoError(t, err)
	defer other.Close()
	var n int
	err = other.QueryRowContext(ctx, "SELECT count(*) FROM executions").Scan(&n)
	require.ErrorContains(t, err, "database is locked")

	require.NoError(t, d.Close())
	require.NoError(t, other.QueryRowContext(ctx, "SELECT count(*) FROM executions").Scan(&n), "readable once the service has closed it")
	require.Zero(t, n)
}
