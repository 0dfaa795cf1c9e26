package db

import (
	"context"
	"unicode/utf8"

	"gorm.io/gorm"

	"github.com/qinling-go/qinling/pkg/errdefs"
)

// CreateRuntime inserts rt, filling ID and CreatedAt.
func (d *DB) CreateRuntime(ctx context.Context, rt *Runtime) error {
	if rt.ID == "" {
		rt.ID = NewID()
	}
	return d.changing(ctx, "runtimes", actionCreate, func() string { return rt.ID }, func(tx *gorm.DB) error {
		return translate(tx.Create(rt).Error, "Runtime", rt.ID)
	})
}

// Runtime returns a runtime visible in scope: the project's own or a public one.
func (d *DB) Runtime(ctx context.Context, s Scope, id string) (*Runtime, error) {
	var rt Runtime
	q := d.gorm.WithContext(ctx).Where("id = ?", id)
	if !s.All {
		q = q.Where("project_id = ? OR is_public = ?", s.ProjectID, true)
	}
	if err := q.Take(&rt).Error; err != nil {
		return nil, translate(err, "Runtime", id)
	}
	return &rt, nil
}

// CheckAvailable is the one answer for a runtime that cannot take work now
// (creating, upgrading or in error): a conflict, 409, as upstream's
// RuntimeNotAvailableException. It is the runtime's state, not the
// request, that is wrong, and the same request may succeed later.
func (rt *Runtime) CheckAvailable() error {
	if rt.Status != StatusAvailable {
		return errdefs.Conflict("Runtime %s is not available.", rt.ID)
	}
	return nil
}

// RuntimeDescriptionSize is the runtimes.description column's size in
// characters: room for an operator's description (the API allows 255) and
// for the engine's whole reason of a runtime in error, which names the
// images that can run.
const RuntimeDescriptionSize = 1024

// FitRuntimeDescription cuts s to the column, on a character boundary.
func FitRuntimeDescription(s string) string {
	if utf8.RuneCountInString(s) <= RuntimeDescriptionSize {
		return s
	}
	return string([]rune(s)[:RuntimeDescriptionSize])
}

// Runtimes lists the runtimes visible in scope.
func (d *DB) Runtimes(ctx context.Context, s Scope, o ListOptions) ([]Runtime, error) {
	return List[Runtime](ctx, d, s, o)
}

// UpdateRuntime sets the given columns and bumps updated_at.
func (d *DB) UpdateRuntime(ctx context.Context, id string, values map[string]any) error {
	return d.update(ctx, &Runtime{}, "runtimes", "Runtime", id, values)
}

// DeleteRuntime removes a runtime row.
func (d *DB) DeleteRuntime(ctx context.Context, id string) error {
	return d.deleteByID(ctx, &Runtime{}, "runtimes", "Runtime", id)
}

// RuntimeInUse reports whether any function (of any project) uses the runtime.
func (d *DB) RuntimeInUse(ctx context.Context, id string) (bool, error) {
	var n int64
	err := d.gorm.WithContext(ctx).Model(&Function{}).Where("runtime_id = ?", id).Count(&n).Error
	return n > 0, translate(err, "Function", "")
}

// update is the shared column update with updated_at; a missing row is a 404.
// The change is notified as "<resource>.update.end" (outbox.go).
func (d *DB) update(ctx context.Context, model any, table, what, id string, values map[string]any) error {
	values["updated_at"] = now()
	return d.changing(ctx, table, actionUpdate, func() string { return id }, func(tx *gorm.DB) error {
		res := tx.Model(model).Where("id = ?", id).Updates(values)
		if res.Error != nil {
			return translate(res.Error, what, id)
		}
		if res.RowsAffected == 0 {
			return errdefs.NotFound("%s not found [id=%s]", what, id)
		}
		return nil
	})
}

// deleteByID removes a row by ID, notified as "<resource>.delete.end".
func (d *DB) deleteByID(ctx context.Context, model any, table, what, id string) error {
	return d.changing(ctx, table, actionDelete, func() string { return id }, func(tx *gorm.DB) error {
		return translate(tx.Where("id = ?", id).Delete(model).Error, what, id)
	})
}
