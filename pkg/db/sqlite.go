package db

import (
	"database/sql"
	"strings"
	"sync"

	sqlite3 "github.com/mattn/go-sqlite3"
)

// sqliteDriver is mattn/go-sqlite3 with connectPragmas run on every new
// connection, after the DSN's settings.
const sqliteDriver = "sqlite3_qinling"

var (
	registerSQLite sync.Once
	registerErr    error
)

// sqliteDSNParams are the settings go-sqlite3 applies from the DSN, in its
// own order: foreign keys, the locking mode, then synchronous — which reads
// the schema, so the locking mode has to be set by then (below).
//
//   - locking_mode=EXCLUSIVE before the first access in WAL mode: SQLite
//     then keeps the WAL index in its own heap, with no -shm file, and takes
//     its file locks once instead of two to four fcntl calls around every
//     transaction (18 per warm execution, several microseconds each in a
//     virtual machine; docs/benchmarks.md, "Sixth round"). The price: while
//     the service runs no other process can open the database, not even to
//     read it (docs/operations.md, "The SQLite database"). The service is
//     its only user (one connection to the all-in-one's own file), and a
//     second all-in-one started on the same state directory stops at once.
//   - synchronous=NORMAL: in WAL mode a commit then needs no fsync (the log
//     is synced at checkpoints); a crash of the process loses nothing, a
//     power cut may lose the last commits but never corrupts.
//   - vfs: SQLite's unix VFS, with each WAL frame's header and page written
//     by one pwrite rather than two (walvfs.c).
//   - busy_timeout: a second opener (db-sync while the service runs) waits
//     for the lock (10 s at each try, ~20 s in all) before it fails,
//     instead of failing at once.
//
// The journal mode is not among them: go-sqlite3 sets it before the
// locking mode, and WAL opened in the normal locking mode keeps its index
// in a -shm file and locks it on every transaction.
const sqliteDSNParams = "_foreign_keys=1&_locking_mode=EXCLUSIVE&_synchronous=NORMAL&_busy_timeout=10000&vfs=" + walVFS

// connectPragmas run on every new connection after the DSN's settings:
//
//   - journal_mode=WAL: readers (API lists) do not wait for the engine's
//     writes, and a commit appends to one file.
//   - temp_store=MEMORY: the group writer's savepoints (groupcommit.go)
//     keep their statement journal in memory; otherwise a batch spills it
//     to a temporary file, ~18 pwrites per execution at 4 clients.
//   - wal_autocheckpoint=4096 pages (16 MiB of WAL; SQLite's default is
//     1,000): a checkpoint copies each page changed since the last one
//     once, and the pages every execution touches (its function's row, the
//     index leaves of running executions, usage_hourly's row) are copied
//     once per 4,096 frames rather than once per 1,000.
var connectPragmas = []string{
	"PRAGMA journal_mode = WAL",
	"PRAGMA temp_store = MEMORY",
	"PRAGMA wal_autocheckpoint = 4096",
}

// openSQLite opens dsn (a file name, or ":memory:" or "" for the process's
// shared in-memory database) with the settings above.
func openSQLite(dsn string) (*sql.DB, error) {
	registerSQLite.Do(func() {
		registerErr = registerWALVFS()
		sql.Register(sqliteDriver, &sqlite3.SQLiteDriver{ConnectHook: func(c *sqlite3.SQLiteConn) error {
			for _, p := range connectPragmas {
				if _, err := c.Exec(p, nil); err != nil {
					return err
				}
			}
			return nil
		}})
	})
	if registerErr != nil {
		return nil, registerErr
	}
	if dsn == "" || dsn == ":memory:" {
		dsn = "file::memory:?cache=shared"
	}
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	return sql.Open(sqliteDriver, dsn+sep+sqliteDSNParams)
}
