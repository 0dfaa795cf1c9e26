package db

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestMigrations_DropIndexes: a database synced before migration 8 (9) has
// executions.engine (status) indexed and loses the index; a new one never
// has it. A status alone is still found through (status, project_id).
func TestMigrations_DropIndexes(t *testing.T) {
	for _, tc := range []struct {
		name    string
		index   string
		columns string
		version int
	}{
		{name: "engine, new database", index: engineIndex},
		{name: "engine, database synced before migration 8", index: engineIndex, columns: "engine", version: 8},
		{name: "status, new database", index: statusIndex},
		{name: "status, database synced before migration 9", index: statusIndex, columns: "status", version: 9},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			d := syncedSQLite(t)
			if tc.version > 0 {
				// As an older build left it.
				if !d.gorm.Migrator().HasIndex(&Execution{}, tc.index) {
					require.NoError(t, d.gorm.Exec("CREATE INDEX "+tc.index+" ON executions ("+tc.columns+")").Error)
				}
				require.NoError(t, d.gorm.Where("version >= ?", tc.version).Delete(&schemaMigration{}).Error)
			}
			_, to, err := d.Sync(ctx)
			require.NoError(t, err)
			require.Equal(t, LatestVersion(), to)
			require.False(t, d.gorm.Migrator().HasIndex(&Execution{}, tc.index))
			require.True(t, d.gorm.Migrator().HasIndex(&Execution{}, runningIndex), "running executions are found by status")
		})
	}
}

// TestMigrations_RunningIndexes: on SQLite, a database synced before
// migration 10 loses the two indexes whose entries an execution's end
// moved and gains (function_id, function_version) and the partial index of
// running executions; a new one has the same. (MySQL: the integration
// test TestMySQL_ExecutionIndexes.)
func TestMigrations_RunningIndexes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		before bool
	}{
		{name: "new database"},
		{name: "database synced before migration 10", before: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			d := syncedSQLite(t)
			m := d.gorm.Migrator()
			if tc.before {
				// As an older build left it.
				require.NoError(t, d.gorm.Exec("DROP INDEX "+runningIndex).Error)
				require.NoError(t, d.gorm.Exec("DROP INDEX "+functionIndex).Error)
				require.NoError(t, d.gorm.Exec("CREATE INDEX "+loadIndex+" ON executions (function_id, function_version, status)").Error)
				require.NoError(t, d.gorm.Exec("CREATE INDEX "+ixRunningInProject+" ON executions (status, project_id)").Error)
				require.NoError(t, d.gorm.Where("version >= ?", 10).Delete(&schemaMigration{}).Error)
			}
			_, to, err := d.Sync(ctx)
			require.NoError(t, err)
			require.Equal(t, LatestVersion(), to)
			for _, ix := range []string{loadIndex, ixRunningInProject} {
				require.False(t, m.HasIndex(&Execution{}, ix), ix)
			}
			for _, ix := range []string{functionIndex, runningIndex} {
				require.True(t, m.HasIndex(&Execution{}, ix), ix)
			}
			var def string
			require.NoError(t, d.gorm.Raw("SELECT sql FROM sqlite_master WHERE name = ?", runningIndex).Row().Scan(&def))
			require.Contains(t, def, "WHERE status = 'running'")
		})
	}
}
