//go:build functional

package functional

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/config"
	"github.com/qinling-go/qinling/pkg/testutil"
)

// Hostile functions against the engine's own result and log limits and the
// workers' host identity and seccomp filter (docs/isolation.md, "What stops
// what"): each attack in Python and Node.js, in both isolation modes.

// hardenPy: the attacks of a Python function.
const hardenPy = `import ctypes, os, sys

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
NR = dict(x86_64=dict(add_key=248, keyctl=250, ptrace=101, bpf=321, perf_event_open=298, mount=165),
          aarch64=dict(add_key=217, keyctl=219, ptrace=117, bpf=280, perf_event_open=241, mount=40))[os.uname().machine]
SESSION, USER = -3, -4            # KEY_SPEC_SESSION_KEYRING, KEY_SPEC_USER_KEYRING

def _call(name, *args):
    r = libc.syscall(NR[name], *args)
    return r if r >= 0 else os.strerror(ctypes.get_errno())

# Reuse: the function runs in the runtime's own process and raises the
# runtime's result limit (whatever module holds it) before returning 5 MiB.
def raise_limit(harm=True, **kw):
    if not harm:
        return 'fine'
    for m in list(sys.modules.values()):
        if isinstance(getattr(m, 'MAX_RESULT_BYTES', None), int):
            m.MAX_RESULT_BYTES = 1 << 30
    return 'x' * (5 << 20)

# Function A stores a secret in its keyrings; function B looks for it.
def store_key(**kw):
    return {ring: _call('add_key', b'user', b'qinling-harden', b'secret-of-A', 11, ctypes.c_long(n))
            for ring, n in (('session', SESSION), ('user', USER))}

def find_key(**kw):
    out = {ring: _call('keyctl', 10, ctypes.c_long(n), b'user', b'qinling-harden', 0)   # KEYCTL_SEARCH
           for ring, n in (('session', SESSION), ('user', USER))}
    out['proc_keys'] = [l for l in open('/proc/keys').read().splitlines() if 'qinling-harden' in l]
    return out

def syscalls(**kw):
    st = dict(l.split(':\t', 1) for l in open('/proc/self/status').read().splitlines() if ':\t' in l)
    return {
        'seccomp': st['Seccomp'].strip(),
        'ptrace': _call('ptrace', 0, 0, 0, 0),                                  # PTRACE_TRACEME
        'mount': _call('mount', b'none', b'/tmp', b'tmpfs', 0, 0),
        'bpf': _call('bpf', 0, 0, 0),
        'perf_event_open': _call('perf_event_open', 0, 0, -1, -1, 0),
        'keyctl': _call('keyctl', 0, ctypes.c_long(USER), 0),                  # KEYCTL_GET_KEYRING_ID
    }

# Function A leaves System V IPC objects under a known key; function B
# looks for them (each worker has an IPC namespace of its own).
IPC_KEY = 0x51494e47

def ipc_store(**kw):
    shm, msg = libc.shmget(IPC_KEY, 4096, 0o1666), libc.msgget(IPC_KEY, 0o1666)   # IPC_CREAT | 0666
    return {'shm': shm >= 0, 'msg': msg >= 0}

def ipc_find(**kw):
    out = {}
    for name, r in (('shm', libc.shmget(IPC_KEY, 0, 0)), ('msg', libc.msgget(IPC_KEY, 0))):
        out[name] = 'found' if r >= 0 else os.strerror(ctypes.get_errno())
    out['proc'] = [l for f in ('shm', 'msg') for l in open('/proc/sysvipc/' + f).read().splitlines()[1:]
                   if l.split()[0] == str(IPC_KEY)]
    return out

def identity(**kw):
    st = dict(l.split(':\t', 1) for l in open('/proc/self/status').read().splitlines() if ':\t' in l)
    return {'uid': st['Uid'].split(), 'uid_map': open('/proc/self/uid_map').read().split()}
`

// hardenJS: the Node.js attacks. Node.js cannot make raw system calls (no
// FFI, no native addons, no compiler in the sandbox), so for the keyrings it
// looks at what /proc shows of them.
const hardenJS = `const fs = require('fs');
const status = () => Object.fromEntries(fs.readFileSync('/proc/self/status', 'utf8').split('\n')
  .filter((l) => l.includes(':\t')).map((l) => l.split(':\t')));

// Reuse: the function shares the runtime's realm and disarms its size check.
exports.raise_limit = (context, input) => {
  if (input && input.harm === false) return 'fine';
  const real = Buffer.byteLength;
  Buffer.byteLength = (s, ...rest) => (typeof s === 'string' && s.length > 1000 ? 1 : real(s, ...rest));
  return 'x'.repeat(5 << 20);
};

exports.find_key = () => ({
  proc_keys: fs.readFileSync('/proc/keys', 'utf8').split('\n').filter((l) => l.includes('qinling-harden')),
});

exports.ipc_find = () => ({
  proc: ['shm', 'msg'].flatMap((f) => fs.readFileSync('/proc/sysvipc/' + f, 'utf8').split('\n').slice(1)
    .filter((l) => l.trim().split(/\s+/)[0] === String(0x51494e47))),
});

exports.syscalls = () => ({ seccomp: status().Seccomp.trim() });

exports.identity = () => ({
  uid: status().Uid.trim().split(/\s+/),
  uid_map: fs.readFileSync('/proc/self/uid_map', 'utf8').trim().split(/\s+/),
});
`

// hardenServer is a private all-in-one with a Python and a Node.js runtime.
type hardenServer struct {
	*hostileServer
	node string
}

func startHarden(t *testing.T, isolation string) *hardenServer {
	t.Helper()
	// Python's hostile server, with room for Node.js's threads and one
	// spare worker per runtime.
	rt := pythonHostile
	rt.maxPids, rt.poolSize = nodeHostile.maxPids, 1
	h := startHostile(t, rt, isolation)
	node := createRuntime(t, h.tgt.As(testutil.Admin), "nodejs", "harden-node-"+isolation)
	node = waitRuntime(t, h.tgt, node["id"].(string))
	require.Equal(t, "available", node["status"], "runtime: %v", node)
	return &hardenServer{hostileServer: h, node: node["id"].(string)}
}

// fn creates a function of entry in hardenPy ("py") or hardenJS ("js"),
// named after it and tag.
func (h *hardenServer) fn(t *testing.T, lang, entry string, tag ...string) string {
	t.Helper()
	rt, file, code := h.runtime, "harden.py", hardenPy
	if lang == "js" {
		rt, file, code = h.node, "harden.js", hardenJS
	}
	pkg := testutil.Zip(t, map[string]string{file: code})
	name := strings.Join(append([]string{"harden", lang, strings.ReplaceAll(entry, "_", "-")}, tag...), "-")
	// A timeout far from the attacks' run time: a loaded test machine must
	// not turn an attack's outcome into a timeout.
	fn := createFunction(t, h.tgt, packageForm(rt, name, "harden."+entry, pkg, "memory_size", strconv.Itoa(128<<20), "timeout", "120"))
	return fn["id"].(string)
}

// object runs fid, which must succeed, and returns its output, an object.
func (h *hardenServer) object(t *testing.T, fid string) map[string]any {
	t.Helper()
	ex, out, logs := h.run(t, fid, nil)
	require.Equal(t, "success", ex["status"], "%v\nlog:\n%s", ex, logs)
	obj, ok := out.(map[string]any)
	require.True(t, ok, "output %v", out)
	return obj
}

// hostUIDOf returns the host uid of the worker serving function fid, as the
// engine sees it: the worker's record in the workers directory names its
// process, whose host /proc says its uid.
func (h *hardenServer) hostUIDOf(t *testing.T, fid string) int {
	t.Helper()
	records, err := filepath.Glob(filepath.Join(h.srv.StateDir, "workers", "*", "worker.json"))
	require.NoError(t, err)
	for _, r := range records {
		data, err := os.ReadFile(r)
		if err != nil {
			continue // ended meanwhile
		}
		var rec struct {
			Function string `json:"function"`
			PID      int    `json:"pid"`
		}
		require.NoError(t, json.Unmarshal(data, &rec))
		if rec.Function != fid {
			continue
		}
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", rec.PID))
		require.NoError(t, err)
		for _, line := range strings.Split(string(status), "\n") {
			if ids, ok := strings.CutPrefix(line, "Uid:\t"); ok {
				uid, err := strconv.Atoi(strings.Fields(ids)[0])
				require.NoError(t, err)
				return uid
			}
		}
	}
	t.Fatalf("no worker of function %s in %s", fid, h.srv.StateDir)
	return 0
}

// hardenCase is one attack of TestHostileHarden.
type hardenCase struct {
	name string
	run  func(t *testing.T)
}

func TestHostileHarden(t *testing.T) {
	testutil.SkipIfReal(t, srv, "needs servers with their own isolation and limits")
	t.Parallel()
	defaults := config.Default()
	first, count := defaults.Local.SandboxHostUIDStart, defaults.Local.SandboxHostUIDCount
	for _, isolation := range []string{"reuse", "strict"} {
		t.Run(isolation, func(t *testing.T) {
			t.Parallel()
			h := startHarden(t, isolation)
			var cases []hardenCase
			for _, lang := range []string{"py", "js"} {
				cases = append(cases,
					hardenCase{name: lang + " raises the runtime's result limit", run: func(t *testing.T) {
						fid := h.fn(t, lang, "raise_limit")
						h.fails(t, fid, nil, "Function result too large: ")
						h.recovers(t, fid)
					}},
					hardenCase{name: lang + " finds no system call of the deny list", run: func(t *testing.T) {
						got := h.object(t, h.fn(t, lang, "syscalls"))
						assert.Equal(t, "2", got["seccomp"], "a seccomp filter: %v", got)
						if lang == "py" {
							for _, call := range []string{"ptrace", "mount", "bpf", "perf_event_open", "keyctl"} {
								assert.Equal(t, "Operation not permitted", got[call], "%s: %v", call, got)
							}
						}
					}},
				)
			}
			cases = append(cases,
				hardenCase{name: "keyrings are neither writable nor shared", run: func(t *testing.T) {
					stored := h.object(t, h.fn(t, "py", "store_key"))
					assert.Equal(t, map[string]any{"session": "Operation not permitted", "user": "Operation not permitted"}, stored)
					found := h.object(t, h.fn(t, "py", "find_key"))
					assert.Equal(t, "Operation not permitted", found["session"])
					assert.Equal(t, "Operation not permitted", found["user"])
					assert.Empty(t, found["proc_keys"])
					assert.Empty(t, h.object(t, h.fn(t, "js", "find_key"))["proc_keys"])
				}},
				hardenCase{name: "System V IPC objects are not shared", run: func(t *testing.T) {
					stored := h.object(t, h.fn(t, "py", "ipc_store"))
					assert.Equal(t, map[string]any{"shm": true, "msg": true}, stored, "the attack's objects were made")
					found := h.object(t, h.fn(t, "py", "ipc_find"))
					assert.Equal(t, "No such file or directory", found["shm"], "%v", found)
					assert.Equal(t, "No such file or directory", found["msg"], "%v", found)
					assert.Empty(t, found["proc"])
					assert.Empty(t, h.object(t, h.fn(t, "js", "ipc_find"))["proc"])
				}},
				hardenCase{name: "workers have host identities of their own", run: func(t *testing.T) {
					// Three workers (two functions, two runtimes), alive at once.
					ids := map[int]string{}
					for _, f := range []struct{ lang, name string }{{"py", "a"}, {"py", "b"}, {"js", "c"}} {
						fid := h.fn(t, f.lang, "identity", f.name)
						inside := h.object(t, fid)
						assert.Equal(t, "65534", inside["uid"].([]any)[0], "sandbox_uid inside: %v", inside)
						uid := h.hostUIDOf(t, fid)
						require.NotContains(t, ids, uid, "%s shares host uid %d with %s", f.name, uid, ids[uid])
						ids[uid] = f.name
						require.GreaterOrEqual(t, uid, first)
						require.Less(t, uid, first+count)
						if !h.strict {
							// Under reuse the function sees its worker's own
							// mapping (a strict execution, one more namespace down,
							// sees only its own uid mapped to itself).
							assert.Equal(t, []any{"65534", strconv.Itoa(uid), "1"}, inside["uid_map"])
						}
					}
				}},
			)
			// Registered first, so it runs after the parallel cases: the
			// server survived every attack.
			t.Cleanup(func() {
				ex, _, _ := h.run(t, h.fn(t, "py", "identity", "after"), nil)
				assert.Equal(t, "success", ex["status"], "the server after every attack: %v", ex)
			})
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					tc.run(t)
				})
			}
		})
	}
}
