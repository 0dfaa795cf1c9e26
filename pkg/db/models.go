package db

import "time"

// Status values, as upstream's qinling/status.py.
const (
	StatusCreating  = "creating"
	StatusAvailable = "available"
	StatusUpgrading = "upgrading"
	StatusError     = "error"
	StatusDeleting  = "deleting"
	StatusRunning   = "running"
	StatusSuccess   = "success"
	StatusFailed    = "failed"
	StatusDone      = "done"
	StatusPaused    = "paused"
	StatusCancelled = "cancelled"
)

// Base holds the columns every table has. UpdatedAt stays NULL until the row
// is first modified, as upstream renders it.
type Base struct {
	ID        string     `gorm:"primaryKey;size:36"`
	ProjectID string     `gorm:"size:80;not null;index"`
	CreatedAt time.Time  `gorm:"not null;index"`
	UpdatedAt *time.Time `gorm:"autoUpdateTime:false"`
}

// Runtime is a runtime image with its pool.
type Runtime struct {
	Base
	Name        *string `gorm:"size:255"`
	Description *string `gorm:"size:1024"` // RuntimeDescriptionSize
	Image       string  `gorm:"size:255;not null"`
	Status      string  `gorm:"size:32;not null"`
	// No gorm defaults on bools: gorm would replace an explicit false with them.
	IsPublic bool `gorm:"not null"`
	Trusted  bool `gorm:"not null"`
}

// DefaultEntry is upstream's entry when a function has none: function main
// of module main (main.py, or main.js on Node.js).
const DefaultEntry = "main.main"

// Function is a function and its current (version 0) code.
type Function struct {
	Base
	Name          *string `gorm:"size:255"`
	Description   *string `gorm:"size:255"`
	RuntimeID     *string `gorm:"size:36;index"`
	CPU           int     `gorm:"not null"`
	MemorySize    int64   `gorm:"not null"`
	Timeout       int     `gorm:"not null"`
	Code          string  `gorm:"type:longtext;not null"` // JSON object, see Code
	Entry         *string `gorm:"size:80"`                // nil or empty: DefaultEntry
	Count         int     `gorm:"not null"`
	TrustID       *string `gorm:"size:80"`
	LatestVersion int     `gorm:"not null"`
	// MinWorkers and MaxWorkers bound the autoscaler for this function's
	// versions (docs/scaling.md); NULL takes [engine]
	// min_workers_per_function and max_workers_per_function.
	MinWorkers *int
	MaxWorkers *int
}

// Execution is one run of a function.
type Execution struct {
	Base
	// The indexes on function_id and status are made by migrations, not
	// tags: they differ by database (migration 10, runningIndexes).
	FunctionID      *string `gorm:"size:36"`
	FunctionVersion int     `gorm:"not null"`
	FunctionAlias   *string `gorm:"size:255"`
	Description     *string `gorm:"size:255"`
	// Status has no index of its own (migration 9): every query on it
	// asks for running executions, which runningIndexes find.
	Status string  `gorm:"size:32;not null"`
	Sync   bool    `gorm:"not null"`
	Input  *string `gorm:"type:longtext"` // JSON object
	Result *string `gorm:"type:longtext"` // JSON object
	Logs   *string `gorm:"type:longtext"`
	// Engine is the engine instance that started the execution and
	// StartedAt when: both stay NULL until a worker is about to receive it
	// (pkg/engine/recovery.go settles executions of vanished engines).
	// Not indexed (migration 8): every query on it also asks for running
	// executions, which their own index finds (migration 10), and each
	// index is one more write per execution.
	Engine    *string    `gorm:"size:255"`
	StartedAt *time.Time ``
	// Trigger says what started the execution (TriggerAPI, TriggerJob,
	// TriggerWebhook) and UserID who, for its usage notification
	// (pkg/db/usage.go); both NULL on rows older than migration 4.
	Trigger *string `gorm:"size:16"`
	UserID  *string `gorm:"size:80"`
}

// What started an execution.
const (
	TriggerAPI     = "api"
	TriggerJob     = "job"
	TriggerWebhook = "webhook"
)

// Job is a cron trigger of a function.
type Job struct {
	Base
	Name               *string    `gorm:"size:255"`
	Pattern            *string    `gorm:"size:32"`
	Status             string     `gorm:"size:32;not null"`
	FirstExecutionTime *time.Time ``
	NextExecutionTime  time.Time  `gorm:"not null;index"`
	Count              *int       ``
	FunctionID         *string    `gorm:"size:36;index"`
	FunctionInput      *string    `gorm:"size:255"`
	FunctionVersion    int        `gorm:"not null"`
	FunctionAlias      *string    `gorm:"size:255"`
	TrustID            *string    `gorm:"size:80"`
}

// Webhook is an unauthenticated URL that runs a function.
type Webhook struct {
	Base
	FunctionID      *string `gorm:"size:36;index"`
	FunctionVersion *int    ``
	FunctionAlias   *string `gorm:"size:255"`
	Description     *string `gorm:"size:255"`
}

// FunctionVersion is a frozen copy of a function's package.
type FunctionVersion struct {
	Base
	FunctionID    string  `gorm:"size:36;not null;uniqueIndex:uq_function_version,priority:1"`
	Description   *string `gorm:"size:255"`
	VersionNumber int     `gorm:"not null;uniqueIndex:uq_function_version,priority:2"`
	Count         int     `gorm:"not null"`
}

// FunctionAlias names a function version.
type FunctionAlias struct {
	Base
	Name            string  `gorm:"size:255;not null"`
	FunctionID      string  `gorm:"size:36;not null"`
	FunctionVersion int     `gorm:"not null"`
	Description     *string `gorm:"size:255"`
}

func (FunctionVersion) TableName() string { return "function_versions" }
func (FunctionAlias) TableName() string   { return "function_aliases" }

// allModels is every table, in creation order.
func allModels() []any {
	return []any{&Runtime{}, &Function{}, &Execution{}, &Job{}, &Webhook{}, &FunctionVersion{}, &FunctionAlias{}}
}
