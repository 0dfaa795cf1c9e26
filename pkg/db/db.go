// Package db keeps qinling-go's state in SQL through gorm: SQLite for the
// all-in-one, MySQL/MariaDB for real deployments. Every query that a user can
// reach is scoped to a project here, not in the callers.
package db

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"time"

	mysqldriver "github.com/go-sql-driver/mysql"
	"github.com/google/uuid"
	"gorm.io/driver/mysql"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/qinling-go/qinling/pkg/errdefs"
)

// DB is the store. Methods take a context and return errdefs-kinded errors.
type DB struct {
	gorm   *gorm.DB
	driver string
	// writer folds concurrent per-execution writes into one transaction
	// (SQLite only; nil on MySQL).
	writer *groupWriter
	// publisher is the notifications' publisher_id; empty: notifications
	// off (EnableNotifications).
	publisher string
	// multi runs the per-execution transactions in one round trip each
	// (pipeline.go; MySQL only, nil otherwise).
	multi *sql.DB
}

// Options tune the connection pool.
type Options struct {
	// MaxOpenConns bounds MySQL connections; SQLite always uses one.
	MaxOpenConns int
}

// Open connects with a driver name ("sqlite" or "mysql") and DSN, as
// config.ParseDatabaseURL returns them. It does not touch the schema: call
// Sync (db-sync, or the all-in-one at start) or CheckSchema.
func Open(driver, dsn string, opts Options) (*DB, error) {
	var dial gorm.Dialector
	switch driver {
	case "sqlite":
		// Its settings, and why: sqlite.go.
		conn, err := openSQLite(dsn)
		if err != nil {
			return nil, fmt.Errorf("open database: %w", err)
		}
		dial = sqlite.New(sqlite.Config{Conn: newStmtPool(conn)})
	case "mysql":
		dial = mysql.Open(dsn)
	default:
		return nil, fmt.Errorf("database driver %q: unknown (want sqlite or mysql)", driver)
	}
	g, err := gorm.Open(dial, &gorm.Config{
		Logger:  logger.Discard,
		NowFunc: func() time.Time { return time.Now().UTC() },
		// Errors such as duplicate keys come back as gorm.ErrDuplicatedKey.
		TranslateError: true,
		// SQLite keeps its statements prepared in its own pool
		// (stmtcache.go). MySQL keeps plain queries (server-side statements
		// are per connection and never shared).
		// Every write is one statement (multi-statement changes use explicit
		// transactions), so gorm's implicit transaction per write only costs
		// a BEGIN/COMMIT and, with PrepareStmt, a fresh prepare inside it.
		SkipDefaultTransaction: true,
	})
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	sqlDB, err := g.DB()
	if err != nil {
		return nil, err
	}
	switch {
	case driver == "sqlite":
		// One writer at a time is SQLite's model; a single connection avoids
		// "database is locked" between our own goroutines.
		sqlDB.SetMaxOpenConns(1)
	case opts.MaxOpenConns > 0:
		sqlDB.SetMaxOpenConns(opts.MaxOpenConns)
		sqlDB.SetMaxIdleConns(opts.MaxOpenConns)
	}
	if driver == "mysql" {
		// MySQL closes idle connections after wait_timeout (8 h by default).
		sqlDB.SetConnMaxIdleTime(time.Hour)
	}
	d := &DB{gorm: g, driver: driver}
	if driver == "sqlite" {
		d.writer = newGroupWriter(g)
	}
	if driver == "mysql" {
		if d.multi, err = openMulti(dsn, opts.MaxOpenConns); err != nil {
			sqlDB.Close()
			return nil, fmt.Errorf("open database: %w", err)
		}
	}
	return d, nil
}

// writeTx runs fn in a transaction; on SQLite, one shared with the writes
// that wait at the same time (groupcommit.go). fn must use only tx.
func (d *DB) writeTx(ctx context.Context, fn func(tx *gorm.DB) error) error {
	if d.writer != nil {
		return d.writer.write(ctx, false, fn)
	}
	return d.gorm.WithContext(ctx).Transaction(fn)
}

// writeOne is writeTx for fn of one statement, which needs a transaction
// only when it shares one.
func (d *DB) writeOne(ctx context.Context, fn func(tx *gorm.DB) error) error {
	if d.writer != nil {
		return d.writer.write(ctx, true, fn)
	}
	return fn(d.gorm.WithContext(ctx))
}

// Close releases the connection pool.
func (d *DB) Close() error {
	if d.writer != nil {
		d.writer.close()
	}
	if p, ok := d.gorm.Config.ConnPool.(*stmtPool); ok {
		p.closeConnStmts()
	}
	if d.multi != nil {
		d.multi.Close()
	}
	sqlDB, err := d.gorm.DB()
	if err != nil {
		return err
	}
	return sqlDB.Close()
}

// NewID returns a new primary key.
func NewID() string { return uuid.NewString() }

// Scope says which projects a caller may see.
type Scope struct {
	ProjectID string
	// All lifts the project restriction (admins with all_projects, or
	// internal callers such as the engine).
	All bool
}

// Internal is the scope of the services themselves.
var Internal = Scope{All: true}

func (s Scope) apply(q *gorm.DB) *gorm.DB {
	if s.All {
		return q
	}
	return q.Where("project_id = ?", s.ProjectID)
}

func now() time.Time { return time.Now().UTC() }

// translate turns gorm errors into kinded errors with upstream's messages.
func translate(err error, what, id string) error {
	switch {
	case err == nil:
		return nil
	case errors.As(err, new(*errdefs.Error)):
		// Already translated: a transaction returns what its statements
		// returned, or its own begin or commit error, which is not.
		return err
	case errors.Is(err, gorm.ErrRecordNotFound):
		return errdefs.NotFound("%s not found [id=%s]", what, id)
	case errors.Is(err, gorm.ErrDuplicatedKey):
		return errdefs.Invalid("Duplicate entry for %s.", what)
	case errors.Is(err, gorm.ErrForeignKeyViolated):
		return errdefs.Conflict("%s [id=%s] is referenced by other objects.", what, id)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return err
	}
	if unreachable(err) {
		return errdefs.Wrap(errdefs.KindUnavailable, err, "Database unavailable")
	}
	return errdefs.Wrap(errdefs.KindInternal, err, "database error")
}

// unreachable says whether err means the database server could not be
// reached or went away (restarting, down), which is worth retrying, rather
// than a failed statement. The API answers it 503, and the engine waits for
// the database instead of dropping the execution it was given.
func unreachable(err error) bool {
	var netErr net.Error
	var myErr *mysqldriver.MySQLError
	switch {
	case errors.As(err, &netErr), errors.Is(err, driver.ErrBadConn), errors.Is(err, mysqldriver.ErrInvalidConn):
		return true
	case errors.As(err, &myErr):
		// ER_SERVER_SHUTDOWN, ER_CONNECTION_KILLED.
		return myErr.Number == 1053 || myErr.Number == 1927
	}
	return false
}
