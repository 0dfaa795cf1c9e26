package local

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/orchestrator"
	"github.com/qinling-go/qinling/orchestrator/local/preload"
)

// The hostile cases of the sandbox's own layers (docs/isolation.md, "What
// stops what"): each attack is a function a determined author would write,
// run in both runtimes and both isolation modes on sandboxed workers.

// hostileRuntime is one runtime of the hostile cases: its image and how a
// function of it is made from one source per runtime.
type hostileRuntime struct {
	name, image string
	main        string // the package's file that function makes from src
	function    func(t *testing.T, rt, id, src string) orchestrator.Function
}

var hostileRuntimes = []hostileRuntime{
	{name: "python", image: "python3", main: "main.py", function: pyFunction},
	{name: "nodejs", image: "nodejs", main: "main.js", function: nodeFunction},
}

// fn is a function of rt whose main is src, with time and CPU enough for a
// loaded test machine (a strict Node.js execution is a fresh process).
func (rt hostileRuntime) fn(t *testing.T, id, src string) orchestrator.Function {
	fn := rt.function(t, "rt", id, src)
	fn.CPU, fn.Timeout = 300, 60*time.Second
	return fn
}

// hostileEach runs body for each runtime and isolation mode, on an
// orchestrator of its own with a pool for the runtime, in parallel.
func hostileEach(t *testing.T, body func(t *testing.T, o *Orchestrator, rt hostileRuntime, strict bool)) {
	hostileEachWith(t, nil, body)
}

// hostileEachWith is hostileEach with mutate applied to each orchestrator's
// configuration last.
func hostileEachWith(t *testing.T, mutate func(*Config), body func(t *testing.T, o *Orchestrator, rt hostileRuntime, strict bool)) {
	for _, rt := range hostileRuntimes {
		for _, strict := range []bool{false, true} {
			mode := map[bool]string{false: "reuse", true: "strict"}[strict]
			t.Run(rt.name+"/"+mode, func(t *testing.T) {
				if rt.name == "nodejs" {
					requireNode(t)
				}
				o := newSandboxed(t, func(c *Config) {
					c.NodeJS, c.MaxPids = nodeJS, 64
					c.Isolation = Isolation{Strict: strict, Spares: 1, Preload: Preload{Slots: 4}}
					if mutate != nil {
						mutate(c)
					}
				})
				require.NoError(t, o.CreatePool(context.Background(), orchestrator.Runtime{ID: "rt", Image: rt.image}))
				body(t, o, rt, strict)
			})
		}
	}
}

// hostileSocketSrc plants links to another socket wherever it can write and
// looks for the worker's socket; with an input "n" it only echoes it.
var hostileSocketSrc = map[string]string{
	"python": `import os
def main(n=None, **kw):
    if n is not None:
        return {'n': n}
    planted = []
    for d in ('/var/qinling/run', '/var/qinling', '/var/qinling/packages', '/', '/tmp', '/dev'):
        try:
            os.symlink('/run/decoy.sock', os.path.join(d, 'sock'))
            planted.append(d)
        except OSError:
            pass
    return {'planted': planted, 'run_dir': os.path.exists('/var/qinling/run'),
            'cmdline': open('/proc/1/cmdline').read().split('\0')}
`,
	"nodejs": `const fs = require('fs');
exports.main = (context, input) => {
  if (input && input.n !== undefined) return { n: input.n };
  const planted = [];
  for (const d of ['/var/qinling/run', '/var/qinling', '/var/qinling/packages', '/', '/tmp', '/dev']) {
    try { fs.symlinkSync('/run/decoy.sock', d + '/sock'); planted.push(d); } catch (e) { /* read-only */ }
  }
  let cmdline = [];
  try { cmdline = fs.readFileSync('/proc/1/cmdline', 'utf8').split('\0'); } catch (e) { /* strict: its own PID 1 */ }
  return { planted, run_dir: fs.existsSync('/var/qinling/run'), cmdline };
};
`,
}

// TestHostile_Socket: the engine owns each worker's socket. A function finds
// no path to it and can plant a link only in its own /tmp; the socket
// stays the engine's (a socket, in a directory only the engine writes)
// and only the worker's server holds it (no zygote, no execution process);
// later callers get their own results; and a link put where the socket is
// (as a function that could write there would) does not make the engine
// talk to the socket it points to.
func TestHostile_Socket(t *testing.T) {
	hostileEach(t, func(t *testing.T, o *Orchestrator, rt hostileRuntime, strict bool) {
		fn := rt.fn(t, "fn-socket", hostileSocketSrc[rt.name])
		w := scaleUp(t, o, fn)
		res, err := run(t, o, w, fn, nil)
		require.NoError(t, err)
		var seen struct {
			Planted []string `json:"planted"`
			RunDir  bool     `json:"run_dir"`
			Cmdline []string `json:"cmdline"`
		}
		output(t, res, &seen)
		assert.Equal(t, []string{"/tmp"}, seen.Planted, "only its own /tmp is writable")
		assert.False(t, seen.RunDir, "no socket directory in the sandbox")
		for _, a := range seen.Cmdline {
			assert.NotContains(t, a, "/sock", "the worker's command line names no socket path: %q", seen.Cmdline)
		}
		requireEchoes(t, o, w, fn, "a later caller gets its own result")

		wk := workerOf(o, w.Name)
		sock := filepath.Join(wk.dir, socketName)
		requireEngineOwned(t, sock)
		holders := socketHolders(t, sock, append([]int{wk.pid}, descendantsOf(wk.pid)...))
		assert.Equal(t, []int{wk.pid}, holders, "only the worker's server holds its listening socket")

		// A link where the socket is, to a decoy that answers every call.
		var reached atomic.Int64
		decoy := filepath.Join(shortTempDir(t), "decoy")
		ln, err := net.Listen("unix", decoy)
		require.NoError(t, err)
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			reached.Add(1)
			fmt.Fprint(w, `{"output": "the decoy's answer", "success": true}`)
		})}
		go func() { _ = srv.Serve(ln) }()
		t.Cleanup(func() { _ = srv.Close() })
		require.NoError(t, os.Rename(sock, sock+".real"))
		require.NoError(t, os.Symlink(decoy, sock))
		o.client.Close() // no kept-alive connection: the next call dials
		_, err = run(t, o, w, fn, map[string]any{"n": 9})
		require.ErrorIs(t, err, orchestrator.ErrWorkerNotFound)
		require.Zero(t, reached.Load(), "the engine never connected to the link's target")
	})
}

// hostileServerSrc, by runtime, looks for its worker's listening socket
// among its descriptors and tries to connect to it by every name it can
// think of, to send its server garbage and leave it a half request; with
// an input "n" it only echoes it. Python tells a listening socket from
// others (SO_ACCEPTCONN); Node.js cannot, and tries every socket it holds.
var hostileServerSrc = map[string]string{
	"python": `import os, socket, stat
KEPT = []
def main(n=None, **kw):
    if n is not None:
        return {'n': n}
    found, reached = [], {}
    for fd in range(3, 256):
        try:
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                continue
            s = socket.socket(fileno=os.dup(fd))
        except OSError:
            continue
        with s:
            if not s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
                continue
            found.append(fd)
            for target in (s.getsockname(), '/proc/self/fd/%d' % fd, '/proc/1/fd/%d' % fd):
                c = socket.socket(s.family, socket.SOCK_STREAM)
                try:
                    c.settimeout(5)
                    c.connect(target)
                    c.sendall(b'\x16\x03 garbage\r\n\r\nPOST /execute HTTP/1.1\r\nContent-Length: 99\r\n\r\n{')
                    KEPT.append(c)   # left open, half a request sent
                    reached[str(target)] = 'connected'
                except OSError as e:
                    c.close()
                    reached[str(target)] = type(e).__name__
    return {'found': found, 'reached': reached}
`,
	"nodejs": `const fs = require('fs'), net = require('net');
const KEPT = [];
function attempt(path) {
  return new Promise((resolve) => {
    let c;
    try { c = net.connect({ path }); } catch (e) { resolve(e.code || String(e)); return; }
    c.setTimeout(5000, () => { c.destroy(); resolve('timeout'); });
    c.on('connect', () => {
      c.write('\x16\x03 garbage\r\n\r\nPOST /execute HTTP/1.1\r\nContent-Length: 99\r\n\r\n{');
      KEPT.push(c); // left open, half a request sent
      resolve('connected');
    });
    c.on('error', (e) => resolve(e.code || String(e)));
  });
}
exports.main = async (context, input) => {
  if (input && input.n !== undefined) return { n: input.n };
  const found = [], reached = {};
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    let link;
    try { link = fs.readlinkSync('/proc/self/fd/' + fd); } catch (e) { continue; }
    if (!link.startsWith('socket:')) continue;
    found.push(Number(fd));
    for (const target of ['/proc/self/fd/' + fd, '/proc/1/fd/' + fd]) reached[target] = await attempt(target);
  }
  return { found, reached };
};
`,
}

// hostileWire is what a neighbour that reaches a worker's server (another
// process of a Kubernetes pod, where the server listens on TCP) may send it,
// and the status the Python runtime's own server answers (wire.py) before
// closing. Node.js's server is its http module's: it may take what is
// within its limits (a hundred short headers) and answer an execution
// without the worker's token with 403, so for it a case only needs an
// answer or a close, never a success for an execution.
var hostileWire = []struct {
	name, send string
	status     int
	execute    bool // a request for /execute
}{
	{"binary garbage", "\x16\x03\x01\x00\xff\r\n\r\n", http.StatusBadRequest, false},
	{"chunked body", "POST /execute HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", http.StatusBadRequest, true},
	{"header flood", "GET /ping HTTP/1.1\r\n" + strings.Repeat("X-A: b\r\n", 100) + "\r\n", http.StatusRequestHeaderFieldsTooLarge, false},
	{"huge body announced", "POST /execute HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n", http.StatusRequestEntityTooLarge, true},
	{"unknown version", "GET /ping HTTP/3.0\r\n\r\n", http.StatusHTTPVersionNotSupported, false},
}

// TestHostile_WorkerServer: a function cannot reach its own worker's HTTP
// server (under reuse it holds the listening socket, whose name leads
// nowhere in the sandbox; a strict execution holds none), and what reaches
// it anyway (a pod's neighbours over TCP; here the engine's side of the
// socket) cannot stop it: garbage is refused, half requests left hanging
// hold only their own connection, and the same worker answers the next calls.
func TestHostile_WorkerServer(t *testing.T) {
	hostileEach(t, func(t *testing.T, o *Orchestrator, rt hostileRuntime, strict bool) {
		fn := rt.fn(t, "fn-server", hostileServerSrc[rt.name])
		w := scaleUp(t, o, fn)
		pid := workerOf(o, w.Name).pid
		res, err := run(t, o, w, fn, nil)
		require.NoError(t, err)
		var seen struct {
			Found   []int             `json:"found"`
			Reached map[string]string `json:"reached"`
		}
		output(t, res, &seen)
		t.Logf("the function found sockets %v and got %v", seen.Found, seen.Reached)
		if rt.name == "python" {
			if strict {
				assert.Empty(t, seen.Found, "an execution process holds no listening socket")
			} else {
				assert.Equal(t, []int{listenFD}, seen.Found, "the server's own socket, in the function's process")
			}
		}
		for target, got := range seen.Reached {
			assert.NotEqual(t, "connected", got, "the function reached its server by %s", target)
		}

		sock := filepath.Join(workerOf(o, w.Name).dir, socketName)
		for _, c := range hostileWire {
			conn, err := net.Dial("unix", sock)
			require.NoError(t, err)
			_, _ = conn.Write([]byte(c.send)) // the server may close before reading it all
			require.NoError(t, conn.SetReadDeadline(time.Now().Add(30*time.Second)))
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if rt.name == "python" {
				require.NoError(t, err, c.name)
				assert.Equal(t, c.status, resp.StatusCode, c.name)
				assert.True(t, resp.Close, "%s: the connection closes", c.name)
			} else if err != nil {
				var ne net.Error
				assert.False(t, errors.As(err, &ne) && ne.Timeout(), "%s: neither an answer nor a close within 30 s", c.name)
			} else if c.execute {
				assert.GreaterOrEqual(t, resp.StatusCode, 400, "%s: nothing runs", c.name)
			}
			_ = conn.Close()
		}
		for range 8 { // half requests, left hanging while the calls run
			conn, err := net.Dial("unix", sock)
			require.NoError(t, err)
			t.Cleanup(func() { _ = conn.Close() })
			_, err = conn.Write([]byte("POST /execute HTTP/1.1\r\nContent-Length: 500\r\n\r\n{\"execution_id\""))
			require.NoError(t, err)
		}
		requireEchoes(t, o, w, fn, "the next calls are answered")
		wk := workerOf(o, w.Name)
		require.NotNil(t, wk, "the worker is still there")
		assert.Equal(t, pid, wk.pid, "the same worker process")
	})
}

// requireEchoes calls fn, whose input "n" it echoes, 3 times on w and
// checks that each call gets its own input back.
func requireEchoes(t *testing.T, o *Orchestrator, w orchestrator.Worker, fn orchestrator.Function, msg string) {
	t.Helper()
	for i := range 3 {
		res, err := run(t, o, w, fn, map[string]any{"n": i})
		require.NoError(t, err)
		var echo struct {
			N int `json:"n"`
		}
		output(t, res, &echo)
		require.Equal(t, i, echo.N, msg)
	}
}

// requireEngineOwned checks that sock is a socket (not a link) in a
// directory only the engine's user can write or enter.
func requireEngineOwned(t *testing.T, sock string) {
	t.Helper()
	fi, err := os.Lstat(sock)
	require.NoError(t, err)
	require.Equal(t, os.ModeSocket, fi.Mode().Type(), "%s is a socket", sock)
	di, err := os.Stat(filepath.Dir(sock))
	require.NoError(t, err)
	st := di.Sys().(*syscall.Stat_t)
	assert.Equal(t, uint32(os.Geteuid()), st.Uid, "the engine's directory")
	assert.Equal(t, os.FileMode(0o700), di.Mode().Perm(), "nobody else may write or enter it")
}

// socketHolders returns which of pids hold the listening socket bound at
// path (found in the engine's /proc/net/unix).
func socketHolders(t *testing.T, path string, pids []int) []int {
	t.Helper()
	f, err := os.Open("/proc/net/unix")
	require.NoError(t, err)
	defer f.Close()
	inode := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 8 && fields[7] == path {
			inode = fields[6]
		}
	}
	require.NotEmpty(t, inode, "%s is listed in /proc/net/unix", path)
	var out []int
	for _, pid := range pids {
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		for _, fd := range fds {
			if l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); l == "socket:["+inode+"]" {
				out = append(out, pid)
				break
			}
		}
	}
	return out
}

// hostileDiskSrc writes 3 files of 100 MiB in every directory it might
// write to, and reports the MiB each took.
var hostileDiskSrc = map[string]string{
	"python": `import os
DIRS = ['/', '/tmp', '/dev/shm', '/dev', '/var/qinling', '/var/qinling/packages', '/var/qinling/runtime',
        '/var/qinling/cgroup/exec', '/proc/self', os.getcwd(), os.environ.get('HOME', '/')]
def main(**kw):
    chunk = b'x' * (1 << 20)
    out = {}
    for k, d in enumerate(DIRS):   # names of their own: /dev/shm is /tmp
        mib, err = 0, None
        for i in range(3):
            try:
                with open(os.path.join(d, 'fill-%d-%d' % (k, i)), 'wb', buffering=0) as f:
                    for _ in range(100):
                        f.write(chunk)
                        mib += 1
            except OSError as e:
                err = e.strerror
                break
        out[d] = {'mib': mib, 'error': err}
    return out
`,
	"nodejs": `const fs = require('fs');
const os = require('os');
exports.main = () => {
  const dirs = ['/', '/tmp', '/dev/shm', '/dev', '/var/qinling', '/var/qinling/packages', '/var/qinling/runtime',
    '/var/qinling/cgroup/exec', '/proc/self', process.cwd(), os.homedir()];
  const chunk = Buffer.alloc(1 << 20, 120);
  const out = {};
  for (const [k, d] of dirs.entries()) {   // names of their own: /dev/shm is /tmp
    let mib = 0, error = null;
    try {
      for (let i = 0; i < 3; i++) {
        const fd = fs.openSync(d + '/fill-' + k + '-' + i, 'w');
        try { for (let j = 0; j < 100; j++) { fs.writeSync(fd, chunk); mib++; } } finally { fs.closeSync(fd); }
      }
    } catch (e) { error = e.code; }
    out[d] = { mib, error };
  }
  return out;
};
`,
}

// TestHostile_Disk: a function of 32 MiB that writes 300 MiB wherever it
// can. Every writable mount of the worker's processes (server, zygotes,
// prepared execution processes) is a size-bounded tmpfs, a device node, or
// the executions' cpu group: nothing it writes lands on a host file system.
// What it writes stops at the tmpfs's size or at its memory limit (tmpfs
// pages are charged to the worker's memory cgroup, which has no swap), and
// the host directory of the worker does not grow.
func TestHostile_Disk(t *testing.T) {
	hostileEach(t, func(t *testing.T, o *Orchestrator, rt hostileRuntime, strict bool) {
		fn := rt.fn(t, "fn-disk", hostileDiskSrc[rt.name])
		fn.MemorySize = 32 << 20
		w := scaleUp(t, o, fn)
		wk := workerOf(o, w.Name)
		for _, pid := range append([]int{wk.pid}, descendantsOf(wk.pid)...) {
			requireBoundedWritableMounts(t, pid)
		}
		before := diskUsage(t, wk.dir)
		res, err := run(t, o, w, fn, nil)
		if err == nil && res.Success {
			var wrote map[string]struct {
				MiB   int     `json:"mib"`
				Error *string `json:"error"`
			}
			output(t, res, &wrote)
			total := 0
			for d, got := range wrote {
				total += got.MiB
				assert.NotNil(t, got.Error, "%s: 300 MiB written: %v", d, wrote)
			}
			assert.LessOrEqual(t, total, int(DefaultTmpSize>>20), "at most one /tmp's worth: %v", wrote)
		} else {
			// Stopped by its memory limit first: the execution failed.
			t.Logf("the execution failed: %v %s %s", err, res.Output, res.Logs)
		}
		if after := diskUsage(t, wk.dir); after >= 0 {
			assert.Less(t, after-before, int64(1<<20), "the worker's host directory did not grow")
		}
	})
}

// requireBoundedWritableMounts checks pid's mounts (its /proc/<pid>/mountinfo):
// each one that is writable is a tmpfs with a size, a device node of /dev,
// proc, or a cgroup directory: none is on a file system backed by a disk.
func requireBoundedWritableMounts(t *testing.T, pid int) {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", pid))
	if err != nil {
		return // ended meanwhile
	}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		require.True(t, ok, line)
		f, g := strings.Fields(pre), strings.Fields(post)
		require.True(t, len(f) >= 6 && len(g) >= 3, line)
		target, opts, fstype, super := f[4], strings.Split(f[5], ","), g[0], g[2]
		if slices.Contains(opts, "ro") {
			continue
		}
		switch {
		case fstype == "tmpfs":
			assert.Contains(t, super, "size=", "pid %d: the tmpfs at %s is bounded: %s", pid, target, line)
		case fstype == "proc", fstype == "cgroup", fstype == "cgroup2":
		case fstype == "devtmpfs" && strings.HasPrefix(target, "/dev/"):
		default:
			t.Errorf("pid %d: %s is writable and on %s: %s", pid, target, fstype, line)
		}
	}
}

// diskUsage is the disk space, in bytes, the files below dirs take on the
// host, each hard-linked file counted once and the workers' mounts excluded
// (-1 if a dir is gone).
func diskUsage(t *testing.T, dirs ...string) int64 {
	t.Helper()
	type fileID struct{ dev, ino uint64 }
	seen := map[fileID]bool{}
	var total int64
	for _, dir := range dirs {
		st, err := os.Stat(dir)
		if err != nil {
			return -1
		}
		dev := st.Sys().(*syscall.Stat_t).Dev
		_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			info, err := d.Info()
			if err != nil {
				return nil
			}
			st := info.Sys().(*syscall.Stat_t)
			if st.Dev != dev {
				return filepath.SkipDir
			}
			if id := (fileID{st.Dev, st.Ino}); !seen[id] {
				seen[id] = true
				total += st.Blocks * 512
			}
			return nil
		})
	}
	return total
}

// hostileImportSrc leaves processes running from its module's import-time
// code, named (Python: their comm) or marked (Node.js: an argument)
// qinling-spy. Python's are one child and one daemonised process, each
// taking every listening socket it holds to answer callers in the
// function's place; Node.js's is a detached Node.js process. An execution
// reports its input, the spies its import started and those it can see.
var hostileImportSrc = map[string]string{
	"python": `import ctypes, os, socket, time

def _spy():
    ctypes.CDLL(None).prctl(15, b'qinling-spy', 0, 0, 0)   # PR_SET_NAME
    for fd in range(3, 256):
        try:
            s = socket.socket(fileno=os.dup(fd))
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
                if os.fork() == 0:
                    while True:
                        c, _ = s.accept()
                        c.recv(65536)
                        body = b'{"output": "stolen by the spy", "success": true, "duration": 0, "logs": ""}'
                        c.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n' % len(body) + body)
        except OSError:
            pass
    while True:
        time.sleep(1)

def _fork_spy():
    pid = os.fork()
    if pid == 0:
        try:
            _spy()
        finally:
            os._exit(0)
    return pid

SPAWNED = [_fork_spy()]
r, w = os.pipe()
if os.fork() == 0:   # and one daemonised
    os.setsid()
    os.write(w, b'%d' % _fork_spy())
    os._exit(0)
SPAWNED.append(int(os.read(r, 32)))
time.sleep(0.2)

def main(n=None, **kw):
    spies = []
    for p in os.listdir('/proc'):
        try:
            if p.isdigit() and open('/proc/%s/comm' % p).read().strip() == 'qinling-spy':
                spies.append(int(p))
        except OSError:
            pass
    return {'n': n, 'spawned': SPAWNED, 'spies': spies}
`,
	"nodejs": `const fs = require('fs');
const { spawn } = require('child_process');
const spy = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)', 'qinling-spy'], { detached: true, stdio: 'ignore' });
spy.unref();
exports.main = (context, input) => {
  const spies = fs.readdirSync('/proc').filter((p) => /^[0-9]+$/.test(p)).filter((p) => {
    try { return fs.readFileSync('/proc/' + p + '/cmdline', 'utf8').split('\0').includes('qinling-spy'); } catch (e) { return false; }
  }).map(Number);
  return { n: input.n, spawned: [spy.pid], spies };
};
`,
}

// TestHostile_ImportTimeProcesses, strict isolation: processes a function's
// import-time code leaves running (in Python's function zygote, preloaded;
// in Node.js's execution process) are killed before any call can meet
// them, hold no listening socket, and later callers get their own results.
// (Under reuse the import runs in the worker's server, which serves only
// that function: it is the function's, by design.)
func TestHostile_ImportTimeProcesses(t *testing.T) {
	for _, rt := range hostileRuntimes {
		t.Run(rt.name, func(t *testing.T) {
			if rt.name == "nodejs" {
				requireNode(t)
			}
			o := newStrict(t, func(c *Config) {
				c.NodeJS, c.MaxPids = nodeJS, 64
				c.Isolation.Preload.Policy = preload.Static{Level: preload.Function}
			})
			require.NoError(t, o.CreatePool(context.Background(), orchestrator.Runtime{ID: "rt", Image: rt.image}))
			fn := rt.fn(t, "fn-import", hostileImportSrc[rt.name])
			fn.MemorySize = 128 << 20
			w := scaleUp(t, o, fn)
			wk := workerOf(o, w.Name)
			if rt.name == "python" {
				o.mu.Lock()
				level := wk.level
				o.mu.Unlock()
				require.Equal(t, preload.Function, level, "imported in the function zygote")
				require.Empty(t, spiesOf(wk.pid), "the import's processes were killed before the zygote was ready")
			}
			for i := range 4 {
				res, err := run(t, o, w, fn, map[string]any{"n": i})
				require.NoError(t, err)
				var got struct {
					N       int   `json:"n"`
					Spawned []int `json:"spawned"`
					Spies   []int `json:"spies"`
				}
				output(t, res, &got)
				require.Equal(t, i, got.N, "a later caller gets its own result")
				require.Len(t, got.Spawned, map[string]int{"python": 2, "nodejs": 1}[rt.name], "the import started its spies")
				if rt.name == "python" {
					require.Empty(t, got.Spies, "no process of the import is left")
				} else {
					require.Equal(t, got.Spawned, got.Spies, "only this execution's own, in its own PID namespace")
				}
			}
			eventually(t, "no spy left in the worker", func() bool { return len(spiesOf(wk.pid)) == 0 })
			holders := socketHolders(t, filepath.Join(wk.dir, socketName), append([]int{wk.pid}, descendantsOf(wk.pid)...))
			require.Equal(t, []int{wk.pid}, holders, "only the server holds the listening socket")
		})
	}
}

// spiesOf lists pid's descendants named or marked qinling-spy.
func spiesOf(pid int) []int {
	var out []int
	for _, p := range descendantsOf(pid) {
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", p))
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p))
		if strings.TrimSpace(string(comm)) == "qinling-spy" || slices.Contains(strings.Split(string(cmdline), "\x00"), "qinling-spy") {
			out = append(out, p)
		}
	}
	return out
}

// hostileStuckPy never returns: it swallows every exception, keeps a thread
// of its own alive and writes to stray descriptors (not its connection's:
// that would only garble its own answer, as it may).
// hostileStuckSrc never returns: it leaves a thread (Python) or a timer
// (Node.js) behind, writes garbage to every pipe it finds, and goes on
// through whatever is thrown at it.
var hostileStuckSrc = map[string]string{
	"python": `import os, threading, time
def main(**kw):
    threading.Thread(target=threading.Event().wait, daemon=True).start()
    for fd in range(3, 64):
        try:
            if os.readlink('/proc/self/fd/%d' % fd).startswith('pipe:'):
                os.write(fd, b'garbage\r\n\r\n')
        except OSError:
            pass
    while True:
        try:
            time.sleep(0.05)
        except BaseException:
            pass
`,
	"nodejs": `const fs = require('fs');
exports.main = () => {
  setInterval(() => {}, 1000);
  for (let fd = 3; fd < 64; fd++) {
    try {
      if (fs.readlinkSync('/proc/self/fd/' + fd).startsWith('pipe:')) fs.writeSync(fd, 'garbage\r\n\r\n');
    } catch (e) {}
  }
  for (;;) {
    try { Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50); } catch (e) {}
  }
};
`,
}

// hostileFineSrc answers "fine".
var hostileFineSrc = map[string]string{
	"python": "def main(**kw):\n    return 'fine'\n",
	"nodejs": "exports.main = () => 'fine';\n",
}

// TestHostile_StuckConcurrentCalls: four concurrent calls of a function
// that never returns are each answered with the timeout, and the next call
// is served (by a fresh function's worker: under reuse a Node.js function
// that writes garbage into its worker's own pipes can crash it, failing its
// own calls as lost). Under warm reuse the Python function runs in the thread that
// read its call and one watchdog answers calls past their timeout
// (runtimes/python3/_qinling_runtime/reuse.py): its worker retires, and a
// new worker serves the next call.
func TestHostile_StuckConcurrentCalls(t *testing.T) {
	hostileEach(t, func(t *testing.T, o *Orchestrator, rt hostileRuntime, strict bool) {
		fn := rt.fn(t, "fn-stuck", hostileStuckSrc[rt.name])
		fn.Timeout = 2 * time.Second
		w := scaleUp(t, o, fn)
		type answer struct {
			res orchestrator.Result
			err error
		}
		answers := make(chan answer, 4)
		for range 4 {
			go func() {
				res, err := o.Run(context.Background(), w, orchestrator.Invocation{
					ExecutionID: "exec-" + randomHex(4), FunctionID: fn.ID, Entry: fn.Entry,
					CPU: fn.CPU, MemorySize: fn.MemorySize, Timeout: fn.Timeout,
				})
				answers <- answer{res, err}
			}()
		}
		for range 4 {
			a := <-answers
			if rt.name == "nodejs" && !strict && errors.Is(a.err, orchestrator.ErrWorkerLost) {
				// Its garbage reached libuv's own pipes in the worker's
				// process, which the function shares under reuse, and the
				// worker crashed: its own calls fail, nobody else's.
				continue
			}
			require.NoError(t, a.err)
			require.JSONEq(t, `"Function execution timeout."`, string(a.res.Output))
		}
		if rt.name == "python" && !strict {
			_, err := run(t, o, w, fn, nil)
			require.ErrorIs(t, err, orchestrator.ErrWorkerNotFound, "the tainted worker retired")
		}
		fine := rt.fn(t, "fn-after-stuck", hostileFineSrc[rt.name])
		res, err := run(t, o, scaleUp(t, o, fine), fine, nil)
		require.NoError(t, err)
		require.JSONEq(t, `"fine"`, string(res.Output))
	})
}
