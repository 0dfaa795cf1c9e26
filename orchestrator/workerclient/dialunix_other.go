//go:build !linux

package workerclient

import (
	"context"
	"net"
)

// dialUnix connects to the unix socket at path. Only Linux hosts run
// workers behind unix sockets (the local orchestrator); elsewhere it is a
// plain dial.
func dialUnix(ctx context.Context, d *net.Dialer, path string) (net.Conn, error) {
	return d.DialContext(ctx, "unix", path)
}

// quiet is Linux's peek elsewhere: an idle connection is taken as open.
func quiet(net.Conn) bool { return true }
