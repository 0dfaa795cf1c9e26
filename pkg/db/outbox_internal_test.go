package db

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	mysqldriver "github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/qinling-go/qinling/pkg/errdefs"
)

// brokenTx is a connection pool whose transactions fail as on a
// connection MariaDB's restart broke: at begin, or at commit.
type brokenTx struct {
	*sql.DB
	failBegin bool
}

func (p brokenTx) BeginTx(ctx context.Context, opts *sql.TxOptions) (gorm.ConnPool, error) {
	if p.failBegin {
		return nil, mysqldriver.ErrInvalidConn
	}
	tx, err := p.DB.BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	return &failingCommit{tx}, nil
}

// failingCommit rolls back what it was asked to commit and says the
// connection broke.
type failingCommit struct{ *sql.Tx }

func (t *failingCommit) Commit() error {
	_ = t.Tx.Rollback()
	return mysqldriver.ErrInvalidConn
}

// syncedSQLite is a new SQLite database at the latest schema, closed when
// the test ends.
func syncedSQLite(t testing.TB) *DB {
	t.Helper()
	d, err := Open("sqlite", filepath.Join(t.TempDir(), "q.sqlite"), Options{})
	require.NoError(t, err)
	t.Cleanup(func() { d.Close() })
	_, _, err = d.Sync(context.Background())
	require.NoError(t, err)
	return d
}

// TestChanging_TransactionErrorIsTranslated: with notifications on, a
// change runs in a transaction whose own begin or commit may fail on a
// broken connection (a function create during a MariaDB restart); that is
// "unavailable" (503), like any statement's broken connection, not an
// untranslated error the API answers 500.
func TestChanging_TransactionErrorIsTranslated(t *testing.T) {
	for _, tc := range []struct {
		name      string
		failBegin bool
	}{
		{name: "begin fails", failBegin: true},
		{name: "commit fails"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			d := syncedSQLite(t)
			d.EnableNotifications("qinling.test")
			sqlDB, err := d.gorm.DB()
			require.NoError(t, err)
			d.gorm = d.gorm.Session(&gorm.Session{})
			d.gorm.Statement.ConnPool = brokenTx{DB: sqlDB, failBegin: tc.failBegin}

			err = d.CreateRuntime(ctx, &Runtime{Base: Base{ProjectID: "p"}, Image: "python3", Status: "available"})
			require.Error(t, err)
			require.Equal(t, errdefs.KindUnavailable, errdefs.KindOf(err), "%v", err)
		})
	}
}
