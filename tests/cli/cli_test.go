//go:build cli

package cli

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/testutil"
)

// openstack is Debian's client on purpose: `openstack` on PATH may belong to
// another interpreter (pyenv) that cannot see python3-qinlingclient.
const openstack = "/usr/bin/openstack"

const (
	callTimeout = 2 * time.Minute
	waitTimeout = time.Minute
)

// helloPy prints and returns a greeting; helloAgainPy is the same function
// with other words, so that each package's output tells which one ran.
const (
	helloPy = "def main(name='World', **kwargs):\n" +
		"    print('Hello, %s' % name)\n" +
		"    return 'Hello, %s' % name\n"
	helloAgainPy = "def main(name='World', **kwargs):\n" +
		"    print('Hi again, %s' % name)\n" +
		"    return 'Hi again, %s' % name\n"
)

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// client runs openstack commands against one server with a private
// environment: no cloud config, no OS_* variables from the caller but the
// ones given to newClient, its own HOME and TMPDIR (the client zips --file
// uploads into $TMPDIR/<name>.zip, so clients used in parallel must not
// share one).
type client struct {
	t     *testing.T
	dir   string
	osEnv map[string]string
	env   []string
}

// newClient makes a client for t whose commands see only osEnv (OS_* settings).
func newClient(t *testing.T, osEnv map[string]string) *client {
	t.Helper()
	if _, err := os.Stat(openstack); err != nil {
		t.Fatalf("%s is missing: apt-get install python3-openstackclient python3-qinlingclient (.ci/run does)", openstack)
	}
	dir := t.TempDir()
	for _, d := range []string{"home", "tmp"} {
		require.NoError(t, os.Mkdir(filepath.Join(dir, d), 0o700))
	}
	c := &client{t: t, dir: dir, osEnv: osEnv, env: []string{
		"PATH=/usr/bin:/bin",
		"LANG=C.UTF-8",
		"HOME=" + filepath.Join(dir, "home"),
		"TMPDIR=" + filepath.Join(dir, "tmp"),
	}}
	for k, v := range osEnv {
		c.env = append(c.env, k+"="+v)
	}
	return c
}

// in returns the same identity as a client of subtest t, with its own
// directories: failures are reported to t, and files do not collide with
// those of subtests running in parallel.
func (c *client) in(t *testing.T) *client { return newClient(t, c.osEnv) }

// scenario is what every group of the test shares: the CLI as the demo user
// and as the admin, their projects, the API's public URL (the prefix of
// webhook URLs) and an HTTP target for the few checks the CLI cannot make.
type scenario struct {
	demo, admin  *client
	demoProject  string
	adminProject string
	apiURL       string
	target       *testutil.Target // acts as Demo; .As(testutil.Admin) for admin calls
	pythonImage  string           // what `runtime create` takes for a Python runtime
	swift        bool             // Keystone and a Swift in the catalog: swift functions work
	stackEnv     map[string]string
}

// newScenario starts an all-in-one server (auth off: both clients are the
// same unauthenticated client, project "default"), or with
// QINLING_REAL_STACK=1 uses the devstack stack's openrc-demo and
// openrc-admin: password auth, qinling found through the Keystone catalog.
func newScenario(t *testing.T) *scenario {
	t.Helper()
	if !testutil.RealStack() {
		srv := testutil.StartAllInOne(t)
		env := map[string]string{"OS_AUTH_TYPE": "none", "OS_ENDPOINT": srv.URL}
		return &scenario{
			demo: newClient(t, env), admin: newClient(t, env),
			demoProject: "default", adminProject: "default",
			apiURL: srv.URL, target: testutil.ServerTarget(srv), pythonImage: "python3",
		}
	}
	st, err := testutil.LoadStack()
	require.NoError(t, err)
	demoEnv, err := st.OpenRC("demo")
	require.NoError(t, err)
	adminEnv, err := st.OpenRC("admin")
	require.NoError(t, err)
	demoTok, err := st.Token(testutil.Demo)
	require.NoError(t, err)
	adminTok, err := st.Token(testutil.Admin)
	require.NoError(t, err)
	t.Logf("real stack: demo and admin through Keystone at %s", demoEnv["OS_AUTH_URL"])
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("last 100 lines of the stack's qinling logs:\n%s", st.LogTail(100))
		}
	})
	return &scenario{
		demo: newClient(t, demoEnv), admin: newClient(t, adminEnv),
		demoProject: demoTok.ProjectID, adminProject: adminTok.ProjectID,
		apiURL: st.URL, target: testutil.StackTarget(st), pythonImage: st.PythonImage(),
		swift: st.Enabled("swift"), stackEnv: st.Env,
	}
}

// tryRun runs `openstack args...` and reports only whether it worked (for
// cleanup after a failure).
func (c *client) tryRun(args ...string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, openstack, args...)
	cmd.Dir, cmd.Env = c.dir, c.env
	return cmd.Run() == nil
}

// undo registers `openstack args...` to run when the client's test ends
// failed. Cleanups run last-registered first, so registering each delete
// right after its create tears a half-done scenario down in the right order
// (a webhook before its function, functions before their runtime).
func (c *client) undo(args ...string) {
	t := c.t
	t.Cleanup(func() {
		if t.Failed() {
			c.tryRun(args...)
		}
	})
}

// run runs `openstack args...` and returns its stdout; a non-zero exit or a
// timeout fails the test, showing the command, stdout and stderr.
func (c *client) run(args ...string) string {
	c.t.Helper()
	stdout, stderr, err := c.exec(args...)
	if err != nil {
		c.t.Fatalf("openstack %s: %v\n--- stdout:\n%s\n--- stderr:\n%s", quote(args), err, stdout, stderr)
	}
	return stdout
}

// exec runs `openstack args...` within callTimeout and logs it.
func (c *client) exec(args ...string) (stdout, stderr string, err error) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, openstack, args...)
	cmd.Dir, cmd.Env = c.dir, c.env
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	start := time.Now()
	err = cmd.Run()
	c.t.Logf("$ openstack %s  (%.1fs)", quote(args), time.Since(start).Seconds())
	return out.String(), errOut.String(), err
}

// show runs a show-style command with -f json and returns its fields.
func (c *client) show(args ...string) map[string]any {
	c.t.Helper()
	out := c.run(append(args, "-f", "json")...)
	var m map[string]any
	require.NoError(c.t, json.Unmarshal([]byte(out), &m), "openstack %s printed %q", quote(args), out)
	return m
}

// list runs a list command with -f json; rows are keyed by the capitalised
// column headers ("Id", "Status", ...).
func (c *client) list(args ...string) []map[string]any {
	c.t.Helper()
	out := c.run(append(args, "-f", "json")...)
	var rows []map[string]any
	require.NoError(c.t, json.Unmarshal([]byte(out), &rows), "openstack %s printed %q", quote(args), out)
	return rows
}

// accepted runs a command that prints only messages and checks that it
// printed each of them.
func (c *client) accepted(args []string, msgs ...string) {
	c.t.Helper()
	out := c.run(args...)
	for _, m := range msgs {
		assert.Contains(c.t, out, m, "openstack %s", quote(args))
	}
}

// createFunction creates a package function from one file, hello.py with
// code, in a directory of its own, and registers its delete for a failure.
func (c *client) createFunction(runtimeID, name, code string) (string, map[string]any) {
	c.t.Helper()
	file := writeFile(c.t, filepath.Join(c.dir, "src-"+name), "hello.py", code)
	fn := c.show("function", "create", "--file", file, "--entry", "hello.main", "--runtime", runtimeID, "--name", name)
	id, _ := fn["id"].(string)
	require.Regexp(c.t, uuidRE, id, "function create printed %v", fn)
	c.undo("function", "delete", id)
	assert.Equal(c.t, name, fn["name"])
	assert.Equal(c.t, runtimeID, fn["runtime_id"])
	return id, fn
}

// execute runs a synchronous execution and checks that it succeeded.
func (c *client) execute(args ...string) map[string]any {
	c.t.Helper()
	ex := c.show(append([]string{"function", "execution", "create"}, args...)...)
	require.Regexp(c.t, uuidRE, ex["id"], "execution %v", ex)
	require.Equal(c.t, "success", ex["status"], "execution %v", ex)
	assert.Equal(c.t, true, ex["sync"])
	return ex
}

// waitExecution shows an execution until it is no longer running.
func (c *client) waitExecution(id string) map[string]any {
	c.t.Helper()
	var ex map[string]any
	testutil.WaitFor(c.t, "execution "+id+" to finish", waitTimeout, time.Second, func() (bool, any) {
		ex = c.show("function", "execution", "show", id)
		return ex["status"] != "running", ex
	})
	return ex
}

func quote(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \"'{}*") {
			a = "'" + a + "'"
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}

// output is the decoded output of an execution's result column.
func output(t *testing.T, ex map[string]any) any {
	t.Helper()
	res := testutil.ObjectOf(t, ex["result"])
	require.Contains(t, res, "duration", "result %v", res)
	return res["output"]
}

// timestamp parses a time column (the server's RFC 3339 UTC form).
func timestamp(t *testing.T, v any) time.Time {
	t.Helper()
	s, _ := v.(string)
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02 15:04:05"} {
		if ts, err := time.Parse(layout, s); err == nil {
			return ts.UTC()
		}
	}
	t.Fatalf("%T %v is not a timestamp", v, v)
	return time.Time{}
}

func findRow(rows []map[string]any, key, value string) map[string]any {
	for _, r := range rows {
		if r[key] == value {
			return r
		}
	}
	return nil
}

func requireColumns(t *testing.T, row map[string]any, cols ...string) {
	t.Helper()
	for _, c := range cols {
		require.Contains(t, row, c, "column %q missing from %v", c, row)
	}
	assert.Len(t, row, len(cols), "unexpected columns in %v", row)
}

// sameFields asserts that got shows the same value as want for each field.
func sameFields(t *testing.T, want, got map[string]any, fields ...string) {
	t.Helper()
	for _, f := range fields {
		assert.Equal(t, want[f], got[f], "field %s", f)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return b
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	require.NoError(t, os.MkdirAll(dir, 0o755))
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
	return p
}

// unzipOne reads a zip that must hold exactly one file, named name.
func unzipOne(t *testing.T, data []byte, name string) string {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	require.NoError(t, err, "download is not a zip")
	require.Len(t, zr.File, 1)
	assert.Equal(t, name, zr.File[0].Name)
	rc, err := zr.File[0].Open()
	require.NoError(t, err)
	defer rc.Close()
	content, err := io.ReadAll(rc)
	require.NoError(t, err)
	return string(content)
}

// suffix makes names unique on a stack that outlives test runs.
func suffix(t *testing.T) string {
	b := make([]byte, 4)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return hex.EncodeToString(b)
}

// TestCLI drives every command of the qinling plugin (40 of them) with the
// real client. The runtime is set up first and the cron job started right
// after, since it needs two minute boundaries to finish; the groups that do
// not share state (functions and executions, versions and aliases, workers,
// webhooks, job updates) then run in parallel; the job is checked last and
// the runtime deleted. Admin-only commands (runtime create/delete, pool
// show, scaleup/scaledown/detach, worker list, version detach) run as admin,
// everything else as the demo member.
func TestCLI(t *testing.T) {
	t.Parallel()
	s := newScenario(t)
	rtID := setUpRuntime(t, s)
	job := startJob(t, s, rtID)

	t.Run("groups", func(t *testing.T) {
		t.Run("functions", func(t *testing.T) { t.Parallel(); testFunctions(t, s, rtID) })
		t.Run("versions", func(t *testing.T) { t.Parallel(); testVersionsAndAliases(t, s, rtID) })
		t.Run("workers", func(t *testing.T) { t.Parallel(); testWorkers(t, s, rtID) })
		t.Run("webhooks", func(t *testing.T) { t.Parallel(); testWebhooks(t, s, rtID) })
		t.Run("jobs", func(t *testing.T) { t.Parallel(); testJobUpdates(t, s, job) })
	})
	t.Run("cron job", func(t *testing.T) { checkJob(t, s, job) })

	adm := s.admin
	adm.accepted([]string{"runtime", "delete", rtID}, "Request to delete runtime "+rtID+" has been accepted.")
	// The engine removes the pool, then the runtime: it is gone or going.
	if row := findRow(adm.list("runtime", "list"), "Id", rtID); row != nil {
		assert.Equal(t, "deleting", row["Status"], "runtime %s after delete", rtID)
	}
}

// setUpRuntime covers runtime create, show, list and pool show (as admin)
// and returns an available runtime, deleted at the end of TestCLI.
func setUpRuntime(t *testing.T, s *scenario) string {
	adm := s.admin
	name := "cli-py-" + suffix(t)
	rt := adm.show("runtime", "create", s.pythonImage, "--name", name, "--description", "CLI scenario runtime")
	rtID, _ := rt["id"].(string)
	require.Regexp(t, uuidRE, rtID)
	adm.undo("runtime", "delete", rtID)
	assert.Equal(t, name, rt["name"])
	assert.Equal(t, s.pythonImage, rt["image"])
	assert.Equal(t, "CLI scenario runtime", rt["description"])
	assert.Equal(t, "creating", rt["status"])
	assert.Equal(t, true, rt["is_public"])
	assert.Equal(t, true, rt["trusted"])
	assert.Equal(t, s.adminProject, rt["project_id"])

	var shown map[string]any
	testutil.WaitFor(t, "runtime "+rtID+" to become available", waitTimeout, time.Second, func() (bool, any) {
		shown = adm.show("runtime", "show", rtID)
		require.Contains(t, []any{"creating", "available"}, shown["status"], "runtime %v", shown)
		return shown["status"] == "available", shown
	})
	requireColumns(t, shown, "id", "name", "image", "status", "description", "is_public", "trusted", "project_id", "created_at", "updated_at")
	sameFields(t, rt, shown, "id", "name", "image", "description", "is_public", "trusted", "project_id", "created_at")

	rows := adm.list("runtime", "list")
	row := findRow(rows, "Id", rtID)
	require.NotNil(t, row, "runtime %s not in %v", rtID, rows)
	requireColumns(t, row, "Id", "Name", "Image", "Status", "Description", "Is_public", "Trusted", "Project_id", "Created_at", "Updated_at")
	assert.Equal(t, name, row["Name"])
	assert.Equal(t, "available", row["Status"])

	pool := adm.show("runtime", "pool", "show", rtID)
	requireColumns(t, pool, "name", "capacity")
	assert.Equal(t, rtID, pool["name"])
	capacity := testutil.ObjectOf(t, pool["capacity"])
	total, _ := capacity["total"].(float64)
	available, _ := capacity["available"].(float64)
	assert.Greater(t, total, 0.0, "capacity %v", capacity)
	assert.True(t, available >= 0 && available <= total, "capacity %v", capacity)
	return rtID
}
