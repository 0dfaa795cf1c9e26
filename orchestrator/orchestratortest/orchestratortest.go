// Package orchestratortest is the conformance suite every orchestrator backend
// and the fake pass. A backend's test calls Run with a Harness that builds a
// fresh orchestrator and makes packages for the suite's test functions.
package orchestratortest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/orchestrator"
	"github.com/qinling-go/qinling/pkg/testutil"
)

// The test functions a Harness must provide.
const (
	// Hello prints "Hello, <name>" and returns the same string. name is the
	// positional input, else the "name" key of the input object, else "World".
	Hello = "hello"
	// Fail raises an error whose message contains "boom".
	Fail = "fail"
	// Sleep sleeps 5 s; the suite runs it with a 1 s timeout.
	Sleep = "sleep"
)

// Harness adapts a backend to the suite.
type Harness struct {
	// New returns a fresh, empty orchestrator. The suite closes it.
	New func(t *testing.T) orchestrator.Orchestrator
	// Image is an image the backend runs (CreatePool succeeds with it).
	Image string
	// PoolSize is the number of free workers New's orchestrator keeps per pool.
	PoolSize int
	// Function returns the package and entry of the named test function
	// (Hello, Fail or Sleep).
	Function func(t *testing.T, name string) (pkg orchestrator.Package, entry string)
	// MemorySize is the test functions' memory in bytes (default 32 MiB,
	// upstream's default). A backend whose workers hold a process per
	// running execution needs more for the concurrency case.
	MemorySize int64
	// CPU is the test functions' cpu in millicores (default 100,
	// upstream's default). A backend that spends much CPU per execution
	// (a Node.js worker starts a thread for each) needs more for eight
	// concurrent executions to end within the suite's timeouts.
	CPU int
}

// UnrunnableImage is an image no backend runs.
const UnrunnableImage = "registry.example.com/unrunnable:1.0"

// waitFor bounds how long the suite waits for asynchronous effects (refills).
const waitFor = 20 * time.Second

// PythonSources are the suite's test functions for runtimes speaking
// upstream's Python protocol, each as a main.py with entry main.main.
var PythonSources = map[string]string{
	Hello: `def main(name='World', **kwargs):
    print('Hello, %s' % name)
    return 'Hello, %s' % name
`,
	Fail: `def main(**kwargs):
    raise ValueError('boom')
`,
	Sleep: `import time


def main(**kwargs):
    time.sleep(5)
    return 'woke up'
`,
}

// PythonFunction returns PythonSources[name] as a zip package with entry
// main.main; a Harness for a Python runtime can use it as its Function.
func PythonFunction(t *testing.T, name string) (orchestrator.Package, string) {
	t.Helper()
	src, ok := PythonSources[name]
	require.True(t, ok, "unknown test function %q", name)
	return ZipPackage(t, map[string]string{"main.py": src}), "main.main"
}

// NodeSources are the suite's test functions for the Node.js runtime
// (upstream's calling convention: fn(context, input)), each as a main.js
// with entry main.main.
var NodeSources = map[string]string{
	Hello: `exports.main = (context, input) => {
  const name = typeof input === 'string' ? input : (input && input.name) || 'World';
  console.log('Hello, ' + name);
  return 'Hello, ' + name;
};
`,
	Fail: `exports.main = () => {
  throw new Error('boom');
};
`,
	Sleep: `exports.main = () => new Promise((resolve) => setTimeout(() => resolve('woke up'), 5000));
`,
}

// NodeFunction returns NodeSources[name] as a zip package with entry
// main.main; a Harness for a Node.js runtime can use it as its Function.
func NodeFunction(t *testing.T, name string) (orchestrator.Package, string) {
	t.Helper()
	src, ok := NodeSources[name]
	require.True(t, ok, "unknown test function %q", name)
	return ZipPackage(t, map[string]string{"main.js": src}), "main.main"
}

// ZipPackage returns a package whose zip holds files (name → content).
func ZipPackage(t testing.TB, files map[string]string) orchestrator.Package {
	t.Helper()
	data := testutil.Zip(t, files)
	return orchestrator.Package{
		Open: func(context.Context) (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(data)), nil
		},
	}
}

// suite carries the harness into the cases.
type suite struct {
	h    Harness
	exec atomic.Int64
}

// Run runs the conformance suite against the harness.
func Run(t *testing.T, h Harness) {
	require.NotNil(t, h.New)
	require.NotNil(t, h.Function)
	require.NotEmpty(t, h.Image)
	s := &suite{h: h}
	for _, tc := range []struct {
		name string
		run  func(t *testing.T)
	}{
		{"CreatePool_capacity", s.createPoolCapacity},
		{"CreatePool_unrunnable_image", s.createPoolUnrunnable},
		{"Pool_unknown_runtime", s.poolUnknown},
		{"ScaleUp_unknown_runtime", s.scaleUpUnknown},
		{"ScaleUp_two_distinct_workers", s.scaleUpTwo},
		{"Run_hello", s.runHello},
		{"Run_failure", s.runFailure},
		{"Run_timeout", s.runTimeout},
		{"Run_concurrent_on_one_worker", s.runConcurrent},
		{"DeleteWorker", s.deleteWorker},
		{"DeleteFunction", s.deleteFunction},
		{"DeletePool", s.deletePool},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t)
		})
	}
}

func (s *suite) orchestrator(t *testing.T) orchestrator.Orchestrator {
	t.Helper()
	o := s.h.New(t)
	t.Cleanup(func() { require.NoError(t, o.Close()) })
	return o
}

// pool creates a pool for a runtime named after the test.
func (s *suite) pool(t *testing.T, o orchestrator.Orchestrator) string {
	t.Helper()
	id := "rt-" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))
	require.NoError(t, o.CreatePool(context.Background(), orchestrator.Runtime{ID: id, Image: s.h.Image}))
	return id
}

// function builds a Function for the named test function.
func (s *suite) function(t *testing.T, runtimeID, name, id string, version int) orchestrator.Function {
	t.Helper()
	pkg, entry := s.h.Function(t, name)
	timeout := 5 * time.Second
	if name == Sleep {
		timeout = time.Second
	}
	cpu := s.h.CPU
	if cpu == 0 {
		cpu = 100
	}
	memory := s.h.MemorySize
	if memory <= 0 {
		memory = 32 << 20
	}
	return orchestrator.Function{
		ID: id, Version: version, RuntimeID: runtimeID, Entry: entry,
		CPU: cpu, MemorySize: memory, Timeout: timeout, Package: pkg,
	}
}

func (s *suite) scaleUp(t *testing.T, o orchestrator.Orchestrator, fn orchestrator.Function, n int) []orchestrator.Worker {
	t.Helper()
	ws, err := o.ScaleUp(context.Background(), fn, n)
	require.NoError(t, err)
	require.Len(t, ws, n)
	return ws
}

func (s *suite) run(o orchestrator.Orchestrator, w orchestrator.Worker, fn orchestrator.Function, input string) (orchestrator.Result, error) {
	inv := orchestrator.Invocation{
		ExecutionID: fmt.Sprintf("exec-%d", s.exec.Add(1)),
		FunctionID:  fn.ID, Version: fn.Version, Entry: fn.Entry,
		CPU: fn.CPU, MemorySize: fn.MemorySize, Timeout: fn.Timeout, RequestID: "req-suite",
	}
	if input != "" {
		inv.Input = json.RawMessage(input)
	}
	return o.Run(context.Background(), w, inv)
}

// eventually polls cond until it holds or waitFor passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// availableRestored waits until the pool has its full free capacity again.
func (s *suite) availableRestored(t *testing.T, o orchestrator.Orchestrator, runtimeID string) {
	t.Helper()
	eventually(t, "the pool to refill", func() bool {
		c, err := o.Pool(context.Background(), runtimeID)
		require.NoError(t, err)
		return c.Available == s.h.PoolSize
	})
}

func outputString(t *testing.T, res orchestrator.Result) string {
	t.Helper()
	var out string
	require.NoError(t, json.Unmarshal(res.Output, &out), "output %s", res.Output)
	return out
}

func (s *suite) createPoolCapacity(t *testing.T) {
	o := s.orchestrator(t)
	rt := s.pool(t, o)
	c, err := o.Pool(context.Background(), rt)
	require.NoError(t, err)
	require.Equal(t, orchestrator.Capacity{Total: s.h.PoolSize, Available: s.h.PoolSize}, c)

	// Creating an existing pool again is harmless.
	require.NoError(t, o.CreatePool(context.Background(), orchestrator.Runtime{ID: rt, Image: s.h.Image}))
	c, err = o.Pool(context.Background(), rt)
	require.NoError(t, err)
	require.Equal(t, s.h.PoolSize, c.Available)
}

func (s *suite) createPoolUnrunnable(t *testing.T) {
	o := s.orchestrator(t)
	err := o.CreatePool(context.Background(), orchestrator.Runtime{ID: "rt-bad", Image: UnrunnableImage})
	require.ErrorIs(t, err, orchestrator.ErrImageNotRunnable)
	require.ErrorContains(t, err, UnrunnableImage, "the message must name the image")
	_, err = o.Pool(context.Background(), "rt-bad")
	require.ErrorIs(t, err, orchestrator.ErrPoolNotFound)
}

func (s *suite) poolUnknown(t *testing.T) {
	o := s.orchestrator(t)
	_, err := o.Pool(context.Background(), "rt-missing")
	require.ErrorIs(t, err, orchestrator.ErrPoolNotFound)
	// Deleting what does not exist is not an error.
	require.NoError(t, o.DeleteFunction(context.Background(), "fn-missing", 0))
	require.NoError(t, o.DeleteWorker(context.Background(), orchestrator.Worker{Name: "missing", Address: "unix:///nonexistent/sock"}))
}

func (s *suite) scaleUpUnknown(t *testing.T) {
	o := s.orchestrator(t)
	_, err := o.ScaleUp(context.Background(), s.function(t, "rt-missing", Hello, "fn-1", 0), 1)
	require.ErrorIs(t, err, orchestrator.ErrPoolNotFound)
}

func (s *suite) scaleUpTwo(t *testing.T) {
	o := s.orchestrator(t)
	rt := s.pool(t, o)
	fn := s.function(t, rt, Hello, "fn-two", 0)
	ws := s.scaleUp(t, o, fn, 2)
	require.NotEqual(t, ws[0].Name, ws[1].Name)
	require.NotEqual(t, ws[0].Address, ws[1].Address)
	for _, w := range ws {
		require.NotEmpty(t, w.Name)
		require.NotEmpty(t, w.Address)
		res, err := s.run(o, w, fn, `{"name": "`+w.Name+`"}`)
		require.NoError(t, err)
		require.True(t, res.Success, "output %s logs %s", res.Output, res.Logs)
		require.Equal(t, "Hello, "+w.Name, outputString(t, res))
	}
	s.availableRestored(t, o, rt)
	c, err := o.Pool(context.Background(), rt)
	require.NoError(t, err)
	require.Equal(t, s.h.PoolSize+2, c.Total, "specialised workers count in Total")

	// More than the pool holds is still served.
	more := s.scaleUp(t, o, s.function(t, rt, Hello, "fn-more", 0), s.h.PoolSize+1)
	names := map[string]bool{ws[0].Name: true, ws[1].Name: true}
	for _, w := range more {
		require.False(t, names[w.Name], "worker %s handed out twice", w.Name)
		names[w.Name] = true
	}
}

func (s *suite) runHello(t *testing.T) {
	o := s.orchestrator(t)
	rt := s.pool(t, o)
	fn := s.function(t, rt, Hello, "fn-hello", 0)
	w := s.scaleUp(t, o, fn, 1)[0]
	for _, tc := range []struct {
		name, input, want string
	}{
		{name: "object input", input: `{"name": "Qinling"}`, want: "Hello, Qinling"},
		{name: "positional input", input: `{"__function_input": "positional"}`, want: "Hello, positional"},
		{name: "null input", input: ``, want: "Hello, World"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := s.run(o, w, fn, tc.input)
			require.NoError(t, err)
			require.True(t, res.Success, "output %s logs %s", res.Output, res.Logs)
			require.Equal(t, tc.want, outputString(t, res))
			require.Contains(t, res.Logs, tc.want)
			require.GreaterOrEqual(t, res.Duration, 0.0)
		})
	}
}

func (s *suite) runFailure(t *testing.T) {
	o := s.orchestrator(t)
	rt := s.pool(t, o)
	fn := s.function(t, rt, Fail, "fn-fail", 0)
	w := s.scaleUp(t, o, fn, 1)[0]
	res, err := s.run(o, w, fn, "")
	require.NoError(t, err, "a failing function is a result, not an error")
	require.False(t, res.Success)
	require.Contains(t, string(res.Output), "boom")

	// The worker survives its function's failure.
	res, err = s.run(o, w, fn, "")
	require.NoError(t, err)
	require.False(t, res.Success)
}

func (s *suite) runTimeout(t *testing.T) {
	o := s.orchestrator(t)
	rt := s.pool(t, o)
	fn := s.function(t, rt, Sleep, "fn-sleep", 0)
	w := s.scaleUp(t, o, fn, 1)[0]
	res, err := s.run(o, w, fn, "")
	require.NoError(t, err, "a timeout is a result, not an error")
	require.False(t, res.Success)
	require.Contains(t, strings.ToLower(string(res.Output)), "timeout")
	require.GreaterOrEqual(t, res.Duration, 0.9)

	// The runtime may retire the worker after a timeout; whatever it does,
	// fresh workers keep serving.
	hello := s.function(t, rt, Hello, "fn-after-timeout", 0)
	w2 := s.scaleUp(t, o, hello, 1)[0]
	res, err = s.run(o, w2, hello, `{"name": "again"}`)
	require.NoError(t, err)
	require.True(t, res.Success, "output %s logs %s", res.Output, res.Logs)
	require.Equal(t, "Hello, again", outputString(t, res))
}

func (s *suite) runConcurrent(t *testing.T) {
	o := s.orchestrator(t)
	rt := s.pool(t, o)
	fn := s.function(t, rt, Hello, "fn-concurrent", 0)
	// A function's timeout counts from the worker's receipt of the call, so
	// the last of eight calls on one worker also waits for the seven before
	// it to get their processes (strict mode starts one per call): on two
	// loaded cores that took more than the usual 5 s. The case is about
	// concurrency and logs, not time.
	fn.Timeout = time.Minute
	w := s.scaleUp(t, o, fn, 1)[0]
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	results := make([]orchestrator.Result, n)
	for i := range n {
		wg.Go(func() {
			results[i], errs[i] = s.run(o, w, fn, fmt.Sprintf(`{"name": "caller-%d"}`, i))
		})
	}
	wg.Wait()
	for i := range n {
		require.NoError(t, errs[i])
		require.True(t, results[i].Success, "output %s logs %s", results[i].Output, results[i].Logs)
		want := fmt.Sprintf("Hello, caller-%d", i)
		require.Equal(t, want, outputString(t, results[i]))
		require.Contains(t, results[i].Logs, want)
		require.NotContains(t, results[i].Logs, fmt.Sprintf("caller-%d", (i+1)%n), "logs of one execution must not leak into another")
	}
}

func (s *suite) deleteWorker(t *testing.T) {
	o := s.orchestrator(t)
	rt := s.pool(t, o)
	fn := s.function(t, rt, Hello, "fn-delw", 0)
	ws := s.scaleUp(t, o, fn, 2)
	require.NoError(t, o.DeleteWorker(context.Background(), ws[0]))
	_, err := s.run(o, ws[0], fn, "")
	require.ErrorIs(t, err, orchestrator.ErrWorkerNotFound)
	// Deleting again is not an error, and the other worker is untouched.
	require.NoError(t, o.DeleteWorker(context.Background(), ws[0]))
	res, err := s.run(o, ws[1], fn, "")
	require.NoError(t, err)
	require.True(t, res.Success)
}

func (s *suite) deleteFunction(t *testing.T) {
	o := s.orchestrator(t)
	rt := s.pool(t, o)
	v0 := s.function(t, rt, Hello, "fn-del", 0)
	v1 := s.function(t, rt, Hello, "fn-del", 1)
	other := s.function(t, rt, Hello, "fn-keep", 0)
	gone := s.scaleUp(t, o, v0, 2)
	keptVersion := s.scaleUp(t, o, v1, 1)[0]
	kept := s.scaleUp(t, o, other, 1)[0]

	require.NoError(t, o.DeleteFunction(context.Background(), "fn-del", 0))
	for _, w := range gone {
		_, err := s.run(o, w, v0, "")
		require.ErrorIs(t, err, orchestrator.ErrWorkerNotFound)
	}
	for _, tc := range []struct {
		w  orchestrator.Worker
		fn orchestrator.Function
	}{{keptVersion, v1}, {kept, other}} {
		res, err := s.run(o, tc.w, tc.fn, "")
		require.NoError(t, err)
		require.True(t, res.Success)
	}
	s.availableRestored(t, o, rt)
	eventually(t, "deleted workers to leave the total", func() bool {
		c, err := o.Pool(context.Background(), rt)
		require.NoError(t, err)
		return c.Total == s.h.PoolSize+2
	})
}

func (s *suite) deletePool(t *testing.T) {
	o := s.orchestrator(t)
	rt := s.pool(t, o)
	fn := s.function(t, rt, Hello, "fn-delpool", 0)
	w := s.scaleUp(t, o, fn, 1)[0]
	require.NoError(t, o.DeletePool(context.Background(), rt))
	_, err := o.Pool(context.Background(), rt)
	require.ErrorIs(t, err, orchestrator.ErrPoolNotFound)
	_, err = s.run(o, w, fn, "")
	require.ErrorIs(t, err, orchestrator.ErrWorkerNotFound)
	_, err = o.ScaleUp(context.Background(), fn, 1)
	require.ErrorIs(t, err, orchestrator.ErrPoolNotFound)
	// Deleting it again is not an error.
	require.NoError(t, o.DeletePool(context.Background(), rt))
}
