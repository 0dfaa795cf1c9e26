package db

import (
	"context"
	"errors"
	"fmt"
	"time"

	mysqldriver "github.com/go-sql-driver/mysql"
	"gorm.io/gorm"
)

// UsageHour is the usage rollup: what one function of one project used in
// one hour (UTC), counted in the transaction that finishes each execution
// (finish), so an execution is counted once whoever finishes it and
// however often its request was delivered. Rows have no foreign keys:
// usage outlives its executions and functions. Amounts are integers so that
// sums are exact whatever the database.
type UsageHour struct {
	ProjectID  string    `gorm:"primaryKey;size:80"`
	FunctionID string    `gorm:"primaryKey;size:36"`
	Hour       time.Time `gorm:"primaryKey"`
	Executions int64     `gorm:"not null"`
	Succeeded  int64     `gorm:"not null"`
	// Failed counts failed and error executions.
	Failed     int64 `gorm:"not null"`
	DurationMS int64 `gorm:"column:duration_ms;not null"`
	CPUMS      int64 `gorm:"column:cpu_ms;not null"`
	// MemoryKiBMS is memory_size in KiB × duration in ms: GB-seconds
	// without rounding (GBSeconds).
	MemoryKiBMS int64 `gorm:"column:memory_kib_ms;not null"`
}

func (UsageHour) TableName() string { return "usage_hourly" }

// Usage is what one execution used, as its engine measured it. An execution
// that an engine did not see to its end (its engine died, no engine took it)
// used nothing that was measured: all zero.
type Usage struct {
	// DurationMS is the function's own run, the result's "duration".
	DurationMS int64
	CPUMS      int64
	// PeakMemoryBytes is the most memory the worker held during the run
	// (0: unknown).
	PeakMemoryBytes int64
	// MemorySize is the function's memory_size when it ran, in bytes.
	MemorySize int64
	// WaitMS is the time before a worker took it, ColdStartMS the part of
	// it spent specialising a worker (ColdStart: one was specialised).
	WaitMS      int64
	ColdStartMS int64
	ColdStart   bool
}

// MemoryKiBMS is the execution's memory_size × duration (see UsageHour).
func (u Usage) MemoryKiBMS() int64 { return u.MemorySize / 1024 * u.DurationMS }

// GBSeconds converts KiB-milliseconds into GB-seconds (GiB, as Lambda bills).
func GBSeconds(kibMS int64) float64 { return float64(kibMS) / (1 << 20) / 1000 }

// Outcome is how an execution ended.
type Outcome struct {
	Status       string
	Result, Logs *string
	Usage        Usage
	// Read is the execution as the finisher read it before running it,
	// if it did, with Engine and StartedAt as the finisher recorded them
	// (StartExecutionAt): what the row holds, once the end's own columns
	// are set, since nothing but a start and an end changes a running
	// execution. The end transaction then reads neither the row (for the
	// usage rollup and the notification) nor, with Function, the runtime
	// (for the notification): two statements fewer per execution.
	Read *Execution
	// Function is the function as the finisher ran it, if it read it.
	Function *Function
	// End is when it ended, the row's updated_at; zero is now. A finisher
	// that answers with the outcome it stored sets it, so that its answer
	// and the row agree.
	End time.Time
	// StartedAt, when set, is when StartedBy (an engine instance) started
	// an execution it did not record as started then (StartExecution):
	// stored with its end, so the ended row is the same either way.
	StartedBy string
	StartedAt time.Time
}

// FinishExecution stores the outcome of a running execution with no
// measured usage (see Finish).
func (d *DB) FinishExecution(ctx context.Context, id, status string, result, logs *string) (bool, error) {
	return d.Finish(ctx, id, Outcome{Status: status, Result: result, Logs: logs})
}

// Finish stores the outcome of a running execution, counts it in the usage
// rollup and, with notifications on, queues its function.execution.end, all
// in one transaction. It changes nothing when the execution is no longer
// running (deleted, or already finished by someone else), and reports
// whether it did.
func (d *DB) Finish(ctx context.Context, id string, o Outcome) (bool, error) {
	var done bool
	var err error
	// Executions of one function ending in the same hour add to one usage
	// row: InnoDB may pick one of two such transactions as a deadlock
	// victim, and that one is simply tried again (it changed nothing).
	for attempt := 1; ; attempt++ {
		done, err = d.finishPipelined(ctx, id, o)
		if errors.Is(err, errNotPipelined) {
			err = d.writeTx(ctx, func(tx *gorm.DB) error {
				done, err = d.finish(ctx, tx, id, o)
				return err
			})
		}
		if err == nil || attempt == finishAttempts || !lockConflict(err) {
			break
		}
	}
	// A write that did not commit (its batch's commit failed) did nothing.
	return done && err == nil, translate(err, "Execution", id)
}

// finishAttempts bounds Finish's retries after a lock conflict.
const finishAttempts = 5

// lockConflict tells a MySQL deadlock or lock wait timeout, after which a
// transaction may simply run again.
func lockConflict(err error) bool {
	var me *mysqldriver.MySQLError
	return errors.As(err, &me) && (me.Number == 1213 || me.Number == 1205)
}

func (d *DB) finish(ctx context.Context, tx *gorm.DB, id string, o Outcome) (bool, error) {
	end := o.End
	if end.IsZero() {
		end = now()
	}
	// The conditional update is the guard: on MySQL it locks the row, so a
	// second finisher waits and then finds it no longer running.
	var changed int64
	var err error
	if o.StartedAt.IsZero() {
		changed, err = execRaw(tx, endExecution, o.Status, o.Result, o.Logs, end, id, StatusRunning)
	} else {
		changed, err = execRaw(tx, endStartedExecution, o.Status, o.Result, o.Logs, end, o.StartedBy, o.StartedAt, id, StatusRunning)
	}
	if err != nil || changed == 0 {
		return false, err
	}
	var e Execution
	if read := ended(id, o, end); read != nil {
		e = *read
	} else if err := tx.Omit("input", "result", "logs").Where("id = ?", id).Take(&e).Error; err != nil {
		return false, err
	}
	if err := addUsage(tx, &e, o, end); err != nil {
		return false, err
	}
	return true, d.notifyExecutionEnd(ctx, tx, &e, ranFunction(&e, o), o.Usage, end)
}

// ended is the execution as its end leaves it, from what its finisher read
// (Outcome.Read); nil if it read nothing.
func ended(id string, o Outcome, end time.Time) *Execution {
	if o.Read == nil || o.Read.ID != id {
		return nil
	}
	e := *o.Read
	e.Input, e.Status, e.UpdatedAt = nil, o.Status, &end
	if !o.StartedAt.IsZero() {
		e.Engine, e.StartedAt = &o.StartedBy, &o.StartedAt
	}
	return &e
}

// ranFunction is the function e ran, as its finisher read it; nil if not.
func ranFunction(e *Execution, o Outcome) *Function {
	if o.Function != nil && e.FunctionID != nil && o.Function.ID == *e.FunctionID {
		return o.Function
	}
	return nil
}

// finishPipelined is finish in one round trip (pipeline.go): the end's
// UPDATE, then the usage upsert and the notification's outbox row, each
// only if the statement before it changed a row (ROW_COUNT(), so nothing
// but the end's own guard decides), then COMMIT. It needs the execution as
// its finisher read it (and the function, with notifications on);
// otherwise, or on SQLite, it returns errNotPipelined and finish runs.
func (d *DB) finishPipelined(ctx context.Context, id string, o Outcome) (bool, error) {
	if d.multi == nil {
		return false, errNotPipelined
	}
	end := o.End
	if end.IsZero() {
		end = now()
	}
	e := ended(id, o, end)
	if e == nil || (d.publisher != "" && ranFunction(e, o) == nil) {
		return false, errNotPipelined
	}
	p := newPipeline()
	var guard int
	if o.StartedAt.IsZero() {
		guard = p.add(endExecution, o.Status, o.Result, o.Logs, end, id, StatusRunning)
	} else {
		guard = p.add(endStartedExecution, o.Status, o.Result, o.Logs, end, o.StartedBy, o.StartedAt, id, StatusRunning)
	}
	// ROW_COUNT() is the statement before's: the end's 1 (or 0: not
	// running any more), then the upsert's 1 or 2 (0 only if it did not run).
	p.add(usageInsertIf+usageConflict["mysql"]+usageAdd, usageArgs(e, o, end)...)
	if d.publisher != "" {
		m, err := d.outboxMessage(executionContext(ctx, e), "function.execution.end", executionEndPayload(e, ranFunction(e, o).RuntimeID, o.Usage, end))
		if err != nil {
			return false, err
		}
		p.add("INSERT INTO notification_outbox (message_id, priority, message, created_at) SELECT ?, ?, ?, ? FROM DUAL WHERE ROW_COUNT() > 0",
			m.MessageID, m.Priority, m.Message, m.CreatedAt)
	}
	affected, err := d.run(ctx, p)
	if err != nil {
		return false, err
	}
	return affected[guard] > 0, nil
}

// addUsage adds one finished execution to its hour's row.
func addUsage(tx *gorm.DB, e *Execution, o Outcome, end time.Time) error {
	// One statement, its conflict clause per database, rather than gorm's upsert
	// builder, which cost more than the upsert itself on the warm path
	// (BenchmarkFinish). An unqualified column in the update is the stored
	// row's value on both SQLite and MySQL.
	conflict, known := usageConflict[tx.Dialector.Name()]
	if !known {
		return fmt.Errorf("usage rollup: no upsert for database %q", tx.Dialector.Name())
	}
	return tx.Exec(usageInsert+conflict+usageAdd, usageArgs(e, o, end)...).Error
}

// usageArgs are the usage upsert's arguments: the row, then the amounts
// added to a stored one.
func usageArgs(e *Execution, o Outcome, end time.Time) []any {
	var ok, failed int64
	if o.Status == StatusSuccess {
		ok = 1
	} else {
		failed = 1
	}
	u := o.Usage
	adds := []any{int64(1), ok, failed, u.DurationMS, u.CPUMS, u.MemoryKiBMS()}
	args := append([]any{e.ProjectID, deref(e.FunctionID), end.Truncate(time.Hour).UTC()}, adds...)
	return append(args, adds...)
}

// The usage upsert: the row of one execution, or these amounts added to the
// stored row, with each database's words for the conflict in between.
// usageInsertIf inserts (or adds) only if the statement before changed a
// row (MySQL; finishPipelined).
const (
	usageColumns  = "INSERT INTO usage_hourly (project_id, function_id, hour, executions, succeeded, failed, duration_ms, cpu_ms, memory_kib_ms) "
	usageInsert   = usageColumns + "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
	usageInsertIf = usageColumns + "SELECT ?, ?, ?, ?, ?, ?, ?, ?, ? FROM DUAL WHERE ROW_COUNT() > 0 "
	usageAdd      = "executions = executions + ?, succeeded = succeeded + ?, failed = failed + ?, " +
		"duration_ms = duration_ms + ?, cpu_ms = cpu_ms + ?, memory_kib_ms = memory_kib_ms + ?"
)

var usageConflict = map[string]string{
	"sqlite": "ON CONFLICT (project_id, function_id, hour) DO UPDATE SET ",
	"mysql":  "ON DUPLICATE KEY UPDATE ",
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// UsageTotal is the usage of one function of one project over a period.
type UsageTotal struct {
	ProjectID   string
	FunctionID  string
	Executions  int64
	Succeeded   int64
	Failed      int64
	DurationMS  int64 `gorm:"column:duration_ms"`
	CPUMS       int64 `gorm:"column:cpu_ms"`
	MemoryKiBMS int64 `gorm:"column:memory_kib_ms"`
}

// UsageBetween sums the rollup per project and function over the hours that
// overlap [start, end), in scope, ordered by project and function.
func (d *DB) UsageBetween(ctx context.Context, s Scope, start, end time.Time) ([]UsageTotal, error) {
	return d.usageTotals(s.apply(d.gorm.WithContext(ctx).Model(&UsageHour{})).
		Where("hour > ? AND hour < ?", start.UTC().Add(-time.Hour), end.UTC()))
}

// UsageSinceEver sums the whole rollup per project and function: every
// execution ever finished, deleted ones included, so each figure only grows
// (the usage counters of pkg/metrics are read from it).
func (d *DB) UsageSinceEver(ctx context.Context) ([]UsageTotal, error) {
	return d.usageTotals(d.gorm.WithContext(ctx).Model(&UsageHour{}))
}

func (d *DB) usageTotals(q *gorm.DB) ([]UsageTotal, error) {
	var out []UsageTotal
	err := q.Select("project_id, function_id, SUM(executions) AS executions, SUM(succeeded) AS succeeded, " +
		"SUM(failed) AS failed, SUM(duration_ms) AS duration_ms, SUM(cpu_ms) AS cpu_ms, SUM(memory_kib_ms) AS memory_kib_ms").
		Group("project_id, function_id").Order("project_id, function_id").Scan(&out).Error
	return out, translate(err, "Usage", "")
}
