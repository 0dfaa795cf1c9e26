package db

import (
	"context"
	"database/sql"
	"errors"
	"strings"

	"gorm.io/gorm"
)

// Runnable is a function as an execution's start reads it: with its
// runtime's status and, when asked, the running executions the API bounds.
type Runnable struct {
	Function
	// RuntimeStatus is nil for a function without a runtime (an image
	// function) and for a runtime that is gone.
	RuntimeStatus *string
	// RunningOfFunction counts the running (in flight or queued)
	// executions of the function version, in every project, and
	// RunningInProject those of the project (RunningCounts).
	RunningOfFunction, RunningInProject int
}

// CheckRuntime is the runtime check of Runtime and Runtime.CheckAvailable
// on the status read with the function: not found when the runtime is
// gone, a conflict when it cannot take work now; nil for an image function.
func (r *Runnable) CheckRuntime() error {
	if r.RuntimeID == nil {
		return nil
	}
	if r.RuntimeStatus == nil {
		return translate(gorm.ErrRecordNotFound, "Runtime", *r.RuntimeID)
	}
	return (&Runtime{Base: Base{ID: *r.RuntimeID}, Status: *r.RuntimeStatus}).CheckAvailable()
}

// RunnableFunction reads function id in scope, its runtime's status and,
// with counts, RunningCounts for version and project, in one statement
// where Function, Runtime and RunningCounts took three: each is a round
// trip to MariaDB on every execution's way in (docs/benchmarks.md, "The
// real stack"). Nothing is kept between calls, so what it returns is what
// the database holds, as those three would have read it.
//
// The row is scanned with database/sql in functionColumns' order, not by
// gorm: gorm matched every column to a field by name through reflection on
// each call, 6 % of the all-in-one's CPU per warm execution
// (docs/benchmarks.md, "Eighth round"). TestColumnLists fails when a
// column of Function is missing from the list.
func (d *DB) RunnableFunction(ctx context.Context, s Scope, id string, version int, project string, counts bool) (*Runnable, error) {
	var q strings.Builder
	var args []any
	q.WriteString("SELECT " + functionColumns + ", runtimes.status")
	if counts {
		q.WriteString(", (" + runningOfFunction + "), (" + runningInProject[d.driver] + ")")
		args = append(args, id, version, project)
	}
	q.WriteString(" FROM functions LEFT JOIN runtimes ON runtimes.id = functions.runtime_id WHERE functions.id = ?")
	args = append(args, id)
	if !s.All {
		q.WriteString(" AND functions.project_id = ?")
		args = append(args, s.ProjectID)
	}
	q.WriteString(" LIMIT 1")
	var r Runnable
	dest := append(functionFields(&r.Function), &r.RuntimeStatus)
	if counts {
		dest = append(dest, &r.RunningOfFunction, &r.RunningInProject)
	}
	err := d.gorm.ConnPool.QueryRowContext(ctx, q.String(), args...).Scan(dest...)
	if errors.Is(err, sql.ErrNoRows) {
		err = gorm.ErrRecordNotFound
	}
	if err != nil {
		return nil, translate(err, "Function", id)
	}
	return &r, nil
}

// functionColumns are the columns of functions in functionFields' order.
const functionColumns = "functions.id, functions.project_id, functions.created_at, functions.updated_at, " +
	"functions.name, functions.description, functions.runtime_id, functions.cpu, functions.memory_size, " +
	"functions.timeout, functions.code, functions.entry, functions.count, functions.trust_id, " +
	"functions.latest_version, functions.min_workers, functions.max_workers"

// functionFields are the scan destinations of functionColumns in f.
func functionFields(f *Function) []any {
	return []any{&f.ID, &f.ProjectID, &f.CreatedAt, &f.UpdatedAt,
		&f.Name, &f.Description, &f.RuntimeID, &f.CPU, &f.MemorySize,
		&f.Timeout, &f.Code, &f.Entry, &f.Count, &f.TrustID,
		&f.LatestVersion, &f.MinWorkers, &f.MaxWorkers}
}
