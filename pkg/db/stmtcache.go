package db

import (
	"context"
	"database/sql"
	"strings"
	"sync"

	"gorm.io/gorm"
)

// stmtPool is SQLite's connection pool with each statement prepared once
// and kept. gorm's own PrepareStmt prepares a statement first seen inside a
// transaction on that transaction, and database/sql cannot reuse such a
// statement in the next one: every statement of the per-execution
// transactions (the API's insert, the engine's end) was compiled anew each
// time, 7 % of the embedded service's CPU. Here a statement first seen in a
// transaction runs unprepared there, and is prepared on the pool once the
// transaction has ended (SQLite has one connection, which the transaction
// holds until then); from then on each transaction runs it as prepared.
type stmtPool struct {
	db    *sql.DB
	mu    sync.Mutex
	stmts map[string]*sql.Stmt
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

func (p *stmtPool) cached(query string) *sql.Stmt {
	s, _ := p.lookup(query)
	return s
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
func (p *stmtPool) BeginTx(ctx context.Context, opts *sql.TxOptions) (gorm.ConnPool, error) {
	// Begun, a transaction runs to its commit or rollback: each of its
	// statements is refused once ctx has ended, and gorm then rolls back.
	ctx = uninterruptible(ctx)
	tx, err := p.db.BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	return &stmtTx{Tx: tx, pool: p}, nil
}

// GetDBConn lets gorm's DB() find the *sql.DB.
func (p *stmtPool) GetDBConn() (*sql.DB, error) { return p.db, nil }

// Ping is what gorm.Open checks the connection with.
func (p *stmtPool) Ping() error { return p.db.Ping() }

// stmtTx is a transaction that runs the pool's kept statements and notes
// the others, to be prepared on the pool when it ends.
type stmtTx struct {
	*sql.Tx
	pool *stmtPool
	seen []string
}

func (t *stmtTx) stmt(ctx context.Context, query string) *sql.Stmt {
	if s := t.pool.cached(query); s != nil {
		return t.StmtContext(ctx, s)
	}
	if keepable(query) {
		t.seen = append(t.seen, query)
	}
	return nil
}

func (t *stmtTx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	ctx = uninterruptible(ctx)
	if s := t.stmt(ctx, query); s != nil {
		return s.ExecContext(ctx, args...)
	}
	return t.Tx.ExecContext(ctx, query, args...)
}

func (t *stmtTx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	ctx = uninterruptible(ctx)
	if s := t.stmt(ctx, query); s != nil {
		return s.QueryContext(ctx, args...)
	}
	return t.Tx.QueryContext(ctx, query, args...)
}

func (t *stmtTx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	ctx = uninterruptible(ctx)
	if s := t.stmt(ctx, query); s != nil {
		return s.QueryRowContext(ctx, args...)
	}
	return t.Tx.QueryRowContext(ctx, query, args...)
}

func (t *stmtTx) Commit() error {
	err := t.Tx.Commit()
	t.keepSeen()
	return err
}

func (t *stmtTx) Rollback() error {
	err := t.Tx.Rollback()
	t.keepSeen()
	return err
}

// keepSeen prepares on the pool what this transaction ran unprepared, now
// that it no longer holds the connection.
func (t *stmtTx) keepSeen() {
	for _, q := range t.seen {
		t.pool.prepared(context.Background(), q)
	}
	t.seen = nil
}
