package db

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"
	"time"

	mysqldriver "github.com/go-sql-driver/mysql"
	"gorm.io/gorm"
)

// A pipeline is a MySQL transaction whose statements go to the server in
// one round trip: "BEGIN; s1; …; sN; COMMIT" as one multi-statement query
// with its arguments interpolated by the driver (interpolateParams), where
// gorm's Transaction takes N + 2 round trips, each a wake-up of MariaDB and
// of the caller (docs/benchmarks.md, "The real stack"). It serves the
// per-execution transactions: the API's counted insert and the engine's end.
//
// A later statement that must run only if an earlier one changed a row
// says so in SQL (ROW_COUNT(), see finishPipelined), since the client sees
// no result before the whole query has run. The server stops at the first
// statement that fails, inside the transaction, and the driver returns
// that statement's error: the transaction is then rolled back on the same
// connection before it goes back to the pool, and a connection that cannot
// be rolled back is closed, never reused mid-transaction.
//
// Only connections of their own pool (DB.multi) accept several statements
// in one query, so no other query of the service can become several.
type pipeline struct {
	sql  strings.Builder
	args []any
	// n counts the statements, BEGIN first (AllRowsAffected's indices).
	n int
}

func newPipeline() *pipeline {
	p := &pipeline{}
	p.sql.WriteString("BEGIN")
	p.n = 1
	return p
}

// add appends a statement and its arguments, returning its index in the
// pipeline's results.
func (p *pipeline) add(query string, args ...any) int {
	p.sql.WriteString(";\n")
	p.sql.WriteString(query)
	p.args = append(p.args, args...)
	p.n++
	return p.n - 1
}

// openMulti opens the pipelines' own pool of connections that accept
// multi-statement queries, for a MySQL DSN whose parameters the driver
// interpolates; nil otherwise (each pipeline then runs as a gorm
// transaction, as before).
func openMulti(dsn string, maxOpen int) (*sql.DB, error) {
	cfg, err := mysqldriver.ParseDSN(dsn)
	if err != nil {
		return nil, err
	}
	if !cfg.InterpolateParams {
		// An unsafe charset for client-side escaping (config.ParseDatabaseURL):
		// the server must prepare each statement, one at a time.
		return nil, nil
	}
	cfg.MultiStatements = true
	conn, err := mysqldriver.NewConnector(cfg)
	if err != nil {
		return nil, err
	}
	m := sql.OpenDB(conn)
	if maxOpen > 0 {
		m.SetMaxOpenConns(maxOpen)
		m.SetMaxIdleConns(maxOpen)
	}
	m.SetConnMaxIdleTime(time.Hour)
	return m, nil
}

// errNotPipelined: the pipeline was not sent (the driver would not
// interpolate its arguments, e.g. a query larger than max_allowed_packet);
// the caller runs it as a gorm transaction instead.
var errNotPipelined = errors.New("pipeline not sent")

// run sends p and returns each statement's affected rows (BEGIN's first).
// An error is the failed statement's, as the driver returned it.
func (d *DB) run(ctx context.Context, p *pipeline) ([]int64, error) {
	conn, err := d.multi.Conn(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	var affected []int64
	err = conn.Raw(func(dc any) error {
		ex, ok := dc.(driver.ExecerContext)
		chk, ok2 := dc.(driver.NamedValueChecker)
		if !ok || !ok2 {
			return fmt.Errorf("pipeline: driver connection %T cannot run it", dc)
		}
		// What database/sql does to arguments outside Raw: the driver's
		// own conversion (pointers, driver.Valuer).
		args := make([]driver.NamedValue, len(p.args))
		for i, a := range p.args {
			args[i] = driver.NamedValue{Ordinal: i + 1, Value: a}
			if err := chk.CheckNamedValue(&args[i]); err != nil {
				return err
			}
		}
		res, err := ex.ExecContext(ctx, p.sql.String()+";\nCOMMIT", args)
		if err == nil {
			if r, ok := res.(mysqldriver.Result); ok {
				affected = r.AllRowsAffected()
			}
			if len(affected) != p.n+1 {
				return fmt.Errorf("pipeline: %d results for %d statements", len(affected), p.n+1)
			}
			return nil
		}
		if errors.Is(err, driver.ErrSkip) {
			// Refused before anything was sent.
			return errNotPipelined
		}
		// The transaction may be open on this connection: end it here, or
		// have database/sql close the connection (ErrBadConn).
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if _, rerr := ex.ExecContext(rctx, "ROLLBACK", nil); rerr != nil {
			return errors.Join(err, driver.ErrBadConn)
		}
		return err
	})
	if err != nil && !errors.Is(err, errNotPipelined) {
		if t, ok := d.gorm.Dialector.(gorm.ErrorTranslator); ok {
			// Duplicate keys and foreign keys as gorm reports them (translate).
			if te := t.Translate(err); te != err {
				err = te
			}
		}
	}
	return affected, err
}
