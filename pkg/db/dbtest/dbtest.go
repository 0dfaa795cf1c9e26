// Package dbtest gives tests a migrated database. It lives apart from
// pkg/testutil so that backends' test helpers, which use pkg/testutil, stay
// free of pkg/db (scripts/verify-layering.sh).
package dbtest

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/db"
)

// SQLite returns a new, migrated SQLite database in t's temporary
// directory, closed when t ends.
func SQLite(t testing.TB) *db.DB {
	t.Helper()
	d, err := db.Open("sqlite", filepath.Join(t.TempDir(), "qinling.sqlite"), db.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { d.Close() })
	_, _, err = d.Sync(context.Background())
	require.NoError(t, err)
	return d
}
