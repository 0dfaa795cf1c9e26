package db

import (
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"

	mysqldriver "github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/errdefs"
)

// TestTranslate_DatabaseUnreachableIsUnavailable: a database that is down or
// restarting is "unavailable" (503, and the engine waits for it), not an
// internal error: the chaos suite found the API answering 500 and the
// engine dropping executions while MariaDB restarted.
func TestTranslate_DatabaseUnreachableIsUnavailable(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: &net.AddrError{Err: "connection refused"}}
	for _, tc := range []struct {
		name string
		err  error
		want errdefs.Kind
	}{
		{name: "connection refused", err: fmt.Errorf("dial: %w", refused), want: errdefs.KindUnavailable},
		{name: "bad connection", err: driver.ErrBadConn, want: errdefs.KindUnavailable},
		{name: "invalid connection", err: mysqldriver.ErrInvalidConn, want: errdefs.KindUnavailable},
		{name: "server shutting down", err: &mysqldriver.MySQLError{Number: 1053, Message: "Server shutdown in progress"}, want: errdefs.KindUnavailable},
		{name: "syntax error", err: &mysqldriver.MySQLError{Number: 1064, Message: "syntax"}, want: errdefs.KindInternal},
		{name: "other", err: errors.New("boom"), want: errdefs.KindInternal},
		{name: "connection reset", err: syscall.ECONNRESET, want: errdefs.KindUnavailable},
		// A transaction's error is translated again as a whole (its begin
		// or commit may fail on a connection MariaDB's restart broke; the
		// chaos suite found that answered 500): what its statements
		// returned keeps its kind.
		{name: "already not found", err: errdefs.NotFound("Function not found [id=x]"), want: errdefs.KindNotFound},
		{name: "already unavailable", err: translate(mysqldriver.ErrInvalidConn, "Function", "x"), want: errdefs.KindUnavailable},
		{name: "invalid connection at commit", err: fmt.Errorf("commit: %w", mysqldriver.ErrInvalidConn), want: errdefs.KindUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, errdefs.KindOf(translate(tc.err, "Execution", "x")))
		})
	}
}
