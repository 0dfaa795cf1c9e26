package local

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The test binary doubles as a fake runtime (Nomad's testtask pattern): when
// runtimeModeEnv is set, TestMain serves the worker protocol instead of
// running tests. It lets the tests make a worker misbehave in ways the real
// Python runtime cannot be made to, deterministically and without Python.
const (
	runtimeModeEnv = "QINLING_LOCAL_TEST_RUNTIME"
	childPIDEnv    = "QINLING_LOCAL_TEST_CHILD_PID"
)

// Fake runtime modes.
const (
	modeServe      = "serve"       // answers /ping and /execute (see fakeExecute)
	modeExitEarly  = "exit-early"  // complains on stderr and exits 2
	modeNeverReady = "never-ready" // runs but never listens
)

// Entries understood by the fake runtime in modeServe.
const (
	entryEcho  = "echo"  // answers success with the input as output
	entryCrash = "crash" // exits while the request is in flight
	entryHang  = "hang"  // starts a child process, then never answers
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(runtimeModeEnv); mode != "" {
		os.Exit(fakeRuntime(mode, os.Args[1:]))
	}
	os.Exit(m.Run())
}

// fakeCommand returns a Config.Command running the test binary as a fake
// runtime in mode. A child started by entryHang writes its pid to childPIDFile.
func fakeCommand(mode, childPIDFile string) func(kind, sock, pkgDir string) *exec.Cmd {
	return func(_, sock, pkgDir string) *exec.Cmd {
		cmd := exec.Command(os.Args[0], "--socket", sock, "--packages-dir", pkgDir)
		cmd.Env = append(os.Environ(), runtimeModeEnv+"="+mode, childPIDEnv+"="+childPIDFile)
		return cmd
	}
}

func fakeRuntime(mode string, args []string) int {
	var sock string
	for i := 0; i+1 < len(args); i += 2 {
		if args[i] == "--socket" {
			sock = args[i+1]
		}
	}
	switch mode {
	case modeExitEarly:
		fmt.Fprintln(os.Stderr, "fake runtime: bad config")
		return 2
	case modeNeverReady:
		time.Sleep(time.Hour)
		return 0
	}
	// The engine's listening socket, bound at sock (Config.Command).
	ln, err := net.FileListener(os.NewFile(3, sock))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Fprintln(os.Stderr, "fake runtime listening on", sock)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ping", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "pong") })
	mux.HandleFunc("POST /execute", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Entry string          `json:"entry"`
			Input json.RawMessage `json:"input"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		switch req.Entry {
		case entryCrash:
			os.Exit(1)
		case entryHang:
			child := exec.Command("sleep", "300") // same process group as this worker
			if err := child.Start(); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			_ = os.WriteFile(os.Getenv(childPIDEnv), []byte(strconv.Itoa(child.Process.Pid)), 0o600)
			select {} // never answer
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"output": req.Input, "duration": 0.001, "logs": "echo\n", "success": true})
	})
	_ = http.Serve(ln, mux)
	return 1
}

// testLogger sends slog records to t.Log while the test runs, and drops
// those that background goroutines emit after it ended.
func testLogger(t testing.TB) *slog.Logger {
	l, _ := recordingLogger(t)
	return l
}

// recordingLogger is testLogger that also keeps what it logged, for tests
// about what is logged.
func recordingLogger(t testing.TB) (*slog.Logger, func() string) {
	w := &testWriter{t: t}
	t.Cleanup(w.stop) // registered first, so it runs after the orchestrator's Close
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})), w.logged
}

type testWriter struct {
	mu      sync.Mutex
	t       testing.TB
	stopped bool
	all     strings.Builder
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.stopped {
		w.t.Log(string(p[:len(p)-1]))
	}
	w.all.Write(p)
	return len(p), nil
}

func (w *testWriter) logged() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.all.String()
}

func (w *testWriter) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped = true
}
