//go:build cli

package cli

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/md5"
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

const helloPy = "def main(name='World', **kwargs):\n" +
	"    print('Hello, %s' % name)\n" +
	"    return 'Hello, %s' % name\n"

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// client runs openstack commands against one server with a private
// environment: no cloud config, no OS_* variables from the caller but the
// ones given to newClient.
type client struct {
	t   *testing.T
	dir string
	env []string
}

// newClient makes a client whose commands see only osEnv (OS_* settings).
func newClient(t *testing.T, osEnv map[string]string) *client {
	if _, err := os.Stat(openstack); err != nil {
		t.Fatalf("%s is missing: apt-get install python3-openstackclient python3-qinlingclient (.ci/run does)", openstack)
	}
	dir := t.TempDir()
	for _, d := range []string{"home", "tmp"} {
		require.NoError(t, os.Mkdir(filepath.Join(dir, d), 0o700))
	}
	c := &client{t: t, dir: dir, env: []string{
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

// clients returns the CLI as the demo user and as the admin, and the
// admin's project. On the all-in-one (auth off) both are the same
// unauthenticated client, project "default"; with QINLING_REAL_STACK=1 they
// use the devstack stack's openrc-demo and openrc-admin: password auth,
// qinling found through the Keystone catalog.
func clients(t *testing.T) (demo, admin *client, adminProject string) {
	if !testutil.RealStack() {
		srv := testutil.StartAllInOne(t)
		env := map[string]string{"OS_AUTH_TYPE": "none", "OS_ENDPOINT": srv.URL}
		return newClient(t, env), newClient(t, env), "default"
	}
	st, err := testutil.LoadStack()
	require.NoError(t, err)
	demoEnv, err := st.OpenRC("demo")
	require.NoError(t, err)
	adminEnv, err := st.OpenRC("admin")
	require.NoError(t, err)
	tok, err := st.Token(testutil.Admin)
	require.NoError(t, err)
	t.Logf("real stack: demo and admin through Keystone at %s", demoEnv["OS_AUTH_URL"])
	return newClient(t, demoEnv), newClient(t, adminEnv), tok.ProjectID
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

// run runs `openstack args...` and returns its stdout; a non-zero exit or a
// timeout fails the test, showing the command, stdout and stderr.
func (c *client) run(args ...string) string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, openstack, args...)
	cmd.Dir, cmd.Env = c.dir, c.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	c.t.Logf("$ openstack %s  (%.1fs)", quote(args), time.Since(start).Seconds())
	if err != nil {
		c.t.Fatalf("openstack %s: %v\n--- stdout:\n%s\n--- stderr:\n%s", quote(args), err, stdout.String(), stderr.String())
	}
	return stdout.String()
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

func quote(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if strings.ContainsAny(a, " \"'{}") {
			a = "'" + a + "'"
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}

// object accepts a dict column printed as a JSON object or as a JSON string.
func object(t *testing.T, v any) map[string]any {
	t.Helper()
	switch o := v.(type) {
	case map[string]any:
		return o
	case string:
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(o), &m), "%q is not a JSON object", o)
		return m
	}
	t.Fatalf("%T %v is not an object", v, v)
	return nil
}

// output is the decoded output of an execution's result column.
func output(t *testing.T, ex map[string]any) any {
	t.Helper()
	res := object(t, ex["result"])
	require.Contains(t, res, "duration", "result %v", res)
	return res["output"]
}

func findRow(rows []map[string]any, id string) map[string]any {
	for _, r := range rows {
		if r["Id"] == id {
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
}

func md5hex(b []byte) string {
	sum := md5.Sum(b)
	return hex.EncodeToString(sum[:])
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return b
}

// TestCLISpine walks runtime → function → execution → cleanup with the real
// client, serially, asserting on every printed result. Runtimes are the
// admin's business (create, delete and pool show are admin-only with
// Keystone); functions and executions are the demo user's.
func TestCLISpine(t *testing.T) {
	c, adm, adminProject := clients(t)
	var leftovers [][]string // delete commands, run if the test fails midway
	t.Cleanup(func() {
		if t.Failed() {
			for i := len(leftovers) - 1; i >= 0; i-- {
				cl := c
				if leftovers[i][0] == "runtime" {
					cl = adm
				}
				cl.tryRun(leftovers[i]...)
			}
		}
	})

	// --- runtime
	rt := adm.show("runtime", "create", "python3", "--name", "py")
	rtID, _ := rt["id"].(string)
	require.Regexp(t, uuidRE, rtID)
	assert.Equal(t, "py", rt["name"])
	assert.Equal(t, "python3", rt["image"])
	assert.Equal(t, "creating", rt["status"])
	assert.Equal(t, true, rt["is_public"])
	assert.Equal(t, true, rt["trusted"])
	assert.Equal(t, adminProject, rt["project_id"])
	leftovers = append(leftovers, []string{"runtime", "delete", rtID})

	deadline := time.Now().Add(waitTimeout)
	for {
		status := strings.TrimSpace(adm.run("runtime", "show", rtID, "-f", "value", "-c", "status"))
		if status == "available" {
			break
		}
		require.Equal(t, "creating", status, "runtime %s", rtID)
		require.True(t, time.Now().Before(deadline), "runtime %s not available after %s", rtID, waitTimeout)
		time.Sleep(time.Second)
	}

	rows := adm.list("runtime", "list")
	row := findRow(rows, rtID)
	require.NotNil(t, row, "runtime %s not in %v", rtID, rows)
	requireColumns(t, row, "Id", "Name", "Image", "Status", "Description", "Is_public", "Trusted", "Project_id", "Created_at", "Updated_at")
	assert.Equal(t, "py", row["Name"])
	assert.Equal(t, "available", row["Status"])

	pool := adm.show("runtime", "pool", "show", rtID)
	assert.Equal(t, rtID, pool["name"])
	capacity := object(t, pool["capacity"])
	total, _ := capacity["total"].(float64)
	available, _ := capacity["available"].(float64)
	assert.Greater(t, total, 0.0, "capacity %v", capacity)
	assert.True(t, available >= 0 && available <= total, "capacity %v", capacity)

	// --- functions
	helloFile := filepath.Join(c.dir, "hello.py")
	require.NoError(t, os.WriteFile(helloFile, []byte(helloPy), 0o644))
	fn := c.show("function", "create", "--file", helloFile, "--entry", "hello.main", "--runtime", rtID, "--name", "hello")
	fid, _ := fn["id"].(string)
	require.Regexp(t, uuidRE, fid)
	leftovers = append(leftovers, []string{"function", "delete", fid})
	assert.Equal(t, "hello", fn["name"])
	assert.Equal(t, "hello.main", fn["entry"])
	assert.Equal(t, rtID, fn["runtime_id"])
	assert.Equal(t, 5.0, fn["timeout"], "the client sends its default timeout 5")
	assert.Equal(t, 100.0, fn["cpu"])
	assert.Equal(t, 33554432.0, fn["memory_size"])
	assert.Equal(t, 0.0, fn["count"])
	helloCode := object(t, fn["code"])
	assert.Equal(t, "package", helloCode["source"])
	assert.Regexp(t, `^[0-9a-f]{32}$`, helloCode["md5sum"])

	pkgFiles := map[string]string{
		"a.py": "import b\n\nSUFFIX = '!'\n\ndef main(**kwargs):\n    return b.greet('pkg')\n",
		"b.py": "import a\n\ndef greet(name):\n    return 'hi %s%s' % (name, a.SUFFIX)\n",
	}
	pkgPath := testutil.WriteZip(t, c.dir, pkgFiles)
	pkg := readFile(t, pkgPath)
	pfn := c.show("function", "create", "--package", pkgPath, "--entry", "a.main", "--runtime", rtID)
	pid, _ := pfn["id"].(string)
	require.Regexp(t, uuidRE, pid)
	leftovers = append(leftovers, []string{"function", "delete", pid})
	assert.Equal(t, "a.main", pfn["entry"])
	assert.Equal(t, map[string]any{"source": "package", "md5sum": md5hex(pkg)}, object(t, pfn["code"]))

	rows = c.list("function", "list")
	for _, id := range []string{fid, pid} {
		row := findRow(rows, id)
		require.NotNil(t, row, "function %s not in %v", id, rows)
		requireColumns(t, row, "Id", "Name", "Description", "Count", "Code", "Runtime_id", "Entry", "Project_id", "Created_at", "Updated_at", "Cpu", "Memory_size", "Timeout")
	}
	assert.Equal(t, helloCode, object(t, findRow(rows, fid)["Code"]))

	got := c.show("function", "show", fid)
	for _, f := range []string{"id", "name", "entry", "runtime_id", "timeout", "cpu", "memory_size", "project_id", "created_at"} {
		assert.Equal(t, fn[f], got[f], f)
	}
	assert.Equal(t, helloCode, object(t, got["code"]))

	// The package comes back byte for byte; the one the client zipped from
	// hello.py (and deleted) holds hello.py and matches the md5 it sent.
	out := filepath.Join(c.dir, "a.zip")
	assert.Contains(t, c.run("function", "download", pid, "-o", out), "Code package downloaded to "+out)
	assert.Equal(t, md5hex(pkg), md5hex(readFile(t, out)), "downloaded package differs from %s", pkgPath)
	out = filepath.Join(c.dir, "hello-download.zip")
	c.run("function", "download", fid, "-o", out)
	dl := readFile(t, out)
	assert.Equal(t, helloCode["md5sum"], md5hex(dl))
	zr, err := zip.NewReader(bytes.NewReader(dl), int64(len(dl)))
	require.NoError(t, err, "download is not a zip")
	require.Len(t, zr.File, 1)
	assert.Equal(t, "hello.py", zr.File[0].Name)
	rc, err := zr.File[0].Open()
	require.NoError(t, err)
	content, err := io.ReadAll(rc)
	require.NoError(t, err)
	assert.Equal(t, helloPy, string(content))

	upd := c.show("function", "update", fid, "--name", "hello2", "--timeout", "10")
	assert.Equal(t, "hello2", upd["name"])
	assert.Equal(t, 10.0, upd["timeout"])
	assert.Equal(t, helloCode, object(t, upd["code"]), "a name/timeout update keeps the code")

	pkgFiles["b.py"] = "import a\n\ndef greet(name):\n    return 'hi again %s%s' % (name, a.SUFFIX)\n"
	pkg2Path := testutil.WriteZip(t, c.dir, pkgFiles)
	pkg2 := readFile(t, pkg2Path)
	upd = c.show("function", "update", pid, "--package", pkg2Path)
	assert.Equal(t, map[string]any{"source": "package", "md5sum": md5hex(pkg2)}, object(t, upd["code"]))

	// --- executions
	ex := c.show("function", "execution", "create", "--function", fid, "--input", `{"name": "x"}`)
	exID, _ := ex["id"].(string)
	require.Regexp(t, uuidRE, exID)
	require.Equal(t, "success", ex["status"], "execution %v", ex)
	assert.Equal(t, true, ex["sync"])
	assert.Equal(t, fid, ex["function_id"])
	assert.Equal(t, "Hello, x", output(t, ex))
	assert.Equal(t, map[string]any{"name": "x"}, object(t, ex["input"]))

	pex := c.show("function", "execution", "create", "--function", pid)
	require.Equal(t, "success", pex["status"], "execution %v", pex)
	assert.Equal(t, "hi again pkg!", output(t, pex), "the updated package runs")

	aex := c.show("function", "execution", "create", "--function", fid, "--input", `{"name": "async"}`, "--async")
	aID, _ := aex["id"].(string)
	require.Regexp(t, uuidRE, aID)
	assert.Equal(t, false, aex["sync"])
	assert.Contains(t, []any{"running", "success"}, aex["status"])
	deadline = time.Now().Add(waitTimeout)
	for aex["status"] == "running" {
		require.True(t, time.Now().Before(deadline), "async execution %s still running after %s", aID, waitTimeout)
		time.Sleep(time.Second)
		aex = c.show("function", "execution", "show", aID)
	}
	require.Equal(t, "success", aex["status"], "execution %v", aex)
	assert.Equal(t, "Hello, async", output(t, aex))

	assert.Contains(t, c.run("function", "execution", "log", "show", exID), "Hello, x")

	assert.Contains(t, c.run("function", "execution", "delete", "--execution", exID),
		"Request to delete execution "+exID+" has been accepted.")

	rows = c.list("function", "execution", "list")
	assert.Nil(t, findRow(rows, exID), "deleted execution %s still listed", exID)
	for _, id := range []string{aID, pex["id"].(string)} {
		row := findRow(rows, id)
		require.NotNil(t, row, "execution %s not in %v", id, rows)
		requireColumns(t, row, "Id", "Function_alias", "Function_id", "Function_version", "Description", "Input", "Result", "Status", "Sync", "Project_id", "Created_at", "Updated_at")
		assert.Equal(t, "success", row["Status"])
	}

	// --- cleanup through the client
	outText := c.run("function", "delete", fid, pid)
	for _, id := range []string{fid, pid} {
		assert.Contains(t, outText, "Request to delete function "+id+" has been accepted.")
	}
	rows = c.list("function", "list")
	assert.Nil(t, findRow(rows, fid), "deleted function still listed")
	assert.Nil(t, findRow(rows, pid), "deleted function still listed")
	assert.Contains(t, adm.run("runtime", "delete", rtID), "Request to delete runtime "+rtID+" has been accepted.")
}
