//go:build cli

package cli

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/testutil"
)

// testFunctions covers function create (--file and --package), list, show,
// download, update (metadata and a new package), delete, and execution
// create (sync and async), show, log show (of a finished and of a running
// execution), delete and list.
func testFunctions(t *testing.T, s *scenario, rtID string) {
	c := s.demo.in(t)

	name := "cli-hello-" + suffix(t)
	fid, fn := c.createFunction(rtID, name, helloPy)
	assert.Equal(t, "hello.main", fn["entry"])
	assert.Equal(t, 5.0, fn["timeout"], "the client sends its default timeout 5")
	assert.Equal(t, 100.0, fn["cpu"])
	assert.Equal(t, 33554432.0, fn["memory_size"])
	assert.Equal(t, 0.0, fn["count"])
	assert.Equal(t, s.demoProject, fn["project_id"])
	helloCode := testutil.ObjectOf(t, fn["code"])
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
	c.undo("function", "delete", pid)
	assert.Equal(t, "a.main", pfn["entry"])
	assert.Equal(t, map[string]any{"source": "package", "md5sum": testutil.MD5(pkg)}, testutil.ObjectOf(t, pfn["code"]))

	rows := c.list("function", "list")
	for _, id := range []string{fid, pid} {
		row := findRow(rows, "Id", id)
		require.NotNil(t, row, "function %s not in %v", id, rows)
		requireColumns(t, row, "Id", "Name", "Description", "Count", "Code", "Runtime_id", "Entry", "Project_id", "Created_at", "Updated_at", "Cpu", "Memory_size", "Timeout")
	}
	assert.Equal(t, helloCode, testutil.ObjectOf(t, findRow(rows, "Id", fid)["Code"]))
	assert.Equal(t, name, findRow(rows, "Id", fid)["Name"])

	got := c.show("function", "show", fid)
	requireColumns(t, got, "id", "name", "description", "count", "code", "runtime_id", "entry", "project_id", "created_at", "updated_at", "cpu", "memory_size", "timeout")
	sameFields(t, fn, got, "id", "name", "entry", "runtime_id", "timeout", "cpu", "memory_size", "project_id", "created_at")
	assert.Equal(t, helloCode, testutil.ObjectOf(t, got["code"]))

	// The package comes back byte for byte; the one the client zipped from
	// hello.py holds hello.py and matches the md5 it sent.
	out := filepath.Join(c.dir, "a.zip")
	c.accepted([]string{"function", "download", pid, "-o", out}, "Code package downloaded to "+out)
	assert.Equal(t, testutil.MD5(pkg), testutil.MD5(readFile(t, out)), "downloaded package differs from %s", pkgPath)
	out = filepath.Join(c.dir, "hello-download.zip")
	c.accepted([]string{"function", "download", fid, "-o", out}, "Code package downloaded to "+out)
	dl := readFile(t, out)
	assert.Equal(t, helloCode["md5sum"], testutil.MD5(dl))
	assert.Equal(t, helloPy, unzipOne(t, dl, "hello.py"))

	upd := c.show("function", "update", fid, "--name", name+"-2", "--timeout", "10", "--description", "says hello")
	assert.Equal(t, name+"-2", upd["name"])
	assert.Equal(t, 10.0, upd["timeout"])
	assert.Equal(t, "says hello", upd["description"])
	assert.Equal(t, helloCode, testutil.ObjectOf(t, upd["code"]), "a name/timeout update keeps the code")

	pkgFiles["b.py"] = "import a\n\ndef greet(name):\n    return 'hi again %s%s' % (name, a.SUFFIX)\n"
	pkg2Path := testutil.WriteZip(t, c.dir, pkgFiles)
	pkg2 := readFile(t, pkg2Path)
	upd = c.show("function", "update", pid, "--package", pkg2Path)
	assert.Equal(t, map[string]any{"source": "package", "md5sum": testutil.MD5(pkg2)}, testutil.ObjectOf(t, upd["code"]))

	// --- executions
	ex := c.execute("--function", fid, "--input", `{"name": "x"}`)
	exID := ex["id"].(string)
	requireColumns(t, ex, "id", "function_alias", "function_id", "function_version", "description", "input", "result", "status", "sync", "project_id", "created_at", "updated_at")
	assert.Equal(t, fid, ex["function_id"])
	assert.Equal(t, 0.0, ex["function_version"])
	assert.Nil(t, ex["function_alias"])
	assert.Equal(t, s.demoProject, ex["project_id"])
	assert.Equal(t, "Hello, x", output(t, ex))
	assert.Equal(t, map[string]any{"name": "x"}, testutil.ObjectOf(t, ex["input"]))

	pex := c.execute("--function", pid)
	assert.Equal(t, "hi again pkg!", output(t, pex), "the updated package runs")

	aex := c.show("function", "execution", "create", "--function", fid, "--input", `{"name": "async"}`, "--async")
	aID, _ := aex["id"].(string)
	require.Regexp(t, uuidRE, aID)
	assert.Equal(t, false, aex["sync"])
	assert.Contains(t, []any{"running", "success"}, aex["status"])
	if aex["status"] == "running" {
		time.Sleep(time.Second) // the run itself takes about that long
		aex = c.waitExecution(aID)
	}
	require.Equal(t, "success", aex["status"], "execution %v", aex)
	assert.Equal(t, "Hello, async", output(t, aex))
	assert.Equal(t, false, aex["sync"])

	assert.Contains(t, c.run("function", "execution", "log", "show", exID), "Hello, x")

	// The log is written when an execution ends: log show on a running one
	// says so, rather than printing an empty line. The execution sleeps far
	// longer than a loaded machine's slowest CLI call takes; deleting its
	// function below stops it.
	sid, _ := c.createFunction(rtID, "cli-sleeper-"+suffix(t), "import time\n\ndef main(**kwargs):\n    time.sleep(280)\n")
	c.show("function", "update", sid, "--timeout", "300")
	sex := c.show("function", "execution", "create", "--function", sid, "--async")
	sID, _ := sex["id"].(string)
	require.Regexp(t, uuidRE, sID)
	assert.Contains(t, c.run("function", "execution", "log", "show", sID), "Execution "+sID+" is still running")

	c.accepted([]string{"function", "execution", "delete", "--execution", exID},
		"Request to delete execution "+exID+" has been accepted.")

	rows = c.list("function", "execution", "list")
	assert.Nil(t, findRow(rows, "Id", exID), "deleted execution %s still listed", exID)
	for _, id := range []string{aID, pex["id"].(string)} {
		row := findRow(rows, "Id", id)
		require.NotNil(t, row, "execution %s not in %v", id, rows)
		requireColumns(t, row, "Id", "Function_alias", "Function_id", "Function_version", "Description", "Input", "Result", "Status", "Sync", "Project_id", "Created_at", "Updated_at")
		assert.Equal(t, "success", row["Status"])
	}

	// --- delete, through the client (the sleeper's execution ends with it)
	c.accepted([]string{"function", "delete", fid, pid, sid},
		"Request to delete function "+fid+" has been accepted.",
		"Request to delete function "+pid+" has been accepted.",
		"Request to delete function "+sid+" has been accepted.")
	rows = c.list("function", "list")
	assert.Nil(t, findRow(rows, "Id", fid), "deleted function still listed")
	assert.Nil(t, findRow(rows, "Id", pid), "deleted function still listed")
}
