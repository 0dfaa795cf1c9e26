//go:build functional

package functional

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/testutil"
)

// hostileJS is the Node.js counterpart of hostilePy: the hostile functions
// as exports of one module, harmless when called with {"harm": false}.
const hostileJS = `const fs = require('fs');
const harmless = (input) => input && input.harm === false;

exports.loop = (context, input) => {
  if (harmless(input)) return 'fine';
  console.log('looping');
  while (true) {}
};

// JavaScript objects: the heap limit (memory_size) stops it.
exports.heap = (context, input) => {
  if (harmless(input)) return 'fine';
  const hog = [];
  for (;;) hog.push(new Array(1 << 16).fill(hog.length));
};

// Buffers live outside the JavaScript heap: the cgroup's limit stops it.
exports.buffers = (context, input) => {
  if (harmless(input)) return 'fine';
  const hog = [];
  for (;;) hog.push(Buffer.alloc(8 << 20, 1));
};

// Each Node.js process has several threads: the pids limit stops it.
exports.forks = async (context, input) => {
  if (harmless(input)) return 'fine';
  const { spawn } = require('child_process');
  for (;;) {
    await new Promise((resolve, reject) => {
      const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
      child.on('spawn', resolve);
      child.on('error', reject);
    });
  }
};

exports.read = (context, input) => {
  if (harmless(input)) return 'fine';
  const out = {};
  for (const p of input.paths) {
    try {
      out[p] = 'read ' + fs.readFileSync(p).length + ' bytes';
    } catch (e) {
      out[p] = e.code;
    }
  }
  return out;
};

let count = 0;
exports.counter = () => ++count;

exports.leave_file = () => {
  const seen = fs.existsSync('/tmp/left-behind');
  fs.writeFileSync('/tmp/left-behind', 'secret of the previous caller');
  return seen;
};

// Kills every process it can find (under strict isolation: the processes
// prepared for this function's next calls, the server), probes every pid,
// and plants a file; {"look": true} reports what an execution sees instead.
const numericDirs = (dir) => fs.readdirSync(dir).filter((n) => /^[0-9]+$/.test(n)).map(Number);
exports.attack = (context, input) => {
  if (harmless(input)) return 'fine';
  if (input && input.look) return { pid: process.pid, seen: numericDirs('/proc'), tmp: fs.readdirSync('/tmp') };
  const seen = numericDirs('/proc');
  const killed = [];
  for (const pid of seen) {
    if (pid === process.pid) continue;
    try { process.kill(pid, 'SIGKILL'); killed.push(pid); } catch (e) { /* not ours */ }
  }
  const threads = numericDirs('/proc/self/task');
  const found = [];
  for (let pid = 2; pid < 32768; pid++) {
    if (threads.includes(pid)) continue;
    try { process.kill(pid, 0); found.push(pid); } catch (e) { /* ESRCH */ }
  }
  let all;
  try { process.kill(-1, 'SIGKILL'); all = 'sent'; } catch (e) { all = e.code; }
  fs.writeFileSync('/tmp/planted', 'from the attacker');
  return { pid: process.pid, seen, killed, found, all };
};

exports.hello = async (context, input) => {
  await new Promise((resolve) => setTimeout(resolve, 10));
  console.log('Hello, ' + input.name);
  return 'Hello, ' + input.name;
};
`

// hostileNodeMaxPids is the Node.js servers' max_pids: the default, which
// leaves room for Node.js's own threads (docs/isolation.md).
const hostileNodeMaxPids = 64

// startHostileNode is startHostile with a nodejs runtime (upstream's image name).
func startHostileNode(t *testing.T, isolation string) *hostileServer {
	t.Helper()
	return startHostileRuntime(t, isolation, "openstackqinling/nodejs-runtime", hostileNodeMaxPids, 1)
}

// nodeFunction creates a function running entry of hostileJS, with upstream's
// default memory_size (32 MiB) unless extra says otherwise.
func (h *hostileServer) nodeFunction(t *testing.T, entry string, extra ...string) string {
	t.Helper()
	pkg := testutil.Zip(t, map[string]string{"hostile.js": hostileJS})
	fn := createFunction(t, h.tgt, packageForm(h.runtime, "node-"+strings.ReplaceAll(entry, "_", "-"), "hostile."+entry, pkg, extra...))
	return fn["id"].(string)
}

func TestHostileNodeFunctions(t *testing.T) {
	testutil.SkipIfReal(t, srv, "needs servers with their own isolation and limits")
	t.Parallel()
	for _, isolation := range []string{"reuse", "strict"} {
		t.Run(isolation, func(t *testing.T) {
			t.Parallel()
			h := startHostileNode(t, isolation)
			strict := isolation == "strict"
			cases := []hostileCase{
				{"async hello with its log", func(t *testing.T) {
					fid := h.nodeFunction(t, "hello")
					ex, out, logs := h.run(t, fid, map[string]any{"name": "Qinling"})
					require.Equal(t, "success", ex["status"], "%v\nlog:\n%s", ex, logs)
					assert.Equal(t, "Hello, Qinling", out)
					assert.Contains(t, logs, "Hello, Qinling\n")
				}},
				{"endless loop times out", func(t *testing.T) {
					fid := h.nodeFunction(t, "loop", "timeout", "1", "cpu", "300")
					_, logs := h.fails(t, fid, nil, "Function execution timeout.")
					assert.Contains(t, logs, "looping")
					h.recovers(t, fid)
				}},
				{"heap bomb hits the JavaScript heap limit", func(t *testing.T) {
					fid := h.nodeFunction(t, "heap", "timeout", "20", "cpu", "300")
					_, logs := h.fails(t, fid, nil, "Function execution failed because of too much resource consumption")
					assert.Contains(t, logs, "JavaScript heap limit reached (32 MiB)")
					h.recovers(t, fid)
				}},
				{"buffer bomb hits the memory limit", func(t *testing.T) {
					fid := h.nodeFunction(t, "buffers", "timeout", "20", "cpu", "300")
					h.fails(t, fid, nil, "too much resource consumption: it exceeded its memory limit of 33554432 bytes.")
					h.recovers(t, fid)
				}},
				{"fork bomb hits the pids limit", func(t *testing.T) {
					fid := h.nodeFunction(t, "forks", "timeout", "20", "cpu", "300", "memory_size", strconv.Itoa(128<<20))
					h.fails(t, fid, nil, fmt.Sprintf("it reached its limit of %d processes and threads", hostileNodeMaxPids))
					h.recovers(t, fid)
				}},
				{"host files and other packages are not there", func(t *testing.T) {
					other := h.nodeFunction(t, "counter")
					fid := h.nodeFunction(t, "read")
					paths := []string{
						"/etc/qinling/qinling.conf", h.srv.ConfigPath, h.srv.StateDir + "/qinling.sqlite",
						"/var/qinling/packages/" + other + "/hostile.js", "/etc/passwd",
					}
					ex, out, _ := h.run(t, fid, map[string]any{"paths": paths})
					require.Equal(t, "success", ex["status"], "%v", ex)
					for _, p := range paths {
						assert.Equal(t, "ENOENT", out.(map[string]any)[p], p)
					}
					h.recovers(t, fid)
				}},
				{"killing what it can find changes nothing for the next calls", func(t *testing.T) {
					if !strict {
						t.Skip("under warm reuse executions share the server's process: strict isolation's promise")
					}
					fid := h.nodeFunction(t, "attack", "timeout", "20", "cpu", "300")
					ex, out, logs := h.run(t, fid, map[string]any{})
					require.Equal(t, "success", ex["status"], "%v\nlog:\n%s", ex, logs)
					got := out.(map[string]any)
					assert.EqualValues(t, 1, got["pid"], "PID 1 of a PID namespace of its own")
					assert.Equal(t, []any{float64(1)}, got["seen"], "/proc shows only its own namespace")
					assert.Empty(t, got["killed"])
					assert.Empty(t, got["found"], "no process outside its namespace can be named")
					assert.Equal(t, "EPERM", got["all"], "kill(-1) is denied by the seccomp filter")
					for range 3 {
						ex, out, logs := h.run(t, fid, map[string]any{"look": true})
						require.Equal(t, "success", ex["status"], "the next call: %v\nlog:\n%s", ex, logs)
						got := out.(map[string]any)
						assert.EqualValues(t, 1, got["pid"])
						assert.Equal(t, []any{float64(1)}, got["seen"])
						assert.Empty(t, got["tmp"], "a fresh /tmp: the planted file is not there")
					}
					h.recovers(t, fid)
				}},
				{"module globals across calls", func(t *testing.T) {
					h.globalsAcrossCalls(t, h.nodeFunction(t, "counter"), strict)
				}},
				{"file written by one execution, read by the next", func(t *testing.T) {
					h.fileAcrossCalls(t, h.nodeFunction(t, "leave_file"), strict)
				}},
			}
			h.runCases(t, cases, func(t *testing.T) string { return h.nodeFunction(t, "counter") })
		})
	}
}
