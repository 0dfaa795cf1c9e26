package db

import (
	"context"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"
)

// migration is one numbered schema change. Up runs in order, once; each Up
// must be safe to run on a schema that already has its change (gorm's
// migrator checks make that easy), because version 1 creates the tables from
// the current models.
type migration struct {
	Version int
	Name    string
	Up      func(tx *gorm.DB) error
}

// migrations is the schema history. Append; never edit a released entry.
var migrations = []migration{
	{Version: 1, Name: "initial schema (upstream's tables as of migration 011)", Up: func(tx *gorm.DB) error {
		return tx.AutoMigrate(allModels()...)
	}},
	{Version: 2, Name: "executions record the engine that started them, and when", Up: func(tx *gorm.DB) error {
		return tx.AutoMigrate(&Execution{})
	}},
	{Version: 3, Name: "runtimes.description holds a runtime's whole error reason", Up: func(tx *gorm.DB) error {
		// SQLite does not enforce VARCHAR sizes; altering would only copy
		// the table.
		if tx.Dialector.Name() == "sqlite" {
			return nil
		}
		return tx.Migrator().AlterColumn(&Runtime{}, "Description")
	}},
	{Version: 4, Name: "usage per project, function and hour; the notification outbox; executions' trigger and user", Up: func(tx *gorm.DB) error {
		return tx.AutoMigrate(&Execution{}, &UsageHour{}, &OutboxMessage{})
	}},
	{Version: 6, Name: "functions' own minimum and maximum of workers", Up: func(tx *gorm.DB) error {
		return tx.AutoMigrate(&Function{})
	}},
	{Version: 7, Name: "executions indexed by (status, project_id), for the count of a project's running ones", Up: func(tx *gorm.DB) error {
		if tx.Migrator().HasIndex(&Execution{}, ixRunningInProject) {
			return nil
		}
		// Not a tag on the model: project_id is Base's, which every table
		// embeds.
		return tx.Exec("CREATE INDEX " + ixRunningInProject + " ON executions (status, project_id)").Error
	}},
	{Version: 8, Name: "executions.engine loses its index, one write fewer per execution", Up: func(tx *gorm.DB) error {
		return dropIndex(tx, engineIndex)
	}},
	{Version: 9, Name: "executions.status loses its own index: (status, project_id) serves every query on status", Up: func(tx *gorm.DB) error {
		return dropIndex(tx, statusIndex)
	}},
	{Version: 10, Name: "executions' running ones indexed apart on SQLite, no index entry moved when one ends", Up: runningIndexes},
}

// ixRunningInProject serves the API's count of a project's running
// executions (RunningInProject).
const ixRunningInProject = "ix_executions_running_project"

// engineIndex and statusIndex are the indexes gorm named for
// executions.engine up to migration 8 and executions.status up to 9.
const (
	engineIndex = "idx_executions_engine"
	statusIndex = "idx_executions_status"
)

// dropIndex drops an index of executions that databases created before the
// migration doing it have, and newer ones never had.
func dropIndex(tx *gorm.DB, name string) error {
	if !tx.Migrator().HasIndex(&Execution{}, name) {
		return nil
	}
	return tx.Migrator().DropIndex(&Execution{}, name)
}

// LatestVersion is the schema version this build needs.
func LatestVersion() int { return migrations[len(migrations)-1].Version }

// schemaMigration records an applied migration.
type schemaMigration struct {
	Version   int       `gorm:"primaryKey;autoIncrement:false"`
	Name      string    `gorm:"size:255;not null"`
	AppliedAt time.Time `gorm:"not null"`
}

func (schemaMigration) TableName() string { return "qinling_schema_migrations" }

// SchemaVersion returns the highest applied migration (0 for an empty database).
func (d *DB) SchemaVersion(ctx context.Context) (int, error) {
	g := d.gorm.WithContext(ctx)
	if !g.Migrator().HasTable(&schemaMigration{}) {
		return 0, nil
	}
	var v *int
	if err := g.Model(&schemaMigration{}).Select("MAX(version)").Scan(&v).Error; err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	if v == nil {
		return 0, nil
	}
	return *v, nil
}

// Sync applies the migrations the database lacks and returns the versions
// before and after. On MySQL a named lock keeps two processes (two devstack
// nodes, say) from migrating at once.
func (d *DB) Sync(ctx context.Context) (from, to int, err error) {
	if d.driver == "mysql" {
		var got int
		if err := d.gorm.WithContext(ctx).Raw("SELECT GET_LOCK('qinling_db_sync', 120)").Scan(&got).Error; err != nil || got != 1 {
			return 0, 0, fmt.Errorf("db sync: could not take the migration lock: %v", err)
		}
		defer d.gorm.WithContext(context.WithoutCancel(ctx)).Exec("SELECT RELEASE_LOCK('qinling_db_sync')")
	}
	if err := d.gorm.WithContext(ctx).AutoMigrate(&schemaMigration{}); err != nil {
		return 0, 0, fmt.Errorf("db sync: %w", err)
	}
	from, err = d.SchemaVersion(ctx)
	if err != nil {
		return 0, 0, err
	}
	if from > LatestVersion() {
		return from, from, fmt.Errorf("database schema is at version %d, newer than this build knows (%d): upgrade qinling-go", from, LatestVersion())
	}
	for _, m := range migrations {
		if m.Version <= from {
			continue
		}
		// MySQL commits DDL implicitly, so a transaction would not make a
		// migration atomic there; idempotent steps make a retry safe instead.
		if err := m.Up(d.gorm.WithContext(ctx)); err != nil {
			return from, m.Version - 1, fmt.Errorf("db sync: migration %d (%s): %w", m.Version, m.Name, err)
		}
		rec := schemaMigration{Version: m.Version, Name: m.Name, AppliedAt: now()}
		if err := d.gorm.WithContext(ctx).Create(&rec).Error; err != nil {
			return from, m.Version - 1, fmt.Errorf("db sync: record migration %d: %w", m.Version, err)
		}
	}
	return from, LatestVersion(), nil
}

// ErrSchemaOutdated means the database needs `qinling-api db-sync`.
var ErrSchemaOutdated = errors.New("database schema is not up to date: run qinling-api db-sync")

// CheckSchema fails unless the database is exactly at LatestVersion.
func (d *DB) CheckSchema(ctx context.Context) error {
	v, err := d.SchemaVersion(ctx)
	if err != nil {
		return err
	}
	if v != LatestVersion() {
		return fmt.Errorf("%w (database at version %d, this build needs %d)", ErrSchemaOutdated, v, LatestVersion())
	}
	return nil
}

// The indexes that find running executions (runningOfFunction,
// runningInProject, recovery's queries) and a function's executions.
const (
	// loadIndex (function_id, function_version, status) serves the count
	// of a function version's running executions on MySQL; up to
	// migration 10 on SQLite too. functionIndex serves lists and deletes
	// by function on SQLite, runningIndex every query on running ones.
	loadIndex     = "ix_executions_load"
	functionIndex = "ix_executions_function"
	runningIndex  = "ix_executions_running"
)

// runningIndexes is migration 10. On SQLite, an execution's end moved its
// entry in both indexes that held its status, (function_id,
// function_version, status) and (status, project_id), each from the
// running ones to the ended ones, far apart: 4 to 5 of the ~14 pages (WAL
// frames) each warm execution wrote (docs/benchmarks.md, "Ninth round").
// They give way to (function_id, function_version), whose entry never
// changes, and a partial index of the running executions alone, small
// enough that an execution's insert and its end change one page of it.
// MariaDB has no partial indexes: it keeps loadIndex (a tag on Execution up
// to migration 10, so made here on new databases) and (status,
// project_id).
func runningIndexes(tx *gorm.DB) error {
	if tx.Dialector.Name() != "sqlite" {
		return createIndex(tx, loadIndex, "(function_id, function_version, status)")
	}
	for _, name := range []string{loadIndex, ixRunningInProject} {
		if err := dropIndex(tx, name); err != nil {
			return err
		}
	}
	if err := createIndex(tx, functionIndex, "(function_id, function_version)"); err != nil {
		return err
	}
	return createIndex(tx, runningIndex, "(function_id, function_version, project_id) WHERE "+isRunning)
}

// createIndex creates an index of executions unless it exists.
func createIndex(tx *gorm.DB, name, def string) error {
	if tx.Migrator().HasIndex(&Execution{}, name) {
		return nil
	}
	return tx.Exec("CREATE INDEX " + name + " ON executions " + def).Error
}
