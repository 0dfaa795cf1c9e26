//go:build functional

package functional

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/testutil"
)

// Hostile functions: each case runs code that attacks the service, and
// checks that the execution ends with a clear failed result (or a contained
// success: the attack found nothing) and that the next good call succeeds.
// The cases run against two private all-in-ones, one per isolation mode,
// with a pids limit small enough for a quick fork bomb; they are parallel,
// and each has its own function.

// hostileMaxPids is the servers' [local_orchestrator] max_pids.
const hostileMaxPids = 32

// hostilePy is every hostile function, as entries of one module. Each one
// does nothing harmful when called with {"harm": false}, so the same
// function (and, under strict isolation, the same worker) serves the good
// call that follows.
const hostilePy = `import os, signal, socket, sys, time

def loop(harm=True, **kw):
    if harm:
        print('looping', flush=True)
        while True:
            pass
    return 'fine'

def memory(harm=True, **kw):
    if harm:
        hog = [bytearray(8 << 20) for _ in range(64)]   # 512 MiB, touched
        return len(hog)
    return 'fine'

def forks(harm=True, **kw):
    if harm:
        while True:
            if os.fork() == 0:
                time.sleep(60)
                os._exit(0)
    return 'fine'

def read(paths=(), harm=True, **kw):
    if not harm:
        return 'fine'
    out = {}
    for p in paths:
        try:
            with open(p) as f:
                out[p] = 'read %d bytes' % len(f.read())
        except Exception as e:
            out[p] = type(e).__name__
    return out

def connect(targets=(), harm=True, **kw):
    if not harm:
        return 'fine'
    out = {}
    for host, port in targets:
        start = time.monotonic()
        try:
            socket.create_connection((host, port), timeout=5).close()
            out[host] = 'connected'
        except OSError as e:
            out[host] = '%s in %.1fs' % (type(e).__name__, time.monotonic() - start)
    return out

def parricide(harm=True, **kw):
    if not harm:
        return 'fine'
    out = {}
    for name, pid in (('parent', os.getppid()), ('pid 1', 1), ('everyone', -1)):
        try:
            os.kill(pid, signal.SIGKILL)
            out[name] = 'sent'
        except OSError as e:
            out[name] = e.strerror
    return out

def noisy(harm=True, **kw):
    if harm:
        line = 'y' * 1023 + '\n'
        for _ in range(100 * 1024):   # 100 MiB
            sys.stdout.write(line)
    return 'fine'

def huge(harm=True, **kw):
    return 'x' * (4 << 20) if harm else 'fine'

COUNT = 0

def counter(**kw):
    global COUNT
    COUNT += 1
    return COUNT

def leave_file(**kw):
    seen = os.path.exists('/tmp/left-behind')
    with open('/tmp/left-behind', 'w') as f:
        f.write('secret of the previous caller')
    return seen
`

// hostileServer is a private all-in-one with a runtime, for one isolation mode.
type hostileServer struct {
	tgt     *testutil.Target
	srv     *testutil.Server
	runtime string
}

func startHostile(t *testing.T, isolation string) *hostileServer {
	t.Helper()
	return startHostileRuntime(t, isolation, "python3", hostileMaxPids, 2)
}

// startHostileRuntime starts the server with maxPids and poolSize and a
// runtime of image.
func startHostileRuntime(t *testing.T, isolation, image string, maxPids, poolSize int) *hostileServer {
	t.Helper()
	s := testutil.StartAllInOne(t,
		testutil.WithConfig("engine", "isolation", isolation),
		testutil.WithConfig("local_orchestrator", "max_pids", strconv.Itoa(maxPids)),
		testutil.WithConfig("local_orchestrator", "pool_size", strconv.Itoa(poolSize)))
	tgt := testutil.ServerTarget(s)
	rt := createRuntime(t, tgt.As(testutil.Admin), image, "hostile-"+isolation)
	rt = waitRuntime(t, tgt, rt["id"].(string))
	require.Equal(t, "available", rt["status"], "runtime: %v", rt)
	return &hostileServer{tgt: tgt, srv: s, runtime: rt["id"].(string)}
}

// function creates a function running entry of hostilePy, with the most
// memory a function may have unless extra says otherwise: the memory bomb
// aside, each attack must meet the limit it is about, not run out of memory
// first (strict workers hold more processes: docs/isolation.md).
func (h *hostileServer) function(t *testing.T, entry string, extra ...string) string {
	t.Helper()
	pkg := testutil.Zip(t, map[string]string{"hostile.py": hostilePy})
	extra = append([]string{"memory_size", strconv.Itoa(128 << 20)}, extra...)
	fn := createFunction(t, h.tgt, packageForm(h.runtime, strings.ReplaceAll(entry, ".", "-"), "hostile."+entry, pkg, extra...))
	return fn["id"].(string)
}

// run executes fid synchronously with input and returns the execution, its
// output and its log.
func (h *hostileServer) run(t *testing.T, fid string, input any) (ex map[string]any, output any, logs string) {
	t.Helper()
	var in any // none: as "openstack function execution create" without --input
	if input != nil {
		b, err := json.Marshal(input)
		require.NoError(t, err)
		in = string(b)
	}
	ex = execute(t, h.tgt, fid, in, true)
	output, _ = result(t, ex)
	r := call(t, h.tgt, http.MethodGet, "/v1/executions/"+ex["id"].(string)+"/log", nil, "Accept", "text/plain")
	if r.Status == http.StatusNoContent { // no log: the worker was killed before it answered
		return ex, output, ""
	}
	expect(t, r, http.StatusOK)
	return ex, output, string(r.Body)
}

// fails runs fid with input and checks it failed with output containing want.
func (h *hostileServer) fails(t *testing.T, fid string, input any, want string) (output, logs string) {
	t.Helper()
	ex, out, logs := h.run(t, fid, input)
	require.Equal(t, "failed", ex["status"], "execution %v\nlog:\n%s", ex, logs)
	s, _ := out.(string)
	require.Contains(t, s, want, "output of %v", ex)
	return s, logs
}

// recovers checks that the next good call, of the same function, succeeds.
func (h *hostileServer) recovers(t *testing.T, fid string) {
	t.Helper()
	ex, out, logs := h.run(t, fid, map[string]any{"harm": false})
	require.Equal(t, "success", ex["status"], "the good call after the attack: %v\nlog:\n%s", ex, logs)
	require.Equal(t, "fine", out)
}

// hostileCase is one attack, run in parallel with the others on one server.
type hostileCase struct {
	name string
	run  func(t *testing.T)
}

// runCases runs the cases in parallel, then checks with a call of
// healthy's function that the server survived every attack.
func (h *hostileServer) runCases(t *testing.T, cases []hostileCase, healthy func(t *testing.T) string) {
	// Registered first, so it runs after the parallel cases.
	t.Cleanup(func() {
		ex, _, _ := h.run(t, healthy(t), nil)
		assert.Equal(t, "success", ex["status"], "the server after every attack: %v", ex)
	})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t)
		})
	}
}

// outputs runs fid n times and returns the outputs, each call a success.
func (h *hostileServer) outputs(t *testing.T, fid string, n int) []any {
	t.Helper()
	var got []any
	for range n {
		ex, out, _ := h.run(t, fid, nil)
		require.Equal(t, "success", ex["status"], "%v", ex)
		got = append(got, out)
	}
	return got
}

// globalsAcrossCalls: a module-level counter incremented by every call
// (function "counter") is always 1 under strict isolation, and counts up
// under warm reuse (upstream's semantics).
func (h *hostileServer) globalsAcrossCalls(t *testing.T, fid string, strict bool) {
	got := h.outputs(t, fid, 3)
	if strict {
		assert.Equal(t, []any{1.0, 1.0, 1.0}, got, "every execution starts afresh")
	} else {
		assert.Equal(t, []any{1.0, 2.0, 3.0}, got, "warm reuse keeps module state (upstream's semantics)")
	}
}

// fileAcrossCalls: a file one call leaves in /tmp (function "leave_file",
// which returns whether it found the file) is never seen by the next under
// strict isolation, and is under warm reuse.
func (h *hostileServer) fileAcrossCalls(t *testing.T, fid string, strict bool) {
	got := h.outputs(t, fid, 3)
	if strict {
		assert.Equal(t, []any{false, false, false}, got, "a private /tmp per execution")
	} else {
		assert.Equal(t, []any{false, true, true}, got, "warm reuse shares the worker's /tmp")
	}
}

func TestHostileFunctions(t *testing.T) {
	testutil.SkipIfReal(t, srv, "needs servers with their own isolation and limits")
	t.Parallel()
	for _, isolation := range []string{"reuse", "strict"} {
		t.Run(isolation, func(t *testing.T) {
			t.Parallel()
			h := startHostile(t, isolation)
			strict := isolation == "strict"
			apiPort := h.srv.URL[strings.LastIndexByte(h.srv.URL, ':')+1:]

			cases := []hostileCase{
				{"endless loop times out", func(t *testing.T) {
					fid := h.function(t, "loop", "timeout", "1", "cpu", "300")
					_, logs := h.fails(t, fid, nil, "Function execution timeout.")
					if strict {
						// Killed at the timeout, its log read by the worker. Under
						// reuse a worker whose thread spins on the GIL may not answer
						// in time and is killed by the engine, log and all.
						assert.Contains(t, logs, "looping")
					}
					h.recovers(t, fid)
				}},
				{"memory bomb hits the memory limit", func(t *testing.T) {
					fid := h.function(t, "memory", "memory_size", strconv.Itoa(64<<20))
					h.fails(t, fid, nil, "Function execution failed because of too much resource consumption")
					h.recovers(t, fid)
				}},
				{"fork bomb hits the pids limit", func(t *testing.T) {
					fid := h.function(t, "forks")
					h.fails(t, fid, nil, "Function execution failed because of too much resource consumption")
					h.recovers(t, fid)
				}},
				{"host files and other packages are not there", func(t *testing.T) {
					other := h.function(t, "counter")
					fid := h.function(t, "read")
					paths := []string{
						"/etc/qinling/qinling.conf", h.srv.ConfigPath, h.srv.StateDir + "/qinling.sqlite",
						"/var/qinling/packages/" + other + "/hostile.py",
						"/etc/passwd", "/root/.bash_history",
					}
					ex, out, _ := h.run(t, fid, map[string]any{"paths": paths})
					require.Equal(t, "success", ex["status"], "%v", ex)
					for _, p := range paths {
						assert.Equal(t, "FileNotFoundError", out.(map[string]any)[p], p)
					}
					h.recovers(t, fid)
				}},
				{"no network: the API's port refused, outside unreachable", func(t *testing.T) {
					fid := h.function(t, "connect")
					port, err := strconv.Atoi(apiPort)
					require.NoError(t, err)
					// 10.255.255.1 is never reached: the sandbox has no route off loopback.
					ex, out, _ := h.run(t, fid, map[string]any{"targets": [][]any{{"127.0.0.1", port}, {"10.255.255.1", 80}}})
					require.Equal(t, "success", ex["status"], "%v", ex)
					got := out.(map[string]any)
					assert.Equal(t, "ConnectionRefusedError in 0.0s", got["127.0.0.1"])
					assert.Equal(t, "OSError in 0.0s", got["10.255.255.1"], "fails at once")
					h.recovers(t, fid)
				}},
				{"killing its parent", func(t *testing.T) {
					fid := h.function(t, "parricide")
					ex, out, logs := h.run(t, fid, nil)
					require.Equal(t, "success", ex["status"], "the attack is contained: %v\nlog:\n%s", ex, logs)
					if strict {
						// Its parent is a zygote, protected like PID 1 (the
						// server) by the execution's seccomp filter.
						denied := "Operation not permitted"
						assert.Equal(t, map[string]any{"parent": denied, "pid 1": denied, "everyone": denied}, out)
					} // Under reuse it runs in PID 1 of the sandbox, which the kernel does not let it kill.
					h.recovers(t, fid)
				}},
				{"printing 100 MB truncates the log", func(t *testing.T) {
					fid := h.function(t, "noisy", "timeout", "30")
					ex, out, logs := h.run(t, fid, nil)
					require.Equal(t, "success", ex["status"], "%v", ex)
					assert.Equal(t, "fine", out)
					assert.Regexp(t, `\.\.\. \[log truncated: \d+ bytes dropped\]`, logs)
					assert.Less(t, len(logs), 2<<20, "the log is bounded")
					h.recovers(t, fid)
				}},
				{"huge result is refused", func(t *testing.T) {
					fid := h.function(t, "huge")
					h.fails(t, fid, nil, "Function result too large: 4194306 bytes (limit 1048576).")
					h.recovers(t, fid)
				}},
				{"module globals across calls", func(t *testing.T) {
					h.globalsAcrossCalls(t, h.function(t, "counter"), strict)
				}},
				{"file written by one execution, read by the next", func(t *testing.T) {
					h.fileAcrossCalls(t, h.function(t, "leave_file"), strict)
				}},
			}
			h.runCases(t, cases, func(t *testing.T) string { return h.function(t, "counter") })
		})
	}
}
