package db

import (
	"strings"

	"gorm.io/gorm"
)

// The writes of every execution (the counted insert, the end), as fixed
// statements run on the transaction's connection without gorm's statement
// builder: gorm matched each field to its column through reflection and
// built the statement anew on every execution, ~10 % of the all-in-one's
// CPU per warm execution with the allocations it made (docs/benchmarks.md,
// "Eighth round"). The statements are what gorm wrote, so the rows are the
// same (TestColumnLists, TestExecutionWrites).

// execRaw runs one statement on tx's connection pool or transaction, with
// gorm's error translation (duplicate keys), and returns the rows it
// changed.
func execRaw(tx *gorm.DB, query string, args ...any) (int64, error) {
	res, err := tx.Statement.ConnPool.ExecContext(tx.Statement.Context, query, args...)
	if err != nil {
		if t, ok := tx.Dialector.(gorm.ErrorTranslator); ok {
			err = t.Translate(err)
		}
		return 0, err
	}
	return res.RowsAffected()
}

// executionColumns are the columns of executions in executionFields'
// order, quoted (`trigger` is a keyword) the same way for SQLite and MySQL.
const executionColumns = "`id`, `project_id`, `created_at`, `updated_at`, `function_id`, `function_version`, " +
	"`function_alias`, `description`, `status`, `sync`, `input`, `result`, `logs`, `engine`, `started_at`, " +
	"`trigger`, `user_id`"

// executionFields are e's fields in executionColumns' order. database/sql
// binds a pointer's value (NULL for nil), so they serve as arguments too.
func executionFields(e *Execution) []any {
	return []any{&e.ID, &e.ProjectID, &e.CreatedAt, &e.UpdatedAt, &e.FunctionID, &e.FunctionVersion,
		&e.FunctionAlias, &e.Description, &e.Status, &e.Sync, &e.Input, &e.Result, &e.Logs, &e.Engine, &e.StartedAt,
		&e.Trigger, &e.UserID}
}

var insertExecution = "INSERT INTO `executions` (" + executionColumns + ") VALUES (?" +
	strings.Repeat(", ?", strings.Count(executionColumns, ",")) + ")"

// createExecution inserts e as gorm's Create did: created_at set now when
// it is zero.
func createExecution(tx *gorm.DB, e *Execution) error {
	if e.CreatedAt.IsZero() {
		e.CreatedAt = now()
	}
	_, err := execRaw(tx, insertExecution, executionFields(e)...)
	return err
}

// The conditional update that ends a running execution (finish), with or
// without its start (Outcome.StartedAt).
const (
	endExecution = "UPDATE `executions` SET `status` = ?, `result` = ?, `logs` = ?, `updated_at` = ? " +
		"WHERE id = ? AND status = ?"
	endStartedExecution = "UPDATE `executions` SET `status` = ?, `result` = ?, `logs` = ?, `updated_at` = ?, " +
		"`engine` = ?, `started_at` = ? WHERE id = ? AND status = ?"
)

// The count of a function's (version 0) or a function version's
// executions, added to at each execution's insert (countExecution).
const (
	countFunctionExecution = "UPDATE `functions` SET `count` = count + 1, `updated_at` = ? WHERE id = ?"
	countVersionExecution  = "UPDATE `function_versions` SET `count` = count + 1, `updated_at` = ? " +
		"WHERE function_id = ? AND version_number = ?"
)
