package db

import (
	"context"
)

// CreateExecution inserts e, filling ID and CreatedAt.
func (d *DB) CreateExecution(ctx context.Context, e *Execution) error {
	if e.ID == "" {
		e.ID = NewID()
	}
	return translate(d.gorm.WithContext(ctx).Create(e).Error, "Execution", e.ID)
}

// Execution returns an execution in scope.
func (d *DB) Execution(ctx context.Context, s Scope, id string) (*Execution, error) {
	var e Execution
	if err := s.apply(d.gorm.WithContext(ctx)).Where("id = ?", id).Take(&e).Error; err != nil {
		return nil, translate(err, "Execution", id)
	}
	return &e, nil
}

// Executions lists executions in scope. Logs are not loaded: lists never show them.
func (d *DB) Executions(ctx context.Context, s Scope, o ListOptions) ([]Execution, error) {
	return List[Execution](ctx, d, s, o)
}

// DeleteExecution removes an execution.
func (d *DB) DeleteExecution(ctx context.Context, id string) error {
	return translate(d.gorm.WithContext(ctx).Where("id = ?", id).Delete(&Execution{}).Error, "Execution", id)
}

// RunningExecutions counts the running (in flight or queued) executions of
// a function version, for the API's bound on them.
func (d *DB) RunningExecutions(ctx context.Context, functionID string, version int) (int, error) {
	var n int
	err := d.gorm.WithContext(ctx).Raw(runningOfFunction, functionID, version).Row().Scan(&n)
	return n, translate(err, "Execution", "")
}

// RunningCounts counts, in one statement, the running (in flight or
// queued) executions of a function version, in every project, and those of
// a project, for the API's bounds on them. Each count has an index that
// holds what it counts, whatever the number of ended executions: the
// partial index of running executions on SQLite (migration 10), (function_id,
// function_version, status) and (status, project_id) on MySQL (without
// them SQLite, having no statistics, took the project_id index and counted
// by walking every execution the project ever had).
func (d *DB) RunningCounts(ctx context.Context, functionID string, version int, project string) (perFunction, perProject int, err error) {
	err = d.gorm.WithContext(ctx).Raw(d.runningCounts(), functionID, version, project).
		Row().Scan(&perFunction, &perProject)
	return perFunction, perProject, translate(err, "Execution", "")
}

// isRunning selects running executions. The status is in the text, not a
// parameter: SQLite uses a partial index only for a query whose WHERE
// implies the index's, which a parameter's value does not (migration 10).
const isRunning = "status = '" + StatusRunning + "'"

// The two counts, also read with the function (RunnableFunction); their
// arguments are the function, its version and the project.
const runningOfFunction = "SELECT COUNT(*) FROM executions WHERE function_id = ? AND function_version = ? AND " + isRunning

// runningInProject is the count of a project's running executions on each
// database. SQLite, having no statistics, would rather walk the project's
// every execution through the project_id index than the small index of
// running ones (runningIndex), which holds the project after the function:
// INDEXED BY makes it take that one (and fail, not crawl, without it).
var runningInProject = map[string]string{
	"sqlite": "SELECT COUNT(*) FROM executions INDEXED BY " + runningIndex + " WHERE " + isRunning + " AND project_id = ?",
	"mysql":  "SELECT COUNT(*) FROM executions WHERE " + isRunning + " AND project_id = ?",
}

// runningCounts is RunningCounts' statement on d's database.
func (d *DB) runningCounts() string {
	return "SELECT (" + runningOfFunction + "), (" + runningInProject[d.driver] + ")"
}
