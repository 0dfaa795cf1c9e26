package db

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"gorm.io/gorm"
)

// Code is a function's code descriptor, stored as JSON in functions.code.
type Code struct {
	Source string     `json:"source"`
	MD5Sum string     `json:"md5sum,omitempty"`
	Image  string     `json:"image,omitempty"`
	Swift  *SwiftCode `json:"swift,omitempty"`
}

// SwiftCode locates a package in the owner's Swift account. ETag is the
// object's when the function was created or last updated: the engine runs
// those bytes only (storage/swiftcode).
type SwiftCode struct {
	Container string `json:"container"`
	Object    string `json:"object"`
	ETag      string `json:"etag,omitempty"`
}

// Code sources.
const (
	SourcePackage = "package"
	SourceSwift   = "swift"
	SourceImage   = "image"
)

// ParsedCode decodes the stored code descriptor.
func (f *Function) ParsedCode() Code {
	var c Code
	_ = json.Unmarshal([]byte(f.Code), &c) // written only by SetCode
	return c
}

// SetCode encodes c into the stored column.
func (f *Function) SetCode(c Code) {
	b, _ := json.Marshal(c) // plain strings only: cannot fail
	f.Code = string(b)
}

// CreateFunction inserts f, filling ID and CreatedAt.
func (d *DB) CreateFunction(ctx context.Context, f *Function) error {
	if f.ID == "" {
		f.ID = NewID()
	}
	return d.changing(ctx, "functions", actionCreate, func() string { return f.ID }, func(tx *gorm.DB) error {
		return translate(tx.Create(f).Error, "Function", f.ID)
	})
}

// Function returns a function in scope.
func (d *DB) Function(ctx context.Context, s Scope, id string) (*Function, error) {
	var f Function
	if err := s.apply(d.gorm.WithContext(ctx)).Where("id = ?", id).Take(&f).Error; err != nil {
		return nil, translate(err, "Function", id)
	}
	return &f, nil
}

// Functions lists functions in scope.
func (d *DB) Functions(ctx context.Context, s Scope, o ListOptions) ([]Function, error) {
	return List[Function](ctx, d, s, o)
}

// UpdateFunction sets the given columns and bumps updated_at.
func (d *DB) UpdateFunction(ctx context.Context, id string, values map[string]any) error {
	return d.update(ctx, &Function{}, "functions", "Function", id, values)
}

// DeleteFunction removes a function row (its versions cascade).
func (d *DB) DeleteFunction(ctx context.Context, id string) error {
	return d.changing(ctx, "functions", actionDelete, func() string { return id }, func(tx *gorm.DB) error {
		if err := tx.Where("function_id = ?", id).Delete(&FunctionVersion{}).Error; err != nil {
			return translate(err, "Function", id)
		}
		return translate(tx.Where("id = ?", id).Delete(&Function{}).Error, "Function", id)
	})
}

// CountExecution adds one to the execution count of a function version and
// bumps its updated_at, which is what idle expiry measures. A single UPDATE
// is atomic, so upstream's compare-and-swap retry loop is not needed.
func (d *DB) CountExecution(ctx context.Context, functionID string, version int) error {
	return countExecution(d.gorm.WithContext(ctx), functionID, version)
}

// CreateCountedExecution counts e's run of its function version
// (CountExecution) and inserts e (CreateExecution) in one transaction: one
// commit instead of two on every execution's way in (docs/benchmarks.md,
// "The warm path").
func (d *DB) CreateCountedExecution(ctx context.Context, e *Execution) error {
	if e.ID == "" {
		e.ID = NewID()
	}
	fn := ""
	if e.FunctionID != nil {
		fn = *e.FunctionID
	}
	if d.multi != nil {
		if e.CreatedAt.IsZero() {
			e.CreatedAt = now()
		}
		p := newPipeline()
		count, args := countStatement(fn, e.FunctionVersion)
		p.add(count, args...)
		p.add(insertExecution, executionFields(e)...)
		_, err := d.run(ctx, p)
		if !errors.Is(err, errNotPipelined) {
			return translate(err, "Execution", e.ID)
		}
	}
	return translate(d.writeTx(ctx, func(tx *gorm.DB) error {
		if err := countExecution(tx, fn, e.FunctionVersion); err != nil {
			return err
		}
		return translate(createExecution(tx, e), "Execution", e.ID)
	}), "Execution", e.ID)
}

// WithdrawExecution undoes a start that never reached an engine: it deletes
// execution id and takes back the one CountExecution added to its function
// version, both or neither.
func (d *DB) WithdrawExecution(ctx context.Context, id, functionID string, version int) error {
	return translate(d.gorm.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		del := tx.Where("id = ?", id).Delete(&Execution{})
		if del.Error != nil || del.RowsAffected == 0 {
			return translate(del.Error, "Execution", id)
		}
		q, what := counted(tx, functionID, version)
		return translate(q.Where("count > 0").Update("count", gorm.Expr("count - 1")).Error, what, functionID)
	}), "Execution", id)
}

func countExecution(tx *gorm.DB, functionID string, version int) error {
	count, args := countStatement(functionID, version)
	_, err := execRaw(tx, count, args...)
	if version == 0 {
		return translate(err, "Function", functionID)
	}
	return translate(err, "FunctionVersion", functionID)
}

// countStatement is the UPDATE adding an execution to the count of a
// function (version 0) or of a function version, with its arguments: the
// same statement in a transaction and in a pipeline.
func countStatement(functionID string, version int) (string, []any) {
	if version == 0 {
		return countFunctionExecution, []any{now(), functionID}
	}
	return countVersionExecution, []any{now(), functionID, version}
}

// counted selects the row holding a function version's execution count,
// and names its kind for errors.
func counted(tx *gorm.DB, functionID string, version int) (*gorm.DB, string) {
	if version == 0 {
		return tx.Model(&Function{}).Where("id = ?", functionID), "Function"
	}
	return tx.Model(&FunctionVersion{}).Where("function_id = ? AND version_number = ?", functionID, version), "FunctionVersion"
}

// SetUpdatedAt sets a function's updated_at; tests use it to age a function.
func (d *DB) SetUpdatedAt(ctx context.Context, id string, t time.Time) error {
	return translate(d.gorm.WithContext(ctx).Model(&Function{}).Where("id = ?", id).Update("updated_at", t.UTC()).Error, "Function", id)
}
