package db

import (
	"context"
	"errors"

	"gorm.io/gorm"

	"github.com/qinling-go/qinling/pkg/errdefs"
)

// CreateFunctionAlias inserts an alias; names are unique per project, and so
// is the function version an alias points at (upstream's constraints).
func (d *DB) CreateFunctionAlias(ctx context.Context, a *FunctionAlias) error {
	if a.ID == "" {
		a.ID = NewID()
	}
	return d.changing(ctx, "function_aliases", actionCreate, func() string { return a.ID }, func(tx *gorm.DB) error {
		var n int64
		if err := tx.Model(&FunctionAlias{}).Where("project_id = ? AND name = ?", a.ProjectID, a.Name).Count(&n).Error; err != nil {
			return translate(err, "FunctionAlias", a.Name)
		}
		if n > 0 {
			return errdefs.Invalid("Duplicate entry for function_aliases: name %q already exists.", a.Name)
		}
		if err := tx.Model(&FunctionAlias{}).Where("project_id = ? AND function_id = ? AND function_version = ?",
			a.ProjectID, a.FunctionID, a.FunctionVersion).Count(&n).Error; err != nil {
			return translate(err, "FunctionAlias", a.Name)
		}
		if n > 0 {
			return errdefs.Invalid("Duplicate entry for function_aliases: function %s version %d already has an alias.", a.FunctionID, a.FunctionVersion)
		}
		return translate(tx.Create(a).Error, "function_aliases", a.Name)
	})
}

// FunctionAlias returns the alias called name in project. A name means
// nothing outside its project (two projects may both have "prod"), so there
// is no lookup by name across projects, for admins either: the caller names
// the project.
func (d *DB) FunctionAlias(ctx context.Context, project, name string) (*FunctionAlias, error) {
	var a FunctionAlias
	err := d.gorm.WithContext(ctx).Where("project_id = ? AND name = ?", project, name).Take(&a).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return nil, errdefs.NotFound("FunctionAlias not found [name=%s]", name)
	}
	if err != nil {
		return nil, translate(err, "FunctionAlias", name)
	}
	return &a, nil
}

// FunctionAliases lists aliases in scope.
func (d *DB) FunctionAliases(ctx context.Context, s Scope, o ListOptions) ([]FunctionAlias, error) {
	return List[FunctionAlias](ctx, d, s, o)
}

// UpdateFunctionAlias sets columns of an alias by ID.
func (d *DB) UpdateFunctionAlias(ctx context.Context, id string, values map[string]any) error {
	return d.update(ctx, &FunctionAlias{}, "function_aliases", "FunctionAlias", id, values)
}

// DeleteFunctionAlias removes an alias by ID.
func (d *DB) DeleteFunctionAlias(ctx context.Context, id string) error {
	return d.deleteByID(ctx, &FunctionAlias{}, "function_aliases", "FunctionAlias", id)
}
