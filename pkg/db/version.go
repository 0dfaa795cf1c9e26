package db

import (
	"context"
	"errors"

	"gorm.io/gorm"

	"github.com/qinling-go/qinling/pkg/errdefs"
)

// FunctionVersion returns version n of a function in scope.
func (d *DB) FunctionVersion(ctx context.Context, s Scope, functionID string, n int) (*FunctionVersion, error) {
	var v FunctionVersion
	err := s.apply(d.gorm.WithContext(ctx)).Where("function_id = ? AND version_number = ?", functionID, n).Take(&v).Error
	if err != nil {
		if errors.Is(err, gorm.ErrRecordNotFound) {
			return nil, errdefs.NotFound("FunctionVersion not found [function_id=%s, version_number=%d]", functionID, n)
		}
		return nil, translate(err, "FunctionVersion", functionID)
	}
	return &v, nil
}

// FunctionVersions lists a function's versions by number.
func (d *DB) FunctionVersions(ctx context.Context, s Scope, functionID string) ([]FunctionVersion, error) {
	var out []FunctionVersion
	err := s.apply(d.gorm.WithContext(ctx)).Where("function_id = ?", functionID).Order("version_number ASC").Find(&out).Error
	return out, translate(err, "FunctionVersion", functionID)
}

// ActiveJobs counts the jobs of a function (version < 0: any version) that
// have not ended.
func (d *DB) ActiveJobs(ctx context.Context, functionID string, version int) (int, error) {
	q := d.gorm.WithContext(ctx).Model(&Job{}).Where("function_id = ? AND status NOT IN ?", functionID, []string{StatusDone, StatusCancelled})
	if version >= 0 {
		q = q.Where("function_version = ?", version)
	}
	var n int64
	err := q.Count(&n).Error
	return int(n), translate(err, "Job", "")
}

// References counts what points at a function.
type References struct {
	Webhooks int
	Aliases  int
}

// FunctionReferences counts the webhooks and aliases of a function.
func (d *DB) FunctionReferences(ctx context.Context, functionID string) (References, error) {
	var w, a int64
	if err := d.gorm.WithContext(ctx).Model(&Webhook{}).Where("function_id = ?", functionID).Count(&w).Error; err != nil {
		return References{}, translate(err, "Webhook", "")
	}
	if err := d.gorm.WithContext(ctx).Model(&FunctionAlias{}).Where("function_id = ?", functionID).Count(&a).Error; err != nil {
		return References{}, translate(err, "FunctionAlias", "")
	}
	return References{Webhooks: int(w), Aliases: int(a)}, nil
}

// MaxVersions is how many versions a function may have at once (upstream's
// MAX_VERSION_NUMBER).
const MaxVersions = 10

// CreateFunctionVersion adds the next version of a function: numbers only
// grow, so a deleted version's number is never handed out again (upstream
// reused the latest one). The caller holds the function's version lock.
func (d *DB) CreateFunctionVersion(ctx context.Context, f *Function, description *string) (*FunctionVersion, error) {
	var v *FunctionVersion
	err := d.changing(ctx, "function_versions", actionCreate, func() string { return v.ID }, func(tx *gorm.DB) error {
		var n int64
		if err := tx.Model(&FunctionVersion{}).Where("function_id = ?", f.ID).Count(&n).Error; err != nil {
			return translate(err, "FunctionVersion", f.ID)
		}
		if n >= MaxVersions {
			return errdefs.Forbidden("Can not exceed maximum number(%d) of versions", MaxVersions)
		}
		var cur Function
		if err := tx.Select("latest_version").Where("id = ?", f.ID).Take(&cur).Error; err != nil {
			return translate(err, "Function", f.ID)
		}
		v = &FunctionVersion{
			Base:       Base{ID: NewID(), ProjectID: f.ProjectID},
			FunctionID: f.ID, Description: description, VersionNumber: cur.LatestVersion + 1,
		}
		if err := tx.Create(v).Error; err != nil {
			return translate(err, "FunctionVersion", f.ID)
		}
		return translate(tx.Model(&Function{}).Where("id = ?", f.ID).
			Updates(map[string]any{"latest_version": v.VersionNumber, "updated_at": now()}).Error, "Function", f.ID)
	})
	return v, err
}

// DeleteFunctionVersion removes version n; latest_version stays, so the
// number is not reused.
func (d *DB) DeleteFunctionVersion(ctx context.Context, functionID string, n int) error {
	// The row's ID names it in the notification (outbox.go).
	var id string
	if d.NotificationsEnabled() {
		d.gorm.WithContext(ctx).Model(&FunctionVersion{}).
			Where("function_id = ? AND version_number = ?", functionID, n).Limit(1).Pluck("id", &id)
	}
	return d.changing(ctx, "function_versions", actionDelete, func() string { return id }, func(tx *gorm.DB) error {
		res := tx.Where("function_id = ? AND version_number = ?", functionID, n).Delete(&FunctionVersion{})
		if res.Error != nil {
			return translate(res.Error, "FunctionVersion", functionID)
		}
		if res.RowsAffected == 0 {
			return errdefs.NotFound("FunctionVersion not found [function_id=%s, version_number=%d]", functionID, n)
		}
		return nil
	})
}

// VersionReferences counts what points at one function version.
func (d *DB) VersionReferences(ctx context.Context, functionID string, n int) (References, error) {
	var w, a int64
	if err := d.gorm.WithContext(ctx).Model(&Webhook{}).Where("function_id = ? AND function_version = ?", functionID, n).Count(&w).Error; err != nil {
		return References{}, translate(err, "Webhook", "")
	}
	if err := d.gorm.WithContext(ctx).Model(&FunctionAlias{}).Where("function_id = ? AND function_version = ?", functionID, n).Count(&a).Error; err != nil {
		return References{}, translate(err, "FunctionAlias", "")
	}
	return References{Webhooks: int(w), Aliases: int(a)}, nil
}
