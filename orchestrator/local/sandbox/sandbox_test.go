package sandbox

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/qinling-go/qinling/pkg/testutil"
)

func TestLayout_FollowsLinksAndDedupes(t *testing.T) {
	t.Parallel()
	dir, err := filepath.EvalSymlinks(t.TempDir())
	require.NoError(t, err)
	mk := func(p string) string { return filepath.Join(dir, p) }
	require.NoError(t, os.MkdirAll(mk("usr/lib/x"), 0o755))
	require.NoError(t, os.MkdirAll(mk("usr/lib64"), 0o755))
	require.NoError(t, os.WriteFile(mk("usr/lib/x/ld.so"), nil, 0o644))
	require.NoError(t, os.WriteFile(mk("usr/lib/x/libc.so"), nil, 0o644))
	require.NoError(t, os.Symlink("usr/lib", mk("lib")))     // relative, merged /usr
	require.NoError(t, os.Symlink("usr/lib64", mk("lib64"))) // relative
	require.NoError(t, os.Symlink(mk("lib/x/ld.so"), mk("usr/lib64/ld.so")))

	var l Layout
	require.NoError(t, l.Expose(mk("lib64/ld.so")))
	require.NoError(t, l.Expose(mk("usr/lib/x")))
	require.NoError(t, l.Expose(mk("usr/lib/x/libc.so"))) // under a bound directory
	require.ErrorIs(t, l.Expose(mk("missing")), os.ErrNotExist)
	require.ErrorContains(t, l.Expose("relative"), "not an absolute path")

	require.Equal(t, []Mount{
		{Kind: KindBind, Source: mk("usr/lib/x"), Target: mk("usr/lib/x")},
		{Kind: KindSymlink, Source: "usr/lib", Target: mk("lib")},
		{Kind: KindSymlink, Source: "usr/lib64", Target: mk("lib64")},
		{Kind: KindSymlink, Source: mk("lib/x/ld.so"), Target: mk("usr/lib64/ld.so")},
	}, l.Mounts())
}

func TestLayout_LinkLoop(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	require.NoError(t, os.Symlink(filepath.Join(dir, "b"), filepath.Join(dir, "a")))
	require.NoError(t, os.Symlink(filepath.Join(dir, "a"), filepath.Join(dir, "b")))
	var l Layout
	require.ErrorContains(t, l.Expose(filepath.Join(dir, "a")), "too many symbolic links")
}

func TestCommand_Validation(t *testing.T) {
	t.Parallel()
	_, err := Command(Spec{}, []string{"python3"})
	require.ErrorContains(t, err, "absolute path")
	_, err = Command(Spec{Isolate: &Isolation{Root: "/x", UID: 0, GID: 1}}, []string{"/bin/true"})
	require.ErrorContains(t, err, "unprivileged")
	cmd, err := Command(Spec{Isolate: &Isolation{Root: "/x", UID: 1, GID: 1, Network: true}}, []string{"/bin/true", "a"})
	require.NoError(t, err)
	require.Equal(t, []string{"/bin/true", "a"}, cmd.Args[3:], "the command appears verbatim")
	require.Zero(t, cmd.SysProcAttr.Cloneflags&unix.CLONE_NEWNET, "a shared network has no network namespace")
}

const python3 = "/usr/bin/python3"

// pythonLayout is what the orchestrator exposes for Debian's python3.
func pythonLayout(t *testing.T) []Mount {
	t.Helper()
	var l Layout
	for _, p := range []string{python3, "/usr/lib/python3.11", "/usr/lib/python3/dist-packages", "/lib64/ld-linux-x86-64.so.2", "/usr/lib/x86_64-linux-gnu"} {
		if err := l.Expose(p); err != nil {
			t.Skipf("python3 layout: %v", err)
		}
	}
	return l.Mounts()
}

// runPython runs script in a sandbox and returns its output and error.
func runPython(t *testing.T, iso *Isolation, script string) (string, error) {
	t.Helper()
	iso.Root = t.TempDir()
	iso.Mounts = append(pythonLayout(t), append(SystemMounts(1<<20, "/tmp"), iso.Mounts...)...)
	if iso.UID == 0 {
		iso.UID, iso.GID = 65534, 65534
	}
	spec := Spec{Env: []string{"PATH=/usr/bin"}, Dir: "/tmp", Isolate: iso, Rlimits: []Rlimit{{Resource: unix.RLIMIT_NOFILE, Value: 1024}}}
	cmd, err := Command(spec, []string{python3, "-I", "-S", "-c", script})
	require.NoError(t, err)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	return out.String(), err
}

func TestSandbox_View(t *testing.T) {
	testutil.RequireRoot(t, "sandboxes need root (namespaces and mounts)")
	t.Parallel()
	data := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(data, "code.py"), []byte("x = 1\n"), 0o644))
	require.NoError(t, os.Chmod(data, 0o755))
	out, err := runPython(t, &Isolation{Hostname: "box", Mounts: []Mount{{Kind: KindBind, Source: data, Target: "/var/pkg"}}}, `
import json, os, socket
def tryopen(p, mode='r'):
    try:
        open(p, mode).close()
        return 'ok'
    except OSError as e:
        return e.__class__.__name__
st = dict(l.split(':\t', 1) for l in open('/proc/self/status').read().splitlines() if ':\t' in l)
print(json.dumps({
    'root': sorted(os.listdir('/')),
    'pids': sorted(p for p in os.listdir('/proc') if p.isdigit()),
    'uid': [os.getuid(), os.geteuid(), os.getgid()], 'groups': os.getgroups(),
    'cap': [st['CapEff'].strip(), st['CapPrm'].strip(), st['CapBnd'].strip(), st['CapInh'].strip()],
    'nnp': st['NoNewPrivs'].strip(), 'host': socket.gethostname(),
    'pkg': open('/var/pkg/code.py').read(), 'pkgw': tryopen('/var/pkg/new', 'w'),
    'rootw': tryopen('/x', 'w'), 'usrw': tryopen('/usr/lib/python3.11/x', 'w'),
    'tmpw': tryopen('/tmp/x', 'w'), 'null': tryopen('/dev/null', 'w'),
    'etc': tryopen('/etc/passwd'), 'cgroup': open('/proc/self/cgroup').read().strip(),
}))
`)
	require.NoError(t, err, out)
	var got map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &got), out)
	require.Equal(t, []any{"dev", "lib", "lib64", "proc", "tmp", "usr", "var"}, got["root"])
	require.Equal(t, []any{"1"}, got["pids"], "only its own processes")
	require.Equal(t, []any{65534.0, 65534.0, 65534.0}, got["uid"])
	require.Empty(t, got["groups"])
	zero := "0000000000000000"
	require.Equal(t, []any{zero, zero, zero, zero}, got["cap"])
	require.Equal(t, "1", got["nnp"])
	require.Equal(t, "box", got["host"])
	require.Equal(t, "x = 1\n", got["pkg"])
	require.Equal(t, "OSError", got["pkgw"], "read-only file system")
	require.Equal(t, "OSError", got["rootw"])
	require.Equal(t, "OSError", got["usrw"])
	require.Equal(t, "ok", got["tmpw"])
	require.Equal(t, "ok", got["null"])
	require.Equal(t, "FileNotFoundError", got["etc"])
}

func TestSandbox_Network(t *testing.T) {
	testutil.RequireRoot(t, "sandboxes need root (namespaces and mounts)")
	t.Parallel()
	script := `
import socket, time
s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(1)   # loopback is up
for addr in [('127.0.0.1', 1), ('10.255.255.1', 80)]:
    start = time.monotonic()
    try:
        socket.create_connection(addr, timeout=5)
        print('connected')
    except OSError as e:
        print(type(e).__name__, e.errno, int(time.monotonic() - start))
`
	out, err := runPython(t, &Isolation{}, script)
	require.NoError(t, err, out)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Equal(t, []string{"ConnectionRefusedError 111 0", "OSError 101 0"}, lines, "refused and unreachable at once")
}

func TestSandbox_SetupFailureIsReported(t *testing.T) {
	testutil.RequireRoot(t, "sandboxes need root (namespaces and mounts)")
	t.Parallel()
	start := time.Now()
	out, err := runPython(t, &Isolation{Mounts: []Mount{{Kind: KindBind, Source: "/nonexistent", Target: "/x"}}}, "pass")
	require.Error(t, err)
	require.Contains(t, out, "qinling-sandbox: bind /x")
	require.Less(t, time.Since(start), 5*time.Second)
}

func TestCheck(t *testing.T) {
	testutil.RequireRoot(t, "sandboxes need root (namespaces and mounts)")
	t.Parallel()
	require.NoError(t, Check(t.TempDir(), 65534, 65534))
}
