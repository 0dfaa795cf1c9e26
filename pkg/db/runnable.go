package db

import (
	"context"
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
func (d *DB) RunnableFunction(ctx context.Context, s Scope, id string, version int, project string, counts bool) (*Runnable, error) {
	var q strings.Builder
	var args []any
	q.WriteString("SELECT functions.*, runtimes.status AS runtime_status")
	if counts {
		q.WriteString(", (" + runningOfFunction + ") AS running_of_function, (" + runningInProject + ") AS running_in_project")
		args = append(args, id, version, StatusRunning, StatusRunning, project)
	}
	q.WriteString(" FROM functions LEFT JOIN runtimes ON runtimes.id = functions.runtime_id WHERE functions.id = ?")
	args = append(args, id)
	if !s.All {
		q.WriteString(" AND functions.project_id = ?")
		args = append(args, s.ProjectID)
	}
	var rows []Runnable
	if err := d.gorm.WithContext(ctx).Raw(q.String()+" LIMIT 1", args...).Scan(&rows).Error; err != nil {
		return nil, translate(err, "Function", id)
	}
	if len(rows) == 0 {
		return nil, translate(gorm.ErrRecordNotFound, "Function", id)
	}
	return &rows[0], nil
}
