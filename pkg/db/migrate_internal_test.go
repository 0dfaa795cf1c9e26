package db

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestMigration8_DropsEngineIndex: a database synced before migration 8 has
// executions.engine indexed and loses the index; a new one never has it.
func TestMigration8_DropsEngineIndex(t *testing.T) {
	for _, tc := range []struct {
		name string
		// before makes the database as an older build left it.
		before func(t *testing.T, d *DB)
	}{
		{name: "new database", before: func(*testing.T, *DB) {}},
		{name: "database synced before migration 8", before: func(t *testing.T, d *DB) {
			require.NoError(t, d.gorm.Exec("CREATE INDEX "+engineIndex+" ON executions (engine)").Error)
			require.NoError(t, d.gorm.Where("version >= ?", 8).Delete(&schemaMigration{}).Error)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			d := syncedSQLite(t)
			tc.before(t, d)
			_, to, err := d.Sync(ctx)
			require.NoError(t, err)
			require.Equal(t, LatestVersion(), to)
			require.False(t, d.gorm.Migrator().HasIndex(&Execution{}, engineIndex))
			require.True(t, d.gorm.Migrator().HasIndex(&Execution{}, "idx_executions_status"), "running executions are found by status")
		})
	}
}
