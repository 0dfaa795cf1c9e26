package workerclient_test

import (
	"archive/zip"
	"bufio"
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/orchestrator"
	"github.com/qinling-go/qinling/orchestrator/workerclient"
)

// serveUnix serves h on a fresh unix socket and returns its worker address
// and a counter of accepted connections.
func serveUnix(t *testing.T, h http.Handler) (string, *atomic.Int64) {
	t.Helper()
	ln, sock := listenUnix(t)
	conns := &atomic.Int64{}
	srv := &http.Server{Handler: h, ConnState: func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return workerclient.UnixAddress(sock), conns
}

// listenUnix listens on a fresh unix socket, removed after the test.
func listenUnix(t *testing.T) (net.Listener, string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "wc")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	sock := filepath.Join(dir, "sock")
	ln, err := net.Listen("unix", sock)
	require.NoError(t, err)
	return ln, sock
}

// serveTCP serves h on a loopback port and returns its worker address.
func serveTCP(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: h}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}

// runtime is a well-behaved worker: it echoes the request back in the output.
func runtime() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ping", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("pong")) })
	mux.HandleFunc("POST /execute", func(w http.ResponseWriter, r *http.Request) {
		var req map[string]any
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"output": req, "duration": 0.012, "logs": "ran\n", "success": true})
	})
	return mux
}

func invocation() orchestrator.Invocation {
	return orchestrator.Invocation{
		ExecutionID: "e1", FunctionID: "f1", Version: 2, Entry: "main.main",
		Input: json.RawMessage(`{"name":"x"}`), CPU: 100, MemorySize: 33554432,
		Timeout: 5 * time.Second, RequestID: "req-1",
	}
}

func TestExecute_RequestAndAnswer(t *testing.T) {
	t.Parallel()
	c := workerclient.New(workerclient.Options{})
	for _, tc := range []struct {
		name string
		addr string
	}{
		{name: "unix socket", addr: func() string { a, _ := serveUnix(t, runtime()); return a }()},
		{name: "tcp", addr: serveTCP(t, runtime())},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := c.Execute(context.Background(), tc.addr, invocation(), time.Second)
			require.NoError(t, err)
			require.True(t, res.Success)
			require.Equal(t, "ran\n", res.Logs)
			require.InDelta(t, 0.012, res.Duration, 1e-9)
			require.JSONEq(t, `{"execution_id":"e1","function_id":"f1","function_version":2,"entry":"main.main",
				"input":{"name":"x"},"timeout":5,"cpu":100,"memory_size":33554432,"request_id":"req-1"}`, string(res.Output))
			require.NoError(t, c.Ping(context.Background(), tc.addr))
		})
	}
}

func TestExecute_NullInput(t *testing.T) {
	t.Parallel()
	addr, _ := serveUnix(t, runtime())
	inv := invocation()
	inv.Input = nil
	res, err := workerclient.New(workerclient.Options{}).Execute(context.Background(), addr, inv, time.Second)
	require.NoError(t, err)
	var echoed map[string]any
	require.NoError(t, json.Unmarshal(res.Output, &echoed))
	require.Contains(t, echoed, "input")
	require.Nil(t, echoed["input"])
}

func TestExecute_KeepAlive(t *testing.T) {
	t.Parallel()
	addr, conns := serveUnix(t, runtime())
	other, otherConns := serveUnix(t, runtime())
	c := workerclient.New(workerclient.Options{})
	for range 20 {
		_, err := c.Execute(context.Background(), addr, invocation(), time.Second)
		require.NoError(t, err)
		_, err = c.Execute(context.Background(), other, invocation(), time.Second)
		require.NoError(t, err)
	}
	// One connection per socket: sequential calls reuse it, and two sockets
	// never share one.
	require.EqualValues(t, 1, conns.Load())
	require.EqualValues(t, 1, otherConns.Load())
}

func TestExecute_Errors(t *testing.T) {
	t.Parallel()
	answer := func(status int, body string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(status)
			_, _ = w.Write([]byte(body))
		})
	}
	hangup := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			_ = conn.Close()
		}
	})
	unixAddr := func(h http.Handler) string { a, _ := serveUnix(t, h); return a }
	refused := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addr := ln.Addr().String()
		require.NoError(t, ln.Close())
		return "http://" + addr
	}()

	for _, tc := range []struct {
		name    string
		addr    string
		want    error
		success bool
		detail  string
	}{
		{name: "missing socket is not found", addr: workerclient.UnixAddress("/nonexistent/qinling/sock"), want: orchestrator.ErrWorkerNotFound},
		{name: "refused port is not found", addr: refused, want: orchestrator.ErrWorkerNotFound},
		{name: "draining worker is not found", addr: unixAddr(answer(503, `{"error":"worker draining"}`)), want: orchestrator.ErrWorkerNotFound},
		{name: "worker of another function is not found", addr: unixAddr(answer(410, `{"error":"this worker serves function f2 version 0"}`)), want: orchestrator.ErrWorkerNotFound, detail: "serves function f2"},
		{name: "hang-up after the request is lost", addr: unixAddr(hangup), want: orchestrator.ErrWorkerLost},
		{name: "non-JSON answer is lost with detail", addr: unixAddr(answer(500, "<html>boom</html>")), want: orchestrator.ErrWorkerLost, detail: "<html>boom</html>"},
		{name: "JSON failure with status 500 is a result", addr: unixAddr(answer(500, `{"output":"Function invocation error","success":false}`))},
		{name: "refused request is an error without sentinel", addr: unixAddr(answer(400, `{"error":"invalid request: timeout must be positive"}`)), detail: "worker refused the request"},
		{name: "missing success means success", addr: unixAddr(answer(200, `{"output":4,"duration":1}`)), success: true},
		{name: "relative socket is rejected", addr: "unix://rel/sock", detail: "absolute"},
		{name: "unknown scheme is rejected", addr: "tcp://x:1", detail: "want unix"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := workerclient.New(workerclient.Options{})
			res, err := c.Execute(context.Background(), tc.addr, invocation(), time.Second)
			switch {
			case tc.want != nil:
				require.ErrorIs(t, err, tc.want)
			case tc.detail != "":
				require.Error(t, err)
				require.NotErrorIs(t, err, orchestrator.ErrWorkerLost)
				require.NotErrorIs(t, err, orchestrator.ErrWorkerNotFound)
			default:
				require.NoError(t, err)
				require.Equal(t, tc.success, res.Success)
			}
			if tc.detail != "" {
				require.ErrorContains(t, err, tc.detail)
			}
		})
	}
}

// TestExecute_DialTimeoutIsNotFound: a worker whose address no longer
// answers (an evicted pod's) times out while connecting; nothing was sent,
// so the call may go to another worker: ErrWorkerNotFound, not a function
// past its timeout (found by tests/k8s TestHostileDisk, whose call after
// the eviction failed as "Function execution timeout." after the 3 s dial
// timeout: the connect's own deadline gives os.ErrDeadlineExceeded).
func TestExecute_DialTimeoutIsNotFound(t *testing.T) {
	t.Parallel()
	addr := silentAddress(t)
	c := workerclient.New(workerclient.Options{DialTimeout: 200 * time.Millisecond})
	for range 3 { // the connect's deadline and its context's race: try both ways
		res, err := c.Execute(context.Background(), "http://"+addr, invocation(), time.Second)
		require.ErrorIs(t, err, orchestrator.ErrWorkerNotFound)
		require.NotErrorIs(t, err, workerclient.ErrWorkerStuck)
		require.Empty(t, res.Output, "no timeout result: nothing ran")
	}
}

// silentAddress is a TCP address on loopback whose SYNs are dropped, as a
// gone pod's are: a listener with a backlog of 0 whose one queued
// connection is never accepted.
func silentAddress(t *testing.T) string {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	t.Cleanup(func() { _ = syscall.Close(fd) })
	require.NoError(t, syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}))
	require.NoError(t, syscall.Listen(fd, 0))
	sa, err := syscall.Getsockname(fd)
	require.NoError(t, err)
	addr := fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
	for range 4 { // fill the accept queue; later connects time out
		conn, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err != nil {
			return addr
		}
		t.Cleanup(func() { _ = conn.Close() })
	}
	t.Fatalf("connections to %s did not start timing out", addr)
	return ""
}

func TestExecute_Stuck(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	addr, _ := serveUnix(t, http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-release }))
	c := workerclient.New(workerclient.Options{})

	t.Run("no answer within timeout and grace", func(t *testing.T) {
		inv := invocation()
		inv.Timeout = 100 * time.Millisecond
		start := time.Now()
		res, err := c.Execute(context.Background(), addr, inv, 50*time.Millisecond)
		require.ErrorIs(t, err, workerclient.ErrWorkerStuck)
		require.False(t, errors.Is(err, orchestrator.ErrWorkerLost))
		require.GreaterOrEqual(t, time.Since(start), 150*time.Millisecond)
		require.False(t, res.Success)
		require.JSONEq(t, `"Function execution timeout."`, string(res.Output))
		require.InDelta(t, 0.1, res.Duration, 1e-9)
	})
	t.Run("caller cancellation is not stuck", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_, err := c.Execute(ctx, addr, invocation(), time.Second)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.NotErrorIs(t, err, workerclient.ErrWorkerStuck)
	})
}

func TestPing(t *testing.T) {
	t.Parallel()
	draining, _ := serveUnix(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	broken, _ := serveUnix(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
	}))
	ok, _ := serveUnix(t, runtime())
	c := workerclient.New(workerclient.Options{})
	for _, tc := range []struct {
		name    string
		addr    string
		wantErr error
		anyErr  bool
	}{
		{name: "ready", addr: ok},
		{name: "draining", addr: draining, wantErr: orchestrator.ErrWorkerNotFound},
		{name: "absent", addr: workerclient.UnixAddress("/nonexistent/sock"), wantErr: orchestrator.ErrWorkerNotFound},
		{name: "broken", addr: broken, anyErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := c.Ping(context.Background(), tc.addr)
			switch {
			case tc.wantErr != nil:
				require.ErrorIs(t, err, tc.wantErr)
			case tc.anyErr:
				require.Error(t, err)
				require.NotErrorIs(t, err, orchestrator.ErrWorkerNotFound)
			default:
				require.NoError(t, err)
			}
		})
	}
}

func BenchmarkExecute(b *testing.B) {
	dir, err := os.MkdirTemp("", "wcb")
	require.NoError(b, err)
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "sock")
	ln, err := net.Listen("unix", sock)
	require.NoError(b, err)
	srv := &http.Server{Handler: runtime()}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	c := workerclient.New(workerclient.Options{})
	addr := workerclient.UnixAddress(sock)
	inv := invocation()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Execute(context.Background(), addr, inv, time.Second); err != nil {
			b.Fatal(fmt.Sprint(err))
		}
	}
}

func TestExecute_WorkerTiming(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	mux.HandleFunc("POST /execute", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(`{"output": 1, "duration": 0.001, "logs": "", "success": true, "timing": {"acquire_ms": 0.05, "run_ms": 0.3}}`))
	})
	addr, _ := serveUnix(t, mux)
	res, err := workerclient.New(workerclient.Options{}).Execute(context.Background(), addr, invocation(), time.Second)
	require.NoError(t, err)
	require.Equal(t, map[string]float64{"acquire_ms": 0.05, "run_ms": 0.3}, res.Timing)
}

func TestPreload(t *testing.T) {
	t.Parallel()
	var got workerclient.Preload
	mux := http.NewServeMux()
	mux.HandleFunc("POST /preload", func(w http.ResponseWriter, r *http.Request) {
		if err := json.NewDecoder(r.Body).Decode(&got); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if got.FunctionID == "broken" {
			_, _ = w.Write([]byte(`{"level": "runtime", "error": "Failed to import module 'main'"}`))
			return
		}
		_, _ = w.Write([]byte(`{"level": "function", "error": null}`))
	})
	mux.HandleFunc("POST /nope", http.NotFound)
	addr, _ := serveUnix(t, mux)
	c := workerclient.New(workerclient.Options{})
	req := workerclient.Preload{Level: "function", FunctionID: "f1", FunctionVersion: 2, Entry: "main.main", Timeout: 5}
	res, err := c.Preload(context.Background(), addr, req)
	require.NoError(t, err)
	require.Equal(t, workerclient.PreloadResult{Level: "function"}, res)
	require.Equal(t, req, got)

	req.FunctionID = "broken"
	res, err = c.Preload(context.Background(), addr, req)
	require.NoError(t, err)
	require.Equal(t, workerclient.PreloadResult{Level: "runtime", Error: "Failed to import module 'main'"}, res)

	_, err = c.Preload(context.Background(), workerclient.UnixAddress("/nonexistent/sock"), req)
	require.ErrorIs(t, err, orchestrator.ErrWorkerNotFound)

	// A worker without /preload (an older runtime) answers 404: an error.
	old := http.NewServeMux()
	addr, _ = serveUnix(t, old)
	_, err = c.Preload(context.Background(), addr, req)
	require.ErrorContains(t, err, "404")
}

func TestDeliver(t *testing.T) {
	t.Parallel()
	var got struct {
		query url.Values
		body  string
	}
	var mu sync.Mutex
	worker := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got.query, got.body = r.URL.Query(), string(b)
		mu.Unlock()
		switch string(b) {
		case "bad":
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"error": "package is not a valid zip file"}`))
		case "taken":
			w.WriteHeader(http.StatusGone)
		}
	})
	// Dial reaches "pods" by an address of the test's choosing.
	real := strings.TrimPrefix(serveTCP(t, worker), "http://")
	c := workerclient.New(workerclient.Options{Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
		if addr != "10.0.0.7:9090" {
			return nil, &net.OpError{Op: "dial", Net: network, Err: syscall.ECONNREFUSED}
		}
		var d net.Dialer
		return d.DialContext(ctx, network, real)
	}})
	pkg := workerclient.Package{FunctionID: "f1", Version: 3, MD5: "abc", Zip: []byte("zip")}
	require.NoError(t, c.Deliver(context.Background(), "http://10.0.0.7:9090", pkg))
	mu.Lock()
	require.Equal(t, "zip", got.body)
	require.Equal(t, url.Values{"function_id": {"f1"}, "function_version": {"3"}, "md5": {"abc"}}, got.query)
	mu.Unlock()

	for _, tc := range []struct {
		name, addr, zip string
		want            error
		detail          string
	}{
		{name: "refused package", addr: "http://10.0.0.7:9090", zip: "bad", detail: "not a valid zip"},
		{name: "worker taken", addr: "http://10.0.0.7:9090", zip: "taken", want: orchestrator.ErrWorkerNotFound},
		{name: "pod gone", addr: "http://10.0.0.8:9090", zip: "zip", want: orchestrator.ErrWorkerNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := c.Deliver(context.Background(), tc.addr, workerclient.Package{FunctionID: "f1", Zip: []byte(tc.zip)})
			require.Error(t, err)
			if tc.want != nil {
				require.ErrorIs(t, err, tc.want)
			}
			require.ErrorContains(t, err, tc.detail)
		})
	}
}

var listening = regexp.MustCompile(`listening on (127\.0\.0\.1:[0-9]+)`)

// realServer starts a runtime server (argv, then --host/--port/--packages-dir)
// on a free loopback port, as a Kubernetes pod's entrypoint does, and
// returns its host:port; it is killed when the test ends.
func realServer(t *testing.T, packages string, argv ...string) string {
	t.Helper()
	cmd := exec.Command(argv[0], append(argv[1:], "--host", "127.0.0.1", "--port", "0", "--packages-dir", packages)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	// "qinling <runtime> runtime listening on 127.0.0.1:PORT ..."
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := listening.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
				break
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	select {
	case addr := <-found:
		return addr
	case <-time.After(15 * time.Second):
		t.Fatalf("%v did not start", argv)
		return ""
	}
}

// TestDeliverToRealRuntimes pushes packages with Deliver to the real
// runtime servers (runtimes/python3/server.py, runtimes/nodejs/server.js)
// started as a pod's entrypoint starts them, through a pod address, and
// runs them with Execute: the POST /package protocol both implement.
func TestDeliverToRealRuntimes(t *testing.T) {
	t.Parallel()
	for _, rt := range []struct {
		name string
		argv []string
		file string
		src  string
	}{
		{name: "python3", argv: []string{"/usr/bin/python3", "../../runtimes/python3/server.py"}, file: "main.py",
			src: "from lib import util\n\ndef main(name='World', **kwargs):\n    return util.greet(name)\n"},
		{name: "nodejs", argv: []string{"/usr/bin/node", "../../runtimes/nodejs/server.js"}, file: "main.js",
			src: "const util = require('./lib/util');\nexports.main = (context, input) => util.greet(input.name || 'World');\n"},
	} {
		t.Run(rt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := os.Stat(rt.argv[0]); err != nil {
				t.Skipf("%s not available: %v", rt.argv[0], err)
			}
			util := map[string]string{
				"main.py": "def greet(name):\n    return 'Hello, %s' % name\n",
				"main.js": "exports.greet = (name) => 'Hello, ' + name;\n",
			}[rt.file]
			ext := filepath.Ext(rt.file)
			// Go's archive/zip writer, as the engine's packages come: deflated,
			// sizes in data descriptors after the data, a directory entry.
			var buf bytes.Buffer
			zw := zip.NewWriter(&buf)
			for _, f := range []struct{ name, content string }{
				{rt.file, rt.src}, {"lib/", ""}, {"lib/__init__.py", ""}, {"lib/util" + ext, util},
			} {
				w, err := zw.Create(f.name)
				require.NoError(t, err)
				_, err = io.WriteString(w, f.content)
				require.NoError(t, err)
			}
			require.NoError(t, zw.Close())
			sum := md5.Sum(buf.Bytes())
			pkg := workerclient.Package{FunctionID: "fn-1", Version: 2, MD5: hex.EncodeToString(sum[:]), Zip: buf.Bytes()}

			packages := t.TempDir()
			real := realServer(t, packages, rt.argv...)
			c := workerclient.New(workerclient.Options{Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
				if addr != "10.0.0.7:9090" {
					return nil, &net.OpError{Op: "dial", Net: network, Err: syscall.ECONNREFUSED}
				}
				var d net.Dialer
				return d.DialContext(ctx, network, real)
			}})
			defer c.Close()
			const pod = "http://10.0.0.7:9090"
			ctx := context.Background()
			inv := orchestrator.Invocation{ExecutionID: "e1", FunctionID: "fn-1", Version: 2, Entry: "main.main",
				Input: json.RawMessage(`{"name":"pod"}`), Timeout: 5 * time.Second}

			require.NoError(t, c.Deliver(ctx, pod, pkg))
			require.NoError(t, c.Deliver(ctx, pod, pkg), "the same package again is a no-op")
			res, err := c.Execute(ctx, pod, inv, time.Second)
			require.NoError(t, err)
			require.True(t, res.Success, "%s %s", res.Output, res.Logs)
			require.JSONEq(t, `"Hello, pod"`, string(res.Output))

			// Dedicated to fn-1 version 2 from now on.
			var refused *workerclient.RefusedError
			other := pkg
			other.FunctionID = "fn-2"
			err = c.Deliver(ctx, pod, other)
			require.ErrorAs(t, err, &refused)
			require.Equal(t, http.StatusConflict, refused.Status)
			require.Contains(t, refused.Reason, "serves function fn-1 version 2")
			stale := inv
			stale.Version = 1
			_, err = c.Execute(ctx, pod, stale, time.Second)
			require.ErrorIs(t, err, orchestrator.ErrWorkerNotFound)
			require.ErrorContains(t, err, "this worker serves function fn-1 version 2")

			// Refused packages: the zip's fault, the worker's reason.
			bad := pkg
			bad.MD5 = strings.Repeat("0", 32)
			err = c.Deliver(ctx, pod, bad)
			require.ErrorAs(t, err, &refused)
			require.Equal(t, http.StatusBadRequest, refused.Status)
			require.Contains(t, refused.Reason, "checksum mismatch")
		})
	}
}

// TestDeliverRefusedByRealRuntimes: what both runtime servers refuse
// before they serve anything.
func TestDeliverRefusedByRealRuntimes(t *testing.T) {
	t.Parallel()
	zipOf := func(t *testing.T, hdr *zip.FileHeader, content string) []byte {
		var buf bytes.Buffer
		zw := zip.NewWriter(&buf)
		w, err := zw.CreateHeader(hdr)
		require.NoError(t, err)
		_, err = io.WriteString(w, content)
		require.NoError(t, err)
		require.NoError(t, zw.Close())
		return buf.Bytes()
	}
	symlink := &zip.FileHeader{Name: "link"}
	symlink.SetMode(os.ModeSymlink | 0o777)
	for _, argv := range [][]string{
		{"/usr/bin/python3", "../../runtimes/python3/server.py"},
		{"/usr/bin/node", "../../runtimes/nodejs/server.js"},
	} {
		t.Run(filepath.Base(argv[0]), func(t *testing.T) {
			t.Parallel()
			if _, err := os.Stat(argv[0]); err != nil {
				t.Skipf("%s not available: %v", argv[0], err)
			}
			pod := "http://" + realServer(t, t.TempDir(), argv...)
			c := workerclient.New(workerclient.Options{})
			defer c.Close()
			for _, tc := range []struct {
				name   string
				zip    []byte
				status int
				reason string
			}{
				{"not a zip", []byte("not a zip"), http.StatusBadRequest, "not a valid zip file"},
				{"zip slip", zipOf(t, &zip.FileHeader{Name: "../evil.py"}, "x"), http.StatusBadRequest, "unsafe path"},
				{"symlink", zipOf(t, symlink, "/etc/passwd"), http.StatusBadRequest, "not a regular file"},
			} {
				err := c.Deliver(context.Background(), pod, workerclient.Package{FunctionID: "fn", Zip: tc.zip})
				var refused *workerclient.RefusedError
				require.ErrorAs(t, err, &refused, tc.name)
				require.Equal(t, tc.status, refused.Status, tc.name)
				require.Contains(t, refused.Reason, tc.reason, tc.name)
			}
		})
	}
}

// TestHostileSocketSymlink: a symbolic link planted where a worker's socket
// is, or in a directory on the way, does not make the client talk to the
// socket it points to; it reports the worker as not found.
func TestHostileSocketSymlink(t *testing.T) {
	t.Parallel()
	var reached atomic.Int64
	victim, _ := serveUnix(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		reached.Add(1)
		_, _ = io.WriteString(w, `{"output":"the victim's answer","success":true}`)
	}))
	victimSock := strings.TrimPrefix(victim, "unix://")
	dir := t.TempDir()
	link := filepath.Join(dir, "sock")
	require.NoError(t, os.Symlink(victimSock, link))
	linkDir := filepath.Join(dir, "run")
	require.NoError(t, os.Symlink(filepath.Dir(victimSock), linkDir))
	c := workerclient.New(workerclient.Options{})
	for _, addr := range []string{link, filepath.Join(linkDir, "sock")} {
		t.Run(addr, func(t *testing.T) {
			_, err := c.Execute(context.Background(), workerclient.UnixAddress(addr), invocation(), time.Second)
			require.ErrorIs(t, err, orchestrator.ErrWorkerNotFound)
			require.ErrorIs(t, c.Ping(context.Background(), workerclient.UnixAddress(addr)), orchestrator.ErrWorkerNotFound)
		})
	}
	require.Zero(t, reached.Load(), "the socket behind the link was never reached")
	_, err := c.Execute(context.Background(), victim, invocation(), time.Second)
	require.NoError(t, err, "the socket itself is reached")
}
