package db

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"
	"sync"

	"gorm.io/gorm"
)

// stmtPool is SQLite's connection pool with each statement prepared once
// and kept. gorm's own PrepareStmt prepares a statement first seen inside a
// transaction on that transaction, and database/sql cannot reuse such a
// statement in the next one: every statement of the per-execution
// transactions (the API's insert, the engine's end) was compiled anew each
// time, 7 % of the embedded service's CPU. Here a statement outside a
// transaction is prepared on the pool, and one in a transaction on the
// driver connection the transaction holds (connTx, driverStmt; SQLite has
// one connection), each once, and kept.
type stmtPool struct {
	db    *sql.DB
	mu    sync.Mutex
	stmts map[string]*sql.Stmt
	// connStmts are the statements transactions prepared on conn, the
	// driver connection (connTx).
	conn      any
	connStmts map[string]driver.Stmt
}

// uninterruptible is the context a SQLite statement runs under: ctx's
// values without its cancellation, or ctx itself once it has ended (then
// database/sql refuses the statement before it reaches SQLite). Under a
// context that can be cancelled, database/sql starts a goroutine per query
// to close its rows when the context ends (Rows.awaitDone) and go-sqlite3
// steps each row in a goroutine of its own (SQLiteRows.Next,
// SQLiteStmt.exec) so as to interrupt it: three goroutines started and
// woken per warm execution each, each wake-up possibly on the other CPU
// (docs/benchmarks.md, "Seventh round"). A SQLite statement is short and
// in memory: what a cancellation must stop is the next one, and each is
// refused once its context has ended — a long list stops between its
// batches (list.go) — while SQLite's busy_timeout bounds a wait for
// another process's lock (sqlite.go). MySQL keeps its contexts: a query
// there crosses the network and a lost connection must not hang.
func uninterruptible(ctx context.Context) context.Context {
	if ctx.Err() != nil {
		return ctx
	}
	return context.WithoutCancel(ctx)
}

// maxStmts bounds the statements kept: queries with lists of varying length
// (IN (?, ?, …)) each have their own text. Beyond it a statement runs
// unprepared.
const maxStmts = 512

func newStmtPool(db *sql.DB) *stmtPool {
	return &stmtPool{db: db, stmts: map[string]*sql.Stmt{}}
}

// keepable tells the statements worth keeping: data, not schema changes
// (migrations run each once).
func keepable(query string) bool {
	q := strings.TrimSpace(query)
	if len(q) < 6 {
		return false
	}
	switch strings.ToUpper(q[:6]) {
	case "SELECT", "INSERT", "UPDATE", "DELETE":
		return true
	}
	return false
}

// lookup returns query's kept statement and whether the pool is full.
func (p *stmtPool) lookup(query string) (*sql.Stmt, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stmts[query], len(p.stmts) >= maxStmts
}

// prepared returns query's kept statement, preparing it on the pool when it
// is new; nil when it is not to be kept (nor prepared: once the pool is
// full, a new query runs unprepared rather than compiled twice).
func (p *stmtPool) prepared(ctx context.Context, query string) *sql.Stmt {
	s, full := p.lookup(query)
	if s != nil || full || !keepable(query) {
		return s
	}
	s, err := p.db.PrepareContext(ctx, query)
	if err != nil {
		// The statement itself fails again when it runs, with its error.
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if kept := p.stmts[query]; kept != nil {
		_ = s.Close()
		return kept
	}
	if len(p.stmts) >= maxStmts {
		_ = s.Close()
		return nil
	}
	p.stmts[query] = s
	return s
}

func (p *stmtPool) PrepareContext(ctx context.Context, query string) (*sql.Stmt, error) {
	ctx = uninterruptible(ctx)
	return p.db.PrepareContext(ctx, query)
}

func (p *stmtPool) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	ctx = uninterruptible(ctx)
	if s := p.prepared(ctx, query); s != nil {
		return s.ExecContext(ctx, args...)
	}
	return p.db.ExecContext(ctx, query, args...)
}

func (p *stmtPool) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	ctx = uninterruptible(ctx)
	if s := p.prepared(ctx, query); s != nil {
		return s.QueryContext(ctx, args...)
	}
	return p.db.QueryContext(ctx, query, args...)
}

func (p *stmtPool) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	ctx = uninterruptible(ctx)
	if s := p.prepared(ctx, query); s != nil {
		return s.QueryRowContext(ctx, args...)
	}
	return p.db.QueryRowContext(ctx, query, args...)
}

// BeginTx is how gorm starts a transaction on a pool that is not *sql.DB.
//
// Not a database/sql transaction: each of those starts a goroutine
// (Tx.awaitDone) to roll back when its context ends, started and woken on
// every execution's insert and end (docs/benchmarks.md, "Eighth round").
// The transaction holds the pool's one connection (sql.Conn), as a
// database/sql transaction does, and runs the driver's own begin, commit
// and rollback on it (Conn.Raw), so go-sqlite3's behaviour (its _txlock,
// the rollback after a failed commit) is unchanged.
func (p *stmtPool) BeginTx(ctx context.Context, opts *sql.TxOptions) (gorm.ConnPool, error) {
	// Begun, a transaction runs to its commit or rollback: each of its
	// statements is refused once ctx has ended, and gorm then rolls back.
	ctx = uninterruptible(ctx)
	conn, err := p.db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	var txOpts driver.TxOptions
	if opts != nil {
		txOpts = driver.TxOptions{Isolation: driver.IsolationLevel(opts.Isolation), ReadOnly: opts.ReadOnly}
	}
	t := &connTx{conn: conn, pool: p}
	err = conn.Raw(func(dc any) error {
		b, ok := dc.(driver.ConnBeginTx)
		if !ok {
			return fmt.Errorf("database driver %T cannot begin a transaction with options", dc)
		}
		t.tx, err = b.BeginTx(ctx, txOpts)
		return err
	})
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	return t, nil
}

// GetDBConn lets gorm's DB() find the *sql.DB.
func (p *stmtPool) GetDBConn() (*sql.DB, error) { return p.db, nil }

// Ping is what gorm.Open checks the connection with.
func (p *stmtPool) Ping() error { return p.db.Ping() }

// driverStmt returns query prepared on the driver connection dc, kept for
// later transactions on it; nil when it is not to be kept.
func (p *stmtPool) driverStmt(ctx context.Context, dc any, query string) (driver.Stmt, error) {
	if !keepable(query) {
		return nil, nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conn != dc {
		// A new driver connection: the last one was discarded (end),
		// its statements finalized before.
		p.closeConnStmtsLocked()
		p.conn, p.connStmts = dc, map[string]driver.Stmt{}
	}
	if s := p.connStmts[query]; s != nil {
		return s, nil
	}
	if len(p.connStmts) >= maxStmts {
		return nil, nil
	}
	pr, ok := dc.(driver.ConnPrepareContext)
	if !ok {
		return nil, nil
	}
	s, err := pr.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	p.connStmts[query] = s
	return s, nil
}

// closeConnStmts finalizes the statements kept on the driver connection:
// SQLite keeps a connection's file (and its exclusive lock) open until then.
func (p *stmtPool) closeConnStmts() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closeConnStmtsLocked()
}

func (p *stmtPool) closeConnStmtsLocked() {
	for _, s := range p.connStmts {
		_ = s.Close()
	}
	p.conn, p.connStmts = nil, nil
}

// connTx is a transaction on the connection it holds: data statements run
// prepared once on that driver connection and kept (driverStmt), queries
// through database/sql on the connection.
type connTx struct {
	conn *sql.Conn
	tx   driver.Tx
	pool *stmtPool
}

func (t *connTx) PrepareContext(ctx context.Context, query string) (*sql.Stmt, error) {
	return t.conn.PrepareContext(uninterruptible(ctx), query)
}

func (t *connTx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	ctx = uninterruptible(ctx)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	named, ok := driverArgs(args)
	if !ok {
		return t.conn.ExecContext(ctx, query, args...)
	}
	var res sql.Result
	err := t.conn.Raw(func(dc any) error {
		s, err := t.pool.driverStmt(ctx, dc, query)
		if err != nil {
			return err
		}
		x, ok := s.(driver.StmtExecContext)
		if !ok {
			return errUnprepared
		}
		res, err = x.ExecContext(ctx, named)
		return err
	})
	if errors.Is(err, errUnprepared) {
		return t.conn.ExecContext(ctx, query, args...)
	}
	return res, err
}

// errUnprepared: the statement is not kept; it runs through database/sql.
var errUnprepared = errors.New("not kept")

// driverArgs converts args as database/sql does for a driver without its
// own checks (go-sqlite3 has none); false for what only database/sql
// handles (named arguments).
func driverArgs(args []any) ([]driver.NamedValue, bool) {
	named := make([]driver.NamedValue, len(args))
	for i, a := range args {
		if _, ok := a.(sql.NamedArg); ok {
			return nil, false
		}
		v, err := driver.DefaultParameterConverter.ConvertValue(a)
		if err != nil {
			return nil, false
		}
		named[i] = driver.NamedValue{Ordinal: i + 1, Value: v}
	}
	return named, true
}

func (t *connTx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return t.conn.QueryContext(uninterruptible(ctx), query, args...)
}

func (t *connTx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return t.conn.QueryRowContext(uninterruptible(ctx), query, args...)
}

func (t *connTx) Commit() error { return t.end(driver.Tx.Commit) }

func (t *connTx) Rollback() error { return t.end(driver.Tx.Rollback) }

// end commits or rolls back and gives the connection back; one left inside
// a transaction (a rollback that failed) is discarded, never handed to the
// next statement.
func (t *connTx) end(how func(driver.Tx) error) error {
	var err error
	_ = t.conn.Raw(func(dc any) error {
		err = how(t.tx)
		if ac, ok := dc.(interface{ AutoCommit() bool }); ok && !ac.AutoCommit() {
			// Finalized first: SQLite closes a connection with
			// statements left as a zombie that keeps the file and its
			// exclusive lock (sqlite.go) open.
			t.pool.closeConnStmts()
			return driver.ErrBadConn
		}
		return nil
	})
	_ = t.conn.Close()
	return err
}
