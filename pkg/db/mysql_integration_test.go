//go:build integration

package db_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/config"
	"github.com/qinling-go/qinling/pkg/db"
	"github.com/qinling-go/qinling/pkg/testutil"
)

var mariadb *testutil.MariaDB

func TestMain(m *testing.M) {
	var err error
	if mariadb, err = testutil.LaunchMariaDB(); err != nil {
		fmt.Fprintln(os.Stderr, "integration tier needs MariaDB:", err)
		os.Exit(1)
	}
	var seq atomic.Int32
	// Every test gets a database of its own on the shared server, migrated
	// with the same db-sync path operators use.
	openers["mysql"] = func(t *testing.T) *db.DB {
		name := fmt.Sprintf("q%d_%s", seq.Add(1), strings.ToLower(strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())))
		if len(name) > 60 {
			name = name[:60]
		}
		url, err := mariadb.Database(name)
		require.NoError(t, err)
		d := openMySQL(t, url)
		_, _, err = d.Sync(context.Background())
		require.NoError(t, err)
		return d
	}
	code := m.Run()
	mariadb.Stop()
	os.Exit(code)
}

func openMySQL(t *testing.T, url string) *db.DB {
	driver, dsn, err := config.ParseDatabaseURL(url)
	require.NoError(t, err)
	require.Equal(t, "mysql", driver)
	d, err := db.Open(driver, dsn, db.Options{MaxOpenConns: 4})
	require.NoError(t, err)
	t.Cleanup(func() { d.Close() })
	return d
}

// TestMySQL_SchemaSync shows the upstream URL form works, that db-sync is
// repeatable, and that a service refuses a database it was not synced for.
func TestMySQL_SchemaSync(t *testing.T) {
	ctx := context.Background()
	url, err := mariadb.Database("schema_sync")
	require.NoError(t, err)
	d := openMySQL(t, url)
	require.ErrorIs(t, d.CheckSchema(ctx), db.ErrSchemaOutdated)
	from, to, err := d.Sync(ctx)
	require.NoError(t, err)
	require.Equal(t, 0, from)
	require.Equal(t, db.LatestVersion(), to)
	from, to, err = d.Sync(ctx)
	require.NoError(t, err, "db-sync twice is safe")
	require.Equal(t, to, from)
	require.NoError(t, d.CheckSchema(ctx))
}

// TestMySQL_ExecutionIndexes: MariaDB has no partial indexes, so migration
// 10 leaves it (function_id, function_version, status) and (status,
// project_id), which find running executions; on a new database it makes
// the first, no longer a tag on Execution.
func TestMySQL_ExecutionIndexes(t *testing.T) {
	ctx := context.Background()
	url, err := mariadb.Database("execution_indexes")
	require.NoError(t, err)
	d := openMySQL(t, url)
	_, _, err = d.Sync(ctx)
	require.NoError(t, err)
	names, err := db.IndexesOf(ctx, d, "executions")
	require.NoError(t, err)
	require.Subset(t, names, []string{"ix_executions_load", "ix_executions_running_project"})
	require.NotContains(t, names, "ix_executions_running")
}
