package db

import "context"

// FunctionVersion returns version n of a function in scope.
func (d *DB) FunctionVersion(ctx context.Context, s Scope, functionID string, n int) (*FunctionVersion, error) {
	var v FunctionVersion
	err := s.apply(d.gorm.WithContext(ctx)).Where("function_id = ? AND version_number = ?", functionID, n).Take(&v).Error
	if err != nil {
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
