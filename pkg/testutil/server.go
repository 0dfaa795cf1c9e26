package testutil

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const (
	// readyTimeout bounds how long a server may take to answer GET / with 200.
	readyTimeout = 60 * time.Second
	// stopGrace is how long a server gets to exit after SIGTERM before SIGKILL.
	stopGrace = 15 * time.Second
	// failLogLines is how much of the server log a failed test prints.
	failLogLines = 100
)

// Option changes the config file StartAllInOne or Launch writes.
type Option func(*iniFile)

// WithConfig sets option key of [section] to value, adding or overriding a
// line of the default config, e.g. WithConfig("storage", "max_package_size", "65536").
func WithConfig(section, key, value string) Option {
	return func(f *iniFile) { f.set(section, key, value) }
}

// Server is a running (or stopped) all-in-one qinling-api: API and engine in
// one process, SQLite, embedded etcd, in-process RPC, the local orchestrator
// and local package storage, auth off. Everything it writes is under Dir.
type Server struct {
	URL        string // http://127.0.0.1:<port>, no trailing slash
	Dir        string // private directory holding the files below
	ConfigPath string // the oslo INI file the server was started with
	StateDir   string // [DEFAULT] state_path
	LogPath    string // the server's stdout and stderr, appended across restarts

	cfg  *iniFile
	proc *process
}

// StartAllInOne starts an all-in-one server with a private state directory
// and free ports, waits until GET / answers 200 and stops it when the test
// ends (SIGTERM, then SIGKILL), printing the log tail if the test failed.
func StartAllInOne(t testing.TB, opts ...Option) *Server {
	t.Helper()
	// Not t.TempDir(): the local orchestrator puts unix sockets under the
	// state directory, and test names would push their paths past the
	// 108-byte limit.
	dir, err := os.MkdirTemp("", "qaio-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })

	s, err := Launch(dir, opts...)
	require.NoError(t, err)
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Logf("stopping qinling-api: %v", err)
		}
		if t.Failed() {
			t.Logf("last %d lines of %s:\n%s", failLogLines, s.LogPath, s.LogTail(failLogLines))
		}
	})
	return s
}

// Launch is StartAllInOne for callers without a testing.TB (TestMain): dir
// must exist and is not removed; the caller must Stop the server.
func Launch(dir string, opts ...Option) (*Server, error) {
	bin, err := BuildBinaries()
	if err != nil {
		return nil, err
	}
	ports := make([]int, 3)
	for i := range ports {
		if ports[i], err = freePort(); err != nil {
			return nil, err
		}
	}
	s := &Server{
		URL:        fmt.Sprintf("http://127.0.0.1:%d", ports[0]),
		Dir:        dir,
		ConfigPath: filepath.Join(dir, "qinling.conf"),
		StateDir:   filepath.Join(dir, "state"),
		LogPath:    filepath.Join(dir, "qinling-api.log"),
	}
	f := &iniFile{}
	f.set("DEFAULT", "state_path", s.StateDir)
	f.set("api", "host", "127.0.0.1")
	f.set("api", "port", fmt.Sprint(ports[0]))
	f.set("etcd", "port", fmt.Sprint(ports[1]))
	f.set("etcd", "peer_port", fmt.Sprint(ports[2]))
	f.set("local_orchestrator", "pool_size", "2")
	f.set("pecan", "auth_enable", "false")
	for _, o := range opts {
		o(f)
	}
	s.cfg = f
	if err := os.WriteFile(s.ConfigPath, f.bytes(), 0o600); err != nil {
		return nil, fmt.Errorf("testutil: %w", err)
	}
	tmp := filepath.Join(dir, "tmp")
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return nil, fmt.Errorf("testutil: %w", err)
	}
	s.proc = &process{
		name: "qinling-api", path: filepath.Join(bin, "qinling-api"),
		args: []string{"--all-in-one", "--config-file", s.ConfigPath},
		dir:  dir, env: append(os.Environ(), "TMPDIR="+tmp), logPath: s.LogPath,
		deathSignal: syscall.SIGTERM, ready: s.answers,
		readyWithin: readyTimeout, poll: 100 * time.Millisecond, grace: stopGrace,
	}
	if err := s.proc.start(); err != nil {
		return nil, err
	}
	return s, nil
}

// answers is the server's readiness probe: GET / answers 200.
func (s *Server) answers() error {
	resp, err := readyClient.Get(s.URL + "/")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET / answered %d", resp.StatusCode)
	}
	return nil
}

var readyClient = &http.Client{Timeout: 2 * time.Second}

// Stop sends SIGTERM, waits up to 15 s, then SIGKILLs the server. Processes
// the server started (its workers) that outlive it are killed too, by PID.
// It returns an error describing an unclean stop. Stopping a stopped server
// is a no-op.
func (s *Server) Stop() error {
	pid := s.proc.pid()
	if pid == 0 {
		return nil
	}
	children := descendants(pid) // workers may sit in process groups of their own
	var problems []string
	if err := s.proc.stop(); err != nil {
		problems = append(problems, err.Error())
	}
	if n := killAlive(children); n > 0 {
		problems = append(problems, fmt.Sprintf("%d of its child processes outlived it; killed", n))
	}
	if err := s.proc.exitErr(); err != nil && len(problems) == 0 {
		problems = append(problems, fmt.Sprintf("exit after SIGTERM: %v", err))
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// Kill stops the server as a crash would: SIGKILL to it and every process
// it started, with no chance to clean up. Restart starts it again on the
// same state. Killing a stopped server is a no-op.
func (s *Server) Kill() {
	pid := s.proc.pid()
	if pid == 0 {
		return
	}
	children := descendants(pid)
	s.proc.kill()
	killAlive(children)
}

// descendants lists the PIDs of pid's children, their children and so on,
// read from /proc.
func descendants(pid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	children := map[int][]int{}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, _, ok := procStat(p); ok {
			children[ppid] = append(children[ppid], p)
		}
	}
	var out []int
	for queue := []int{pid}; len(queue) > 0; queue = queue[1:] {
		for _, c := range children[queue[0]] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}

// killAlive SIGKILLs those of pids that still run and returns how many did.
func killAlive(pids []int) int {
	n := 0
	for _, p := range pids {
		if _, state, ok := procStat(p); ok && state != "Z" && syscall.Kill(p, syscall.SIGKILL) == nil {
			n++
		}
	}
	return n
}

// procStat reads a process's parent PID and state from /proc/<pid>/stat.
func procStat(pid int) (ppid int, state string, ok bool) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, "", false
	}
	// "pid (comm) state ppid ...": comm may hold spaces and parentheses.
	rest := string(data)
	rest = rest[strings.LastIndexByte(rest, ')')+1:]
	fields := strings.Fields(rest)
	if len(fields) < 2 {
		return 0, "", false
	}
	ppid, err = strconv.Atoi(fields[1])
	return ppid, fields[0], err == nil
}

// Restart stops the server and starts it again with the same config, ports
// and state directory, for state-survives-restart tests.
func (s *Server) Restart() error {
	if err := s.Stop(); err != nil {
		// An unclean stop is worth knowing about, not a reason to give up.
		fmt.Fprintf(os.Stderr, "testutil: restart: %v\n", err)
	}
	return s.proc.start()
}

// Option returns what the server's config file sets for [section] key, or
// "" when it leaves the option at its default.
func (s *Server) Option(section, key string) string {
	if s.cfg == nil || s.cfg.sections[section] == nil {
		return ""
	}
	return s.cfg.sections[section][key]
}

// LogTail returns the last n lines of the server log.
func (s *Server) LogTail(n int) string {
	data, err := os.ReadFile(s.LogPath)
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Log returns the whole server log so far.
func (s *Server) Log() string {
	data, _ := os.ReadFile(s.LogPath)
	return string(data)
}

// iniFile is an oslo-style INI file: sections in first-set order, keys sorted.
type iniFile struct {
	order    []string
	sections map[string]map[string]string
}

func (f *iniFile) set(section, key, value string) {
	if f.sections == nil {
		f.sections = map[string]map[string]string{}
	}
	if _, ok := f.sections[section]; !ok {
		f.order = append(f.order, section)
		f.sections[section] = map[string]string{}
	}
	f.sections[section][key] = value
}

func (f *iniFile) bytes() []byte {
	var b bytes.Buffer
	for _, name := range f.order {
		fmt.Fprintf(&b, "[%s]\n", name)
		for _, k := range sortedKeys(f.sections[name]) {
			fmt.Fprintf(&b, "%s = %s\n", k, f.sections[name][k])
		}
		b.WriteString("\n")
	}
	return b.Bytes()
}
