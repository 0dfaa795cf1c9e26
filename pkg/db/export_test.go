package db

import (
	"context"
	"fmt"
	"strings"

	"gorm.io/gorm"
)

// PlanOfRunningCounts returns the database's plan for RunningCounts, one
// line per row of EXPLAIN QUERY PLAN (SQLite) or EXPLAIN (MySQL), its
// columns joined by spaces.
func PlanOfRunningCounts(ctx context.Context, d *DB, functionID, project string) (string, error) {
	return planOf(ctx, d, func(tx *gorm.DB) *gorm.DB {
		return tx.Raw(d.runningCounts(), functionID, 0, project)
	})
}

// PlanOfStartedEngines is PlanOfRunningCounts for
// StartedExecutionEngines, recovery's query.
func PlanOfStartedEngines(ctx context.Context, d *DB) (string, error) {
	return planOf(ctx, d, func(tx *gorm.DB) *gorm.DB {
		var out []string
		return startedEngines(tx).Pluck("engine", &out)
	})
}

// PlanOfUnstartedAsync is PlanOfRunningCounts for UnstartedAsync, the
// all-in-one's query at start.
func PlanOfUnstartedAsync(ctx context.Context, d *DB) (string, error) {
	return planOf(ctx, d, func(tx *gorm.DB) *gorm.DB {
		var out []Execution
		return unstartedAsync(tx).Find(&out)
	})
}

// PlanOfListRows is PlanOfRunningCounts for the query that loads a list's
// executions by id (list.go).
func PlanOfListRows(ctx context.Context, d *DB, ids []string) (string, error) {
	return planOf(ctx, d, func(tx *gorm.DB) *gorm.DB {
		var rows []Execution
		return rowsByID[Execution](tx, ids).Find(&rows)
	})
}

func planOf(ctx context.Context, d *DB, build func(tx *gorm.DB) *gorm.DB) (string, error) {
	g := d.gorm.WithContext(ctx)
	query := g.ToSQL(build)
	explain := "EXPLAIN "
	if g.Dialector.Name() == "sqlite" {
		explain = "EXPLAIN QUERY PLAN "
	}
	rows, err := g.Raw(explain + query).Rows()
	if err != nil {
		return "", err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return "", err
	}
	var lines []string
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return "", err
		}
		var parts []string
		for i, v := range vals {
			if b, ok := v.([]byte); ok {
				v = string(b)
			}
			parts = append(parts, cols[i]+"="+fmt.Sprint(v))
		}
		lines = append(lines, strings.Join(parts, " "))
	}
	return strings.Join(lines, "\n"), rows.Err()
}

// Pragma returns the value of PRAGMA name on d's connection.
func Pragma(ctx context.Context, d *DB, name string) (string, error) {
	var v string
	err := d.gorm.WithContext(ctx).Raw("PRAGMA " + name).Row().Scan(&v)
	return v, err
}

// IndexesOf names the indexes of table.
func IndexesOf(ctx context.Context, d *DB, table string) ([]string, error) {
	idx, err := d.gorm.WithContext(ctx).Migrator().GetIndexes(table)
	var names []string
	for _, i := range idx {
		names = append(names, i.Name())
	}
	return names, err
}
