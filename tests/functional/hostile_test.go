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
// The suite is written once and runs per runtime (Python, Node.js) and per
// isolation mode (reuse, strict), each on a private all-in-one with a pids
// limit small enough for a quick fork bomb; the cases are parallel, and each
// has its own function.

// hostileRuntime is one runtime the suite runs on: its image, the module
// holding its hostile functions and what differs between runtimes.
type hostileRuntime struct {
	name     string // subtest name and function name prefix
	image    string
	module   string // file name of the package's one module
	source   string
	maxPids  int      // the server's [local_orchestrator] max_pids
	poolSize int      // the server's [local_orchestrator] pool_size
	defaults []string // function fields every function gets unless a case sets them
	notFound string   // what reading a missing file reports
}

// The runtimes, named for the case table's per-runtime bodies.
const (
	python = "python"
	nodejs = "nodejs"
)

// hostileTimeout is every hostile function's timeout but the endless
// loop's: far from what any attack takes, so that only the limit a case is
// about can stop it, however loaded the machine (the tier runs many tests at
// once: scripts/test.sh). A limit that failed still fails its case, which
// then ends in a timeout instead of the limit's failure.
const hostileTimeout = "120"

// pythonHostile runs hostilePy with the most memory a function may have
// unless a case says otherwise: the memory bomb aside, each attack must meet
// the limit it is about, not run out of memory first (strict workers hold
// more processes: docs/isolation.md).
var pythonHostile = hostileRuntime{
	name: python, image: "python3", module: "hostile.py", source: hostilePy,
	maxPids: 32, poolSize: 2,
	defaults: []string{"memory_size", strconv.Itoa(128 << 20), "timeout", hostileTimeout},
	notFound: "FileNotFoundError",
}

// hostilePy is every hostile function, as entries of one module. Each one
// does nothing harmful when called with {"harm": false}, so the same
// function (and, under strict isolation, the same worker) serves the good
// call that follows.
const hostilePy = `import errno, os, signal, socket, sys, time

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
        try:
            socket.create_connection((host, port), timeout=10).close()
            out[host] = 'connected'
        except OSError as e:
            # What the kernel answered, not how long it took (which a
            # loaded machine stretches): refused, or no route, at once;
            # a dropped packet would end in TimeoutError, errno None.
            out[host] = '%s %s' % (type(e).__name__, errno.errorcode.get(e.errno, e.errno))
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

// hostileServer is a private all-in-one with a runtime, for one runtime and
// one isolation mode.
type hostileServer struct {
	tgt     *testutil.Target
	srv     *testutil.Server
	rt      hostileRuntime
	strict  bool
	runtime string // the runtime's ID
}

func startHostile(t *testing.T, rt hostileRuntime, isolation string) *hostileServer {
	t.Helper()
	s := testutil.StartAllInOne(t,
		testutil.WithConfig("engine", "isolation", isolation),
		testutil.WithConfig("local_orchestrator", "max_pids", strconv.Itoa(rt.maxPids)),
		testutil.WithConfig("local_orchestrator", "pool_size", strconv.Itoa(rt.poolSize)))
	tgt := testutil.ServerTarget(s)
	created := createRuntime(t, tgt.As(testutil.Admin), rt.image, "hostile-"+rt.name+"-"+isolation)
	created = waitRuntime(t, tgt, created["id"].(string))
	require.Equal(t, "available", created["status"], "runtime: %v", created)
	return &hostileServer{tgt: tgt, srv: s, rt: rt, strict: isolation == "strict", runtime: created["id"].(string)}
}

// function creates a function running entry of the runtime's hostile
// module, with the runtime's defaults unless extra says otherwise.
func (h *hostileServer) function(t *testing.T, entry string, extra ...string) string {
	t.Helper()
	pkg := testutil.Zip(t, map[string]string{h.rt.module: h.rt.source})
	extra = append(append([]string{}, h.rt.defaults...), extra...)
	name := h.rt.name + "-" + strings.ReplaceAll(entry, "_", "-")
	fn := createFunction(t, h.tgt, packageForm(h.runtime, name, "hostile."+entry, pkg, extra...))
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

// tooMuchResource is upstream's output for a function stopped by a resource
// limit; clients compare it as it is, so the detail goes to the log.
const tooMuchResource = "Function execution failed because of too much resource consumption"

// failsExactly runs fid with no input and checks it failed with output
// exactly want, and returns its log.
func (h *hostileServer) failsExactly(t *testing.T, fid string, want string) (logs string) {
	t.Helper()
	out, logs := h.fails(t, fid, nil, want)
	require.Equal(t, want, out)
	return logs
}

// recovers checks that the next good call, of the same function, succeeds.
func (h *hostileServer) recovers(t *testing.T, fid string) {
	t.Helper()
	ex, out, logs := h.run(t, fid, map[string]any{"harm": false})
	require.Equal(t, "success", ex["status"], "the good call after the attack: %v\nlog:\n%s", ex, logs)
	require.Equal(t, "fine", out)
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

// hostileBody is one case's test on one server.
type hostileBody func(t *testing.T, h *hostileServer)

// hostileCase is one attack. all runs on every runtime; where the runtimes
// must differ, perRuntime holds one body each, and a runtime without one
// does not run the case (its module has no such attack).
type hostileCase struct {
	name       string
	all        hostileBody
	perRuntime map[string]hostileBody
}

// body is what tc runs on rt, nil for nothing.
func (tc hostileCase) body(rt string) hostileBody {
	if tc.all != nil {
		return tc.all
	}
	return tc.perRuntime[rt]
}

var hostileCases = []hostileCase{
	{name: "async hello with its log", perRuntime: map[string]hostileBody{
		nodejs: func(t *testing.T, h *hostileServer) {
			fid := h.function(t, "hello")
			ex, out, logs := h.run(t, fid, map[string]any{"name": "Qinling"})
			require.Equal(t, "success", ex["status"], "%v\nlog:\n%s", ex, logs)
			assert.Equal(t, "Hello, Qinling", out)
			assert.Contains(t, logs, "Hello, Qinling\n")
		},
	}},
	{name: "endless loop times out", all: func(t *testing.T, h *hostileServer) {
		// 10 s, not 1: on a loaded machine (the tier runs many tests at
		// once) a strict execution process may take seconds to print its
		// first line, which the log must show.
		fid := h.function(t, "loop", "timeout", "10", "cpu", "300")
		_, logs := h.fails(t, fid, nil, "Function execution timeout.")
		if h.strict || h.rt.name == nodejs {
			// Killed at the timeout, its log read by the worker. Under
			// reuse a Python worker whose thread spins on the GIL may not
			// answer in time and is killed by the engine, log and all.
			assert.Contains(t, logs, "looping")
		}
		h.recovers(t, fid)
	}},
	{name: "memory bomb hits the memory limit", perRuntime: map[string]hostileBody{
		python: func(t *testing.T, h *hostileServer) {
			// The limit, not the clock (hostileTimeout), must stop it.
			fid := h.function(t, "memory", "memory_size", strconv.Itoa(64<<20))
			logs := h.failsExactly(t, fid, tooMuchResource)
			assert.Contains(t, logs, "The function exceeded its memory limit of 67108864 bytes.", "the detail is in the log")
			h.recovers(t, fid)
		},
		// Buffers live outside the JavaScript heap: the cgroup's limit
		// stops them, at upstream's default memory_size.
		nodejs: func(t *testing.T, h *hostileServer) {
			fid := h.function(t, "buffers", "cpu", "300")
			logs := h.failsExactly(t, fid, tooMuchResource)
			assert.Contains(t, logs, "The function exceeded its memory limit of 33554432 bytes.", "the detail is in the log")
			h.recovers(t, fid)
		},
	}},
	{name: "heap bomb hits the JavaScript heap limit", perRuntime: map[string]hostileBody{
		nodejs: func(t *testing.T, h *hostileServer) {
			fid := h.function(t, "heap", "cpu", "300")
			logs := h.failsExactly(t, fid, tooMuchResource)
			assert.Contains(t, logs, "JavaScript heap limit reached (32 MiB)")
			h.recovers(t, fid)
		},
	}},
	{name: "fork bomb hits the pids limit", all: func(t *testing.T, h *hostileServer) {
		// Starting Node.js processes is slow: CPU enough to reach the
		// limit (and time: hostileTimeout).
		fid := h.function(t, "forks", "cpu", "300", "memory_size", strconv.Itoa(128<<20))
		h.failsExactly(t, fid, tooMuchResource)
		h.recovers(t, fid)
	}},
	{name: "host files and other packages are not there", all: func(t *testing.T, h *hostileServer) {
		other := h.function(t, "counter")
		fid := h.function(t, "read")
		paths := []string{
			"/etc/qinling/qinling.conf", h.srv.ConfigPath, h.srv.StateDir + "/qinling.sqlite",
			"/var/qinling/packages/" + other + "/" + h.rt.module,
			"/etc/passwd", "/root/.bash_history",
		}
		ex, out, _ := h.run(t, fid, map[string]any{"paths": paths})
		require.Equal(t, "success", ex["status"], "%v", ex)
		for _, p := range paths {
			assert.Equal(t, h.rt.notFound, out.(map[string]any)[p], p)
		}
		h.recovers(t, fid)
	}},
	{name: "no network: the API's port refused, outside unreachable", perRuntime: map[string]hostileBody{
		python: func(t *testing.T, h *hostileServer) {
			fid := h.function(t, "connect")
			port, err := strconv.Atoi(h.srv.URL[strings.LastIndexByte(h.srv.URL, ':')+1:])
			require.NoError(t, err)
			// 10.255.255.1 is never reached: the sandbox has no route off loopback.
			ex, out, _ := h.run(t, fid, map[string]any{"targets": [][]any{{"127.0.0.1", port}, {"10.255.255.1", 80}}})
			require.Equal(t, "success", ex["status"], "%v", ex)
			got := out.(map[string]any)
			assert.Equal(t, "ConnectionRefusedError ECONNREFUSED", got["127.0.0.1"])
			assert.Equal(t, "OSError ENETUNREACH", got["10.255.255.1"], "no route: fails at once, sends nothing")
			h.recovers(t, fid)
		},
	}},
	{name: "killing other processes is contained", perRuntime: map[string]hostileBody{
		// Its parent, PID 1 and everyone.
		python: func(t *testing.T, h *hostileServer) {
			fid := h.function(t, "parricide")
			ex, out, logs := h.run(t, fid, nil)
			require.Equal(t, "success", ex["status"], "the attack is contained: %v\nlog:\n%s", ex, logs)
			if h.strict {
				// Its parent is a zygote, protected like PID 1 (the
				// server) by the execution's seccomp filter.
				denied := "Operation not permitted"
				assert.Equal(t, map[string]any{"parent": denied, "pid 1": denied, "everyone": denied}, out)
			} // Under reuse it runs in PID 1 of the sandbox, which the kernel does not let it kill.
			h.recovers(t, fid)
		},
		// Every process it can find, and a file planted for the next calls.
		nodejs: func(t *testing.T, h *hostileServer) {
			if !h.strict {
				t.Skip("under warm reuse executions share the server's process: strict isolation's promise")
			}
			fid := h.function(t, "attack", "cpu", "300")
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
		},
	}},
	{name: "printing 100 MB truncates the log", perRuntime: map[string]hostileBody{
		python: func(t *testing.T, h *hostileServer) {
			fid := h.function(t, "noisy")
			ex, out, logs := h.run(t, fid, nil)
			require.Equal(t, "success", ex["status"], "%v", ex)
			assert.Equal(t, "fine", out)
			assert.Regexp(t, `\.\.\. \[log truncated: \d+ bytes dropped\]`, logs)
			assert.Less(t, len(logs), 2<<20, "the log is bounded")
			h.recovers(t, fid)
		},
	}},
	{name: "huge result is refused", perRuntime: map[string]hostileBody{
		python: func(t *testing.T, h *hostileServer) {
			fid := h.function(t, "huge")
			h.fails(t, fid, nil, "Function result too large: 4194306 bytes (limit 1048576).")
			h.recovers(t, fid)
		},
	}},
	// A module-level counter incremented by every call is always 1 under
	// strict isolation, and counts up under warm reuse (upstream's
	// semantics).
	{name: "module globals across calls", all: func(t *testing.T, h *hostileServer) {
		got := h.outputs(t, h.function(t, "counter"), 3)
		if h.strict {
			assert.Equal(t, []any{1.0, 1.0, 1.0}, got, "every execution starts afresh")
		} else {
			assert.Equal(t, []any{1.0, 2.0, 3.0}, got, "warm reuse keeps module state (upstream's semantics)")
		}
	}},
	// A file one call leaves in /tmp (leave_file returns whether it found
	// one) is never seen by the next under strict isolation, and is under
	// warm reuse.
	{name: "file written by one execution, read by the next", all: func(t *testing.T, h *hostileServer) {
		got := h.outputs(t, h.function(t, "leave_file"), 3)
		if h.strict {
			assert.Equal(t, []any{false, false, false}, got, "a private /tmp per execution")
		} else {
			assert.Equal(t, []any{false, true, true}, got, "warm reuse shares the worker's /tmp")
		}
	}},
}

func TestHostileFunctions(t *testing.T) {
	testutil.SkipIfReal(t, srv, "needs servers with their own isolation and limits")
	t.Parallel()
	for _, rt := range []hostileRuntime{pythonHostile, nodeHostile} {
		t.Run(rt.name, func(t *testing.T) {
			t.Parallel()
			for _, isolation := range []string{"reuse", "strict"} {
				t.Run(isolation, func(t *testing.T) {
					t.Parallel()
					h := startHostile(t, rt, isolation)
					// Registered first, so it runs after the parallel cases:
					// the server survived every attack.
					t.Cleanup(func() {
						ex, _, _ := h.run(t, h.function(t, "counter"), nil)
						assert.Equal(t, "success", ex["status"], "the server after every attack: %v", ex)
					})
					for _, tc := range hostileCases {
						body := tc.body(rt.name)
						if body == nil {
							continue
						}
						t.Run(tc.name, func(t *testing.T) {
							t.Parallel()
							body(t, h)
						})
					}
				})
			}
		})
	}
}
