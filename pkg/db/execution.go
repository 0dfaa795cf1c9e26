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
	var n int64
	err := d.gorm.WithContext(ctx).Model(&Execution{}).
		Where("function_id = ? AND function_version = ? AND status = ?", functionID, version, StatusRunning).Count(&n).Error
	return int(n), translate(err, "Execution", "")
}

// RunningCounts counts, in one statement, the running (in flight or
// queued) executions of a function version, in every project, and those of
// a project, for the API's bounds on them. Each count has an index that
// holds exactly what it counts: (function_id, function_version, status)
// and (status, project_id) (migration 7; without it SQLite, having no
// statistics, took the project_id index and counted by walking every
// execution the project ever had, a cost that grew with each one).
func (d *DB) RunningCounts(ctx context.Context, functionID string, version int, project string) (perFunction, perProject int, err error) {
	err = d.gorm.WithContext(ctx).Raw(runningCounts, functionID, version, StatusRunning, StatusRunning, project).
		Row().Scan(&perFunction, &perProject)
	return perFunction, perProject, translate(err, "Execution", "")
}

// The two counts, also read with the function (RunnableFunction).
const (
	runningOfFunction = "SELECT COUNT(*) FROM executions WHERE function_id = ? AND function_version = ? AND status = ?"
	runningInProject  = "SELECT COUNT(*) FROM executions WHERE status = ? AND project_id = ?"
	runningCounts     = "SELECT (" + runningOfFunction + "), (" + runningInProject + ")"
)
