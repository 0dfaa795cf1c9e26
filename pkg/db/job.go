package db

import (
	"context"
	"time"

	"gorm.io/gorm"
)

// CreateJob inserts a job.
func (d *DB) CreateJob(ctx context.Context, j *Job) error {
	if j.ID == "" {
		j.ID = NewID()
	}
	return d.changing(ctx, "jobs", actionCreate, func() string { return j.ID }, func(tx *gorm.DB) error {
		return translate(tx.Create(j).Error, "Job", j.ID)
	})
}

// Job returns a job in scope.
func (d *DB) Job(ctx context.Context, s Scope, id string) (*Job, error) {
	var j Job
	if err := s.apply(d.gorm.WithContext(ctx)).Where("id = ?", id).Take(&j).Error; err != nil {
		return nil, translate(err, "Job", id)
	}
	return &j, nil
}

// Jobs lists jobs in scope.
func (d *DB) Jobs(ctx context.Context, s Scope, o ListOptions) ([]Job, error) {
	return List[Job](ctx, d, s, o)
}

// UpdateJob sets columns of a job.
func (d *DB) UpdateJob(ctx context.Context, id string, values map[string]any) error {
	return d.update(ctx, &Job{}, "jobs", "Job", id, values)
}

// DeleteJob removes a job.
func (d *DB) DeleteJob(ctx context.Context, id string) error {
	return d.deleteByID(ctx, &Job{}, "jobs", "Job", id)
}

// DueJobs lists running jobs whose next run is before until, oldest first.
func (d *DB) DueJobs(ctx context.Context, until time.Time, limit int) ([]Job, error) {
	var out []Job
	err := d.gorm.WithContext(ctx).Where("status = ? AND next_execution_time <= ?", StatusRunning, until.UTC()).
		Order("next_execution_time ASC").Limit(limit).Find(&out).Error
	return out, translate(err, "Job", "")
}

// ClaimJobRun moves a due job on to its next run — or to done — only if no
// other process did so first: the UPDATE matches the run time the caller
// read, so of several job handlers exactly one wins each run.
func (d *DB) ClaimJobRun(ctx context.Context, j *Job, next *time.Time, count *int) (bool, error) {
	values := map[string]any{"count": count, "updated_at": now()}
	if next == nil {
		values["status"] = StatusDone
	} else {
		values["next_execution_time"] = next.UTC()
	}
	res := d.gorm.WithContext(ctx).Model(&Job{}).
		Where("id = ? AND status = ? AND next_execution_time = ?", j.ID, StatusRunning, j.NextExecutionTime).Updates(values)
	return res.RowsAffected == 1, translate(res.Error, "Job", j.ID)
}
