// Package testutil is qinling-go's one test-support package: it builds the
// server binaries, starts real all-in-one servers on free ports, makes zip
// packages and sends HTTP requests. Tests of every tier (unit tests that need
// a real server, tests/functional, tests/cli) use it; nothing else should
// start servers.
//
// A typical black-box test:
//
//	srv := testutil.StartAllInOne(t)
//	r := srv.Do(t, "POST", "/v1/runtimes", map[string]any{"image": "python3"})
//	require.Equal(t, http.StatusCreated, r.Status, r)
package testutil

import (
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// EnvTestBin names the environment variable holding a directory with prebuilt
// qinling-api (and qinling-engine) binaries. ./tox sets it so the binaries are
// built once per run instead of once per test package.
const EnvTestBin = "QINLING_TEST_BIN"

// DiskUsage is what the files under dir take on disk, in bytes, as du
// counts them: allocated blocks, so preallocated space counts in full and
// holes do not.
func DiskUsage(t testing.TB, dir string) int64 {
	t.Helper()
	var used int64
	require.NoError(t, filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		used += info.Sys().(*syscall.Stat_t).Blocks * 512
		return nil
	}))
	return used
}

// RequireRoot skips the test unless it runs as root; why says what needs
// root, e.g. "sandboxes need root (namespaces and mounts)".
func RequireRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip(why)
	}
}

var (
	portsMu sync.Mutex
	ports   = map[int]bool{}
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago and that
// this process has not handed out before (a server started later in the same
// test binary cannot be given the same port twice).
func FreePort(t testing.TB) int {
	t.Helper()
	p, err := freePort()
	require.NoError(t, err)
	return p
}

func freePort() (int, error) {
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("testutil: find a free port: %w", err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !ports[p] {
			ports[p] = true
			return p, nil
		}
	}
	return 0, errors.New("testutil: no unused free port after 100 tries")
}

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// Binaries returns a directory holding the qinling-api binary (and
// qinling-engine when the tree has it): $QINLING_TEST_BIN if set, otherwise
// a `go build` of the source tree, done once per test process.
func Binaries(t testing.TB) string {
	t.Helper()
	dir, err := BuildBinaries()
	require.NoError(t, err)
	return dir
}

// BuildBinaries is Binaries for callers without a testing.TB (TestMain).
func BuildBinaries() (string, error) {
	buildOnce.Do(func() { buildDir, buildErr = buildBinaries() })
	return buildDir, buildErr
}

func buildBinaries() (string, error) {
	if dir := os.Getenv(EnvTestBin); dir != "" {
		if _, err := os.Stat(filepath.Join(dir, "qinling-api")); err != nil {
			return "", fmt.Errorf("testutil: %s=%s: %w", EnvTestBin, dir, err)
		}
		return dir, nil
	}
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	// One directory per source tree, reused across test processes; each
	// binary is built under a private name and renamed into place, so test
	// packages building at the same time never see a half-written file.
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("qinling-test-bin-%x", hashString(root)))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("testutil: %w", err)
	}
	for _, name := range []string{"qinling-api", "qinling-engine"} {
		if _, err := os.Stat(filepath.Join(root, name)); err != nil && name != "qinling-api" {
			continue // the engine binary is optional for the all-in-one
		}
		tmp := filepath.Join(dir, fmt.Sprintf(".%s.%d", name, os.Getpid()))
		cmd := exec.Command("go", "build", "-o", tmp, "./"+name)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			os.Remove(tmp)
			return "", fmt.Errorf("testutil: go build ./%s: %v\n%s", name, err, out)
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			return "", fmt.Errorf("testutil: %w", err)
		}
	}
	return dir, nil
}

// moduleRoot is the directory of the main module's go.mod.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("testutil: go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("testutil: not inside the qinling module")
	}
	return filepath.Dir(gomod), nil
}

func hashString(s string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(s))
	return h.Sum32()
}
