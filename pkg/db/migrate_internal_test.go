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
			require.True(t, d.gorm.Migrator().HasIndex(&Execution{}, ixRunningInProject), "running executions are found by status")
		})
	}
}
