//go:build functional

package functional

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/testutil"
)

// srv is the API most tests share, acting as the demo user: a private
// all-in-one started by TestMain, or the devstack stack when
// QINLING_REAL_STACK=1 (see testutil.Target). admin is the same API acting
// as the admin user, for admin-only calls. On the all-in-one the package
// size limit is small so the oversize case needs no big upload.
var srv, admin *testutil.Target

const maxPackageSize = 64 << 10

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "qaio-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	var stop func() error
	srv, stop, err = testutil.NewTarget(dir, testutil.WithConfig("storage", "max_package_size", fmt.Sprint(maxPackageSize)))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	admin = srv.As(testutil.Admin)
	if srv.Real() {
		runtimeReady, executionDone = 2*runtimeReady, 2*executionDone
	}
	fmt.Fprintf(os.Stderr, "functional tests against %s\n", srv)
	code := m.Run()
	if srv.Real() {
		// The stack outlives this process: remove what the tests made
		// (a runtime keeps prewarmed workers on every engine).
		if err := cleanupCreated(); err != nil {
			fmt.Fprintf(os.Stderr, "cleaning up the stack: %v\n", err)
		}
	}
	if err := stop(); err != nil {
		fmt.Fprintf(os.Stderr, "stopping the shared qinling-api: %v\n", err)
	}
	if code != 0 {
		fmt.Fprintf(os.Stderr, "last 100 lines of the server log(s):\n%s\n", srv.LogTail(100))
	}
	return code
}

// created records what the tests made on a real stack, for cleanupCreated.
var created struct {
	sync.Mutex
	functions []createdFunction
	runtimes  []string
}

type createdFunction struct {
	owner *testutil.Target
	id    string
}

func rememberFunction(owner *testutil.Target, id string) {
	created.Lock()
	defer created.Unlock()
	created.functions = append(created.functions, createdFunction{owner, id})
}

func rememberRuntime(id string) {
	created.Lock()
	defer created.Unlock()
	created.runtimes = append(created.runtimes, id)
}

// cleanupCreated deletes the functions, then the runtimes the tests made;
// already deleted ones (404) are fine.
func cleanupCreated() error {
	created.Lock()
	defer created.Unlock()
	var errs []error
	del := func(c *testutil.Target, path string) {
		r, err := c.TryDo(http.MethodDelete, path, nil)
		switch {
		case err != nil:
			errs = append(errs, err)
		case r.Status != http.StatusNoContent && r.Status != http.StatusNotFound:
			errs = append(errs, fmt.Errorf("%s", r))
		}
	}
	for _, f := range created.functions {
		del(f.owner, "/v1/functions/"+f.id)
	}
	for _, id := range created.runtimes {
		del(admin, "/v1/runtimes/"+id)
	}
	return errors.Join(errs...)
}

// Timeouts for asynchronous state changes (the brief's budget: ≤ 30 s on
// the all-in-one; the real stack gets twice that, its engines share two
// cores with MariaDB, RabbitMQ and Keystone).
var (
	runtimeReady  = 30 * time.Second
	executionDone = 30 * time.Second
)

// helloPy is the function upstream's docs and tempest use.
const helloPy = "def main(name='World', **kwargs):\n" +
	"    print('Hello, %s' % name)\n" +
	"    return 'Hello, %s' % name\n"

// The fields every response object must carry (docs/api.md, "Responses"); the
// client re-fetches, or crashes, when one is missing.
var (
	runtimeFields   = []string{"id", "name", "image", "status", "description", "is_public", "trusted", "project_id", "created_at", "updated_at"}
	functionFields  = []string{"id", "name", "description", "count", "code", "runtime_id", "entry", "project_id", "created_at", "updated_at", "cpu", "memory_size", "timeout", "latest_version"}
	executionFields = []string{"id", "function_alias", "function_id", "function_version", "description", "input", "result", "status", "sync", "project_id", "created_at", "updated_at"}

	uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	// Timestamps are UTC without fractions (docs/api.md, "Responses").
	timeRE = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$`)
)

// call sends a request to s and checks what every response must carry.
func call(t *testing.T, s *testutil.Target, method, path string, body any, headers ...string) *testutil.Response {
	t.Helper()
	r := s.Do(t, method, path, body, headers...)
	assert.NotEmpty(t, r.Header.Get("X-Openstack-Request-Id"), "%s: no X-Openstack-Request-Id", r)
	return r
}

// expect fails the test unless r has the given status.
func expect(t *testing.T, r *testutil.Response, status int) {
	t.Helper()
	require.Equal(t, status, r.Status, "%s", r)
}

// requireShape checks that obj has every field, a UUID id and upstream's
// timestamp format.
func requireShape(t *testing.T, obj map[string]any, fields []string) {
	t.Helper()
	for _, f := range fields {
		assert.Contains(t, obj, f, "field %q missing from %v", f, obj)
	}
	assert.Regexp(t, uuidRE, obj["id"], "id")
	assert.Regexp(t, timeRE, obj["created_at"], "created_at")
	if obj["updated_at"] != nil {
		assert.Regexp(t, timeRE, obj["updated_at"], "updated_at")
	}
	if t.Failed() {
		t.FailNow()
	}
}

// waitFor GETs path until done accepts the object or timeout passes, and
// returns the last object.
func waitFor(t *testing.T, s *testutil.Target, path string, timeout time.Duration, done func(map[string]any) bool) map[string]any {
	t.Helper()
	var obj map[string]any
	testutil.WaitFor(t, "GET "+path+" to be done", timeout, 200*time.Millisecond, func() (bool, any) {
		r := call(t, s, http.MethodGet, path, nil)
		expect(t, r, http.StatusOK)
		obj = r.Object(t)
		return done(obj), string(r.Body)
	})
	return obj
}

// createRuntime POSTs a runtime as `openstack runtime create` does and checks
// the 201 answer; s must act as an admin on the real stack.
func createRuntime(t *testing.T, s *testutil.Target, image, name string) map[string]any {
	t.Helper()
	r := call(t, s, http.MethodPost, "/v1/runtimes", map[string]any{
		"image": image, "name": name, "is_public": true, "trusted": true,
	})
	expect(t, r, http.StatusCreated)
	rt := r.Object(t)
	requireShape(t, rt, runtimeFields)
	rememberRuntime(rt["id"].(string))
	return rt
}

// waitRuntime waits until the runtime has left `creating` and returns it.
func waitRuntime(t *testing.T, s *testutil.Target, id string) map[string]any {
	t.Helper()
	return waitFor(t, s, "/v1/runtimes/"+id, runtimeReady, func(rt map[string]any) bool {
		return rt["status"] != "creating"
	})
}

// fixture is a value made once per test binary by the first test needing it.
type fixture struct {
	once sync.Once
	val  string
}

func (f *fixture) get(t *testing.T, what string, make func(t *testing.T) string) string {
	t.Helper()
	f.once.Do(func() { f.val = make(t) })
	if f.val == "" {
		t.Fatalf("the shared %s could not be made; see the first test that needed it", what)
	}
	return f.val
}

var pyRuntime, brokenRuntime, helloFn fixture

// pythonRuntime is the id of an available python3 runtime on srv.
func pythonRuntime(t *testing.T) string {
	return pyRuntime.get(t, "python3 runtime", func(t *testing.T) string {
		rt := createRuntime(t, admin, "python3", "python3")
		rt = waitRuntime(t, srv, rt["id"].(string))
		require.Equal(t, "available", rt["status"], "python3 runtime: %v", rt)
		return rt["id"].(string)
	})
}

// unrunnableRuntime is the id of a runtime on srv that ended in `error`.
func unrunnableRuntime(t *testing.T) string {
	return brokenRuntime.get(t, "busybox runtime", func(t *testing.T) string {
		rt := createRuntime(t, admin, "docker.io/library/busybox", "busybox")
		rt = waitRuntime(t, srv, rt["id"].(string))
		require.Equal(t, "error", rt["status"], "busybox runtime: %v", rt)
		return rt["id"].(string)
	})
}

// helloFunction is the id of a hello.main function on srv's python runtime;
// tests only execute it, never change it.
func helloFunction(t *testing.T) string {
	return helloFn.get(t, "hello function", func(t *testing.T) string {
		fn := createFunction(t, srv, packageForm(pythonRuntime(t), "hello", "hello.main",
			testutil.Zip(t, map[string]string{"hello.py": helloPy})))
		return fn["id"].(string)
	})
}

// packageForm is the multipart body `openstack function create --package`
// sends; extra name, value pairs override fields ("" removes one).
func packageForm(runtimeID, name, entry string, pkg []byte, extra ...string) *testutil.Form {
	f := &testutil.Form{
		Fields: map[string]string{
			"runtime_id": runtimeID,
			"code":       fmt.Sprintf(`{"source": "package", "md5sum": "%s"}`, testutil.MD5(pkg)),
			"name":       name,
			"entry":      entry,
			"timeout":    "5",
		},
		Files: map[string]testutil.File{"package": {Name: name + ".zip", Data: pkg}},
	}
	for i := 0; i+1 < len(extra); i += 2 {
		if extra[i+1] == "" {
			delete(f.Fields, extra[i])
		} else {
			f.Fields[extra[i]] = extra[i+1]
		}
	}
	return f
}

// createFunction POSTs form and checks the 201 answer.
func createFunction(t *testing.T, s *testutil.Target, form *testutil.Form) map[string]any {
	t.Helper()
	r := call(t, s, http.MethodPost, "/v1/functions", form)
	expect(t, r, http.StatusCreated)
	fn := r.Object(t)
	requireShape(t, fn, functionFields)
	rememberFunction(s, fn["id"].(string))
	return fn
}

// newFunction creates a function from files on srv's python runtime.
func newFunction(t *testing.T, name, entry string, files map[string]string, extra ...string) string {
	t.Helper()
	fn := createFunction(t, srv, packageForm(pythonRuntime(t), name, entry, testutil.Zip(t, files), extra...))
	return fn["id"].(string)
}

// execute creates an execution with the body `openstack function execution
// create` sends (input nil means --input not given) and checks the 201.
func execute(t *testing.T, s *testutil.Target, functionID string, input any, sync bool) map[string]any {
	t.Helper()
	r := call(t, s, http.MethodPost, "/v1/executions", map[string]any{
		"function_id": functionID, "function_version": 0, "function_alias": nil,
		"sync": sync, "input": input,
	})
	expect(t, r, http.StatusCreated)
	ex := r.Object(t)
	requireShape(t, ex, executionFields)
	assert.Equal(t, functionID, ex["function_id"])
	assert.Equal(t, sync, ex["sync"])
	return ex
}

// result decodes an execution's result, which must be a JSON string holding
// an object with output and duration (docs/api.md, "Responses").
func result(t *testing.T, ex map[string]any) (output any, duration float64) {
	t.Helper()
	s, ok := ex["result"].(string)
	require.True(t, ok, "result must be a JSON string, got %T %v", ex["result"], ex["result"])
	var res map[string]any
	require.NoError(t, json.Unmarshal([]byte(s), &res), "result %q", s)
	require.Contains(t, res, "output", "result %s", s)
	d, ok := res["duration"].(float64)
	require.True(t, ok, "result %s: duration must be a number", s)
	return res["output"], d
}

// waitExecution polls an execution until it is no longer running.
func waitExecution(t *testing.T, s *testutil.Target, id string) map[string]any {
	t.Helper()
	ex := waitFor(t, s, "/v1/executions/"+id, executionDone, func(ex map[string]any) bool {
		return ex["status"] != "running"
	})
	requireShape(t, ex, executionFields)
	return ex
}

// succeeds runs functionID synchronously and checks it printed and returned want.
func succeeds(t *testing.T, s *testutil.Target, functionID string, input any, want string) map[string]any {
	t.Helper()
	ex := execute(t, s, functionID, input, true)
	require.Equal(t, "success", ex["status"], "execution %v", ex)
	out, _ := result(t, ex)
	require.Equal(t, want, out, "output of %v", ex)
	return ex
}
