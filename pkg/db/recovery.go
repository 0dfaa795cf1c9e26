package db

import (
	"context"
	"time"

	"gorm.io/gorm"
)

// StartExecution records that engine is about to hand a running execution to
// a worker. It succeeds (true) only for the first engine to do so: an
// execution started once is never started again, whoever else receives its
// request later (a redelivered message, a replay after a restart).
func (d *DB) StartExecution(ctx context.Context, id, engine string) (bool, error) {
	return d.StartExecutionAt(ctx, id, engine, now())
}

// StartExecutionAt is StartExecution with the start time the caller
// chose, so that it knows the row's started_at without reading it back
// (Outcome.Read).
func (d *DB) StartExecutionAt(ctx context.Context, id, engine string, at time.Time) (bool, error) {
	var started bool
	err := d.writeOne(ctx, func(tx *gorm.DB) error {
		// Written out, not built with Updates: it runs once per execution,
		// and gorm's builder cost about half of it (docs/benchmarks.md,
		// "One round trip per transaction").
		res := tx.Exec("UPDATE executions SET engine = ?, started_at = ? WHERE id = ? AND status = ? AND engine IS NULL",
			engine, at, id, StatusRunning)
		started = res.RowsAffected > 0
		return res.Error
	})
	return started && err == nil, translate(err, "Execution", id)
}

// StartedExecutionEngines lists the engine instances that hold running
// executions they started.
func (d *DB) StartedExecutionEngines(ctx context.Context) ([]string, error) {
	var out []string
	err := startedEngines(d.gorm.WithContext(ctx)).Pluck("engine", &out).Error
	return out, translate(err, "Execution", "")
}

// startedEngines selects the engines of running executions, found through
// the index of running ones (SQLite; isRunning) or (status, project_id)
// (MySQL): engine has none (migration 8), nor status alone (migration 9).
func startedEngines(tx *gorm.DB) *gorm.DB {
	return tx.Model(&Execution{}).Where(isRunning + " AND engine IS NOT NULL").Distinct("engine")
}

// EndEngineExecutions ends every running execution that engine started as
// error with result, and returns how many it ended.
func (d *DB) EndEngineExecutions(ctx context.Context, engine, result string) (int64, error) {
	return d.endAll(ctx, result, isRunning+" AND engine = ?", engine)
}

// endAll ends the running executions that match where as error with
// result, each through Finish, so each is counted in the usage rollup and
// notified exactly once, whoever else ends it at the same time.
func (d *DB) endAll(ctx context.Context, result string, where string, args ...any) (int64, error) {
	var ids []string
	if err := d.gorm.WithContext(ctx).Model(&Execution{}).Where(where, args...).Pluck("id", &ids).Error; err != nil {
		return 0, translate(err, "Execution", "")
	}
	var n int64
	for _, id := range ids {
		done, err := d.Finish(ctx, id, Outcome{Status: StatusError, Result: &result})
		if err != nil {
			return n, err
		}
		if done {
			n++
		}
	}
	return n, nil
}

// EndUnstartedSync ends every running synchronous execution that no engine
// started as error with result. Only for a process that knows no caller
// waits for them any more (the all-in-one at start).
func (d *DB) EndUnstartedSync(ctx context.Context, result string) (int64, error) {
	return d.endAll(ctx, result, isRunning+" AND engine IS NULL AND sync = ?", true)
}

// UnstartedAsync lists the running asynchronous executions no engine has
// started, oldest first: the all-in-one's queue of create_execution requests.
func (d *DB) UnstartedAsync(ctx context.Context) ([]Execution, error) {
	var out []Execution
	err := unstartedAsync(d.gorm.WithContext(ctx)).Find(&out).Error
	return out, translate(err, "Execution", "")
}

// unstartedAsync selects UnstartedAsync's executions.
func unstartedAsync(tx *gorm.DB) *gorm.DB {
	return tx.Model(&Execution{}).Omit("logs", "result").
		Where(isRunning+" AND engine IS NULL AND sync = ?", false).Order("created_at, id")
}
