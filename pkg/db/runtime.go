package db

import (
	"context"

	"github.com/qinling-go/qinling/pkg/errdefs"
)

// CreateRuntime inserts rt, filling ID and CreatedAt.
func (d *DB) CreateRuntime(ctx context.Context, rt *Runtime) error {
	if rt.ID == "" {
		rt.ID = NewID()
	}
	return translate(d.gorm.WithContext(ctx).Create(rt).Error, "Runtime", rt.ID)
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

// Runtimes lists the runtimes visible in scope.
func (d *DB) Runtimes(ctx context.Context, s Scope, o ListOptions) ([]Runtime, error) {
	return List[Runtime](ctx, d, s, o)
}

// UpdateRuntime sets the given columns and bumps updated_at.
func (d *DB) UpdateRuntime(ctx context.Context, id string, values map[string]any) error {
	return d.update(ctx, &Runtime{}, "Runtime", id, values)
}

// DeleteRuntime removes a runtime row.
func (d *DB) DeleteRuntime(ctx context.Context, id string) error {
	return translate(d.gorm.WithContext(ctx).Where("id = ?", id).Delete(&Runtime{}).Error, "Runtime", id)
}

// RuntimeInUse reports whether any function (of any project) uses the runtime.
func (d *DB) RuntimeInUse(ctx context.Context, id string) (bool, error) {
	var n int64
	err := d.gorm.WithContext(ctx).Model(&Function{}).Where("runtime_id = ?", id).Count(&n).Error
	return n > 0, translate(err, "Function", "")
}

// update is the shared column update with updated_at; a missing row is a 404.
func (d *DB) update(ctx context.Context, model any, what, id string, values map[string]any) error {
	values["updated_at"] = now()
	res := d.gorm.WithContext(ctx).Model(model).Where("id = ?", id).Updates(values)
	if res.Error != nil {
		return translate(res.Error, what, id)
	}
	if res.RowsAffected == 0 {
		return errdefs.NotFound("%s not found [id=%s]", what, id)
	}
	return nil
}
