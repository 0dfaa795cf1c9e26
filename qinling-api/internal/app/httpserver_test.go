package app

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/config"
)

// hangGuard bounds every wait on the server: a test that reaches it has
// found a connection the server never closed.
const hangGuard = 30 * time.Second

// TestHTTPServer_SlowClients runs newHTTPServer with short timeouts: slow
// and stalled clients lose their connection, a normal request works, and a
// request that runs long after its body has arrived (a synchronous
// execution) is neither cut nor cancelled.
func TestHTTPServer_SlowClients(t *testing.T) {
	t.Parallel()
	cfg := config.Default()
	cfg.API.ReadHeaderTimeout = 200 * time.Millisecond
	cfg.API.ReadTimeout = 200 * time.Millisecond
	cfg.API.IdleTimeout = 200 * time.Millisecond
	work := 5 * cfg.API.ReadTimeout
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, "reading the body: "+err.Error(), http.StatusRequestTimeout)
			return
		}
		if r.URL.Query().Has("work") {
			select {
			case <-time.After(work):
			case <-r.Context().Done():
				http.Error(w, "request cancelled", http.StatusInternalServerError)
				return
			}
		}
		fmt.Fprintf(w, "got %d bytes", len(b))
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	hs := newHTTPServer(cfg, h)
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() { hs.Close() })
	url := "http://" + ln.Addr().String()

	// untilClosed sends raw and returns all the server writes until it
	// closes the connection; the test fails if it never does.
	untilClosed := func(t *testing.T, raw string) string {
		t.Helper()
		c, err := net.Dial("tcp", ln.Addr().String())
		require.NoError(t, err)
		defer c.Close()
		_, err = io.WriteString(c, raw)
		require.NoError(t, err)
		require.NoError(t, c.SetReadDeadline(time.Now().Add(hangGuard)))
		out, err := io.ReadAll(c)
		require.NoError(t, err, "the server did not close the connection")
		return string(out)
	}

	t.Run("headers that never end are cut", func(t *testing.T) {
		t.Parallel()
		require.Empty(t, untilClosed(t, "GET /v1/functions HTTP/1.1\r\nHost: qinling\r\nX-Auth-Token: slow"))
	})
	t.Run("a stalled body is refused and its connection closed", func(t *testing.T) {
		t.Parallel()
		out := untilClosed(t, "POST /v1/executions HTTP/1.1\r\nHost: qinling\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"function_id\": ")
		require.Contains(t, out, "408 Request Timeout")
		require.Contains(t, out, "i/o timeout")
	})
	t.Run("an idle keep-alive connection is closed", func(t *testing.T) {
		t.Parallel()
		out := untilClosed(t, "GET / HTTP/1.1\r\nHost: qinling\r\n\r\n")
		require.Contains(t, out, "200 OK")
		require.NotContains(t, out, "Connection: close", "the answer itself kept the connection open")
	})
	t.Run("a normal request works", func(t *testing.T) {
		t.Parallel()
		resp, err := http.Post(url, "application/json", strings.NewReader(`{"a": 1}`))
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		require.Equal(t, http.StatusOK, resp.StatusCode, string(b))
		require.Equal(t, "got 8 bytes", string(b))
	})
	t.Run("a request running long after its body is not cut", func(t *testing.T) {
		t.Parallel()
		c, err := net.Dial("tcp", ln.Addr().String())
		require.NoError(t, err)
		defer c.Close()
		_, err = io.WriteString(c, "POST /?work HTTP/1.1\r\nHost: qinling\r\nContent-Length: 2\r\n\r\n{}")
		require.NoError(t, err)
		require.NoError(t, c.SetReadDeadline(time.Now().Add(hangGuard)))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		require.Equal(t, http.StatusOK, resp.StatusCode, string(b))
		require.Equal(t, "got 2 bytes", string(b))
	})
}
