package workerclient_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/orchestrator/workerclient"
)

// rawWorker serves /execute on a unix socket by hand, so that a test can
// do to a kept-alive connection what net/http's server never would. after
// runs once an answer is written, with the connection; it returns false to
// stop serving that connection (closed). It returns the worker address, a
// counter of accepted connections, and a channel told when after is done
// (and the connection closed if it said so).
func rawWorker(t *testing.T, header string, after func(net.Conn) bool) (string, *atomic.Int64, <-chan struct{}) {
	t.Helper()
	ln, sock := listenUnix(t)
	t.Cleanup(func() { _ = ln.Close() })
	conns := &atomic.Int64{}
	done := make(chan struct{}, 16)
	body := `{"output":"ok","duration":0.001,"success":true}`
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						_ = c.Close()
						return
					}
					_, _ = io.Copy(io.Discard, req.Body)
					_, _ = fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s", len(body), header, body)
					more := after(c)
					if !more {
						_ = c.Close()
					}
					done <- struct{}{}
					if !more {
						return
					}
				}
			}()
		}
	}()
	return workerclient.UnixAddress(sock), conns, done
}

func TestExecute_KeptAliveConnections(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		header    string
		after     func(net.Conn) bool
		wantConns int64
	}{
		{name: "an open connection is reused", after: func(net.Conn) bool { return true }, wantConns: 1},
		{name: "one the worker closed while idle is replaced, nothing lost", after: func(net.Conn) bool { return false }, wantConns: 3},
		{name: "one the worker answered on with Connection: close is not reused", header: "Connection: close\r\n",
			after: func(net.Conn) bool { return true }, wantConns: 3},
		{name: "one the worker wrote on unasked is not trusted with the next answer", after: func(c net.Conn) bool {
			_, _ = c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"))
			return true
		}, wantConns: 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			addr, conns, done := rawWorker(t, tc.header, tc.after)
			c := workerclient.New(workerclient.Options{})
			defer c.Close()
			for i := range 3 {
				res, err := c.Execute(context.Background(), addr, invocation(), time.Second)
				require.NoError(t, err, "call %d", i)
				require.JSONEq(t, `"ok"`, string(res.Output), "call %d", i)
				<-done // the worker has closed its end, or written, before the next call
			}
			require.Equal(t, tc.wantConns, conns.Load())
		})
	}
}
