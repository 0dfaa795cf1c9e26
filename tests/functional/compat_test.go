//go:build functional

package functional

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/testutil"
)

// Functions written for upstream Qinling's runtime get the answers they
// got there (runtimes/python3/README.md and runtimes/nodejs/README.md,
// "Compatibility with upstream's runtime"), in both isolation modes.

// upstreamResourceOutput is upstream's output for an execution that failed
// for lack of resources; clients compare it as is.
const upstreamResourceOutput = "Function execution failed because of too much resource consumption"

const compatPy = `import os, resource

PI_LIKE = str(7 ** 60000)   # 50,706 digits, converted when the module is imported

def digits(**kw):
    n = 10 ** 50000
    print(n)
    return [len(str(n)), len(PI_LIKE)]

def nproc(**kw):
    soft, hard = resource.getrlimit(resource.RLIMIT_NPROC)
    resource.setrlimit(resource.RLIMIT_NPROC, (1, hard))
    try:
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        return 'forked'
    finally:   # the worker serves the next call (reuse: this very process)
        resource.setrlimit(resource.RLIMIT_NPROC, (soft, hard))

def raises(**kw):
    raise KeyError('no such key')
`

const compatJS = `
exports.raises = () => { throw new TypeError('not a function'); };

// What child_process throws when a process limit refuses a new process.
exports.eagain = () => {
  const e = new Error('spawn EAGAIN');
  e.code = 'EAGAIN';
  e.errno = -11;
  throw e;
};
`

func TestCompatUpstreamRuntime(t *testing.T) {
	testutil.SkipIfReal(t, srv, "needs servers with their own isolation")
	t.Parallel()
	for _, isolation := range []string{"reuse", "strict"} {
		t.Run(isolation, func(t *testing.T) {
			t.Parallel()
			s := testutil.StartAllInOne(t, testutil.WithConfig("engine", "isolation", isolation),
				testutil.WithConfig("local_orchestrator", "pool_size", "1"))
			tgt := testutil.ServerTarget(s)
			py := compatRuntime(t, tgt, "python3", "compat-py-"+isolation)
			node := compatRuntime(t, tgt, "openstackqinling/nodejs-runtime", "compat-node-"+isolation)
			pyPkg := testutil.Zip(t, map[string]string{"compat.py": compatPy})
			jsPkg := testutil.Zip(t, map[string]string{"compat.js": compatJS})

			tests := []struct {
				name    string
				runtime string
				pkg     []byte
				entry   string
				ok      bool
				output  any    // exactly
				logHas  string // the detail, where the output has none
			}{
				{"python3 integers of 50,000 digits convert to text", py, pyPkg, "compat.digits", true,
					[]any{50001.0, 50706.0}, "1" + strings.Repeat("0", 50000) + "\n"},
				{"python3 fork under a lowered process limit", py, pyPkg, "compat.nproc", false,
					upstreamResourceOutput, "BlockingIOError: [Errno 11] Resource temporarily unavailable"},
				{"python3 exception names its type", py, pyPkg, "compat.raises", false,
					"KeyError: 'no such key'", "Traceback"},
				{"nodejs spawn refused by a process limit", node, jsPkg, "compat.eagain", false,
					upstreamResourceOutput, "Error: spawn EAGAIN"},
				{"nodejs exception names its type", node, jsPkg, "compat.raises", false,
					"TypeError: not a function", "TypeError: not a function\n    at "},
			}
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					fn := createFunction(t, tgt, packageForm(tc.runtime, "compat-"+strings.ReplaceAll(tc.entry, ".", "-"),
						tc.entry, tc.pkg, "memory_size", "134217728", "timeout", "30"))
					ex := execute(t, tgt, fn["id"].(string), nil, true)
					status := map[bool]string{true: "success", false: "failed"}[tc.ok]
					logs := compatLog(t, tgt, ex["id"].(string))
					require.Equal(t, status, ex["status"], "execution %v\nlog:\n%s", ex, logs)
					out, _ := result(t, ex)
					assert.Equal(t, tc.output, out)
					assert.Contains(t, logs, tc.logHas)
				})
			}
		})
	}
}

// compatRuntime creates a runtime of image and waits until it is available.
func compatRuntime(t *testing.T, tgt *testutil.Target, image, name string) string {
	t.Helper()
	rt := createRuntime(t, tgt.As(testutil.Admin), image, name)
	rt = waitRuntime(t, tgt, rt["id"].(string))
	require.Equal(t, "available", rt["status"], "runtime: %v", rt)
	return rt["id"].(string)
}

// compatLog is an execution's log.
func compatLog(t *testing.T, tgt *testutil.Target, id string) string {
	t.Helper()
	r := call(t, tgt, http.MethodGet, "/v1/executions/"+id+"/log", nil, "Accept", "text/plain")
	expect(t, r, http.StatusOK)
	return string(r.Body)
}
