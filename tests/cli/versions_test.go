//go:build cli

package cli

import (
	"fmt"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/testutil"
)

// testVersionsAndAliases covers function version create, list, show,
// detach and delete, function alias create, list, show, update and delete,
// executions of a version and through an alias, and function update with a
// new --file, checked by a download.
func testVersionsAndAliases(t *testing.T, s *scenario, rtID string) {
	c, adm := s.demo.in(t), s.admin.in(t)
	fid, fn := c.createFunction(rtID, "cli-versions-"+suffix(t), helloPy)
	code1 := testutil.ObjectOf(t, fn["code"])

	v1 := c.show("function", "version", "create", fid, "--description", "first")
	requireColumns(t, v1, "id", "function_id", "description", "version_number", "count", "project_id", "created_at", "updated_at")
	assert.Regexp(t, uuidRE, v1["id"])
	assert.Equal(t, fid, v1["function_id"])
	assert.Equal(t, "first", v1["description"])
	assert.Equal(t, 1.0, v1["version_number"])
	assert.Equal(t, 0.0, v1["count"])
	assert.Equal(t, s.demoProject, v1["project_id"])

	// A new --file: the client zips it as hello.py again; the download is
	// that zip, and version 2 freezes it.
	file2 := writeFile(t, filepath.Join(c.dir, "v2"), "hello.py", helloAgainPy)
	upd := c.show("function", "update", fid, "--file", file2)
	code2 := testutil.ObjectOf(t, upd["code"])
	assert.Equal(t, "package", code2["source"])
	assert.Regexp(t, `^[0-9a-f]{32}$`, code2["md5sum"])
	assert.NotEqual(t, code1["md5sum"], code2["md5sum"], "a new file must change the package")
	out := filepath.Join(c.dir, "v2.zip")
	c.accepted([]string{"function", "download", fid, "-o", out}, "Code package downloaded to "+out)
	dl := readFile(t, out)
	assert.Equal(t, code2["md5sum"], testutil.MD5(dl), "the download is the package the update stored")
	assert.Equal(t, helloAgainPy, unzipOne(t, dl, "hello.py"))

	v2 := c.show("function", "version", "create", fid)
	assert.Equal(t, 2.0, v2["version_number"])
	assert.Nil(t, v2["description"])

	// Version 1 runs the first package, version 0 (the function) the new one.
	ex := c.execute("--function", fid, "--function-version", "1", "--input", `{"name": "v1"}`)
	assert.Equal(t, 1.0, ex["function_version"])
	assert.Equal(t, "Hello, v1", output(t, ex))
	ex = c.execute("--function", fid, "--input", `{"name": "v0"}`)
	assert.Equal(t, 0.0, ex["function_version"])
	assert.Equal(t, "Hi again, v0", output(t, ex))

	// --- aliases: created on version 1, moved to version 2.
	alias := "cli-alias-" + suffix(t)
	a := c.show("function", "alias", "create", alias, "--function", fid, "--function-version", "1", "--description", "on v1")
	c.undo("function", "alias", "delete", alias)
	requireColumns(t, a, "name", "function_id", "description", "function_version", "project_id", "created_at", "updated_at")
	assert.Equal(t, alias, a["name"])
	assert.Equal(t, fid, a["function_id"])
	assert.Equal(t, 1.0, a["function_version"])
	assert.Equal(t, "on v1", a["description"])
	assert.Equal(t, s.demoProject, a["project_id"])

	ex = c.execute("--function-alias", alias, "--input", `{"name": "alias"}`)
	assert.Equal(t, alias, ex["function_alias"])
	assert.Equal(t, fid, ex["function_id"])
	assert.Equal(t, 1.0, ex["function_version"])
	assert.Equal(t, "Hello, alias", output(t, ex))

	// The client sends --function-version as the string "2".
	a = c.show("function", "alias", "update", alias, "--function-version", "2", "--description", "on v2")
	assert.Equal(t, alias, a["name"])
	assert.Equal(t, fid, a["function_id"])
	assert.Equal(t, 2.0, a["function_version"])
	assert.Equal(t, "on v2", a["description"])

	got := c.show("function", "alias", "show", alias)
	sameFields(t, a, got, "name", "function_id", "description", "function_version", "project_id", "created_at")

	ex = c.execute("--function-alias", alias, "--input", `{"name": "alias2"}`)
	assert.Equal(t, alias, ex["function_alias"])
	assert.Equal(t, 2.0, ex["function_version"])
	assert.Equal(t, "Hi again, alias2", output(t, ex))

	rows := c.list("function", "alias", "list")
	row := findRow(rows, "Name", alias)
	require.NotNil(t, row, "alias %s not in %v", alias, rows)
	requireColumns(t, row, "Name", "Function_id", "Description", "Function_version", "Project_id", "Created_at", "Updated_at")
	assert.Equal(t, 2.0, row["Function_version"])
	assert.Equal(t, fid, row["Function_id"])

	// Each version counts its executions, alias ones included.
	rows = c.list("function", "version", "list", fid)
	require.Len(t, rows, 2, "versions of %s: %v", fid, rows)
	requireColumns(t, rows[0], "Id", "Function_id", "Description", "Version_number", "Count", "Project_id", "Created_at", "Updated_at")
	byNumber := map[float64]map[string]any{}
	for _, r := range rows {
		n, _ := r["Version_number"].(float64)
		byNumber[n] = r
	}
	require.Contains(t, byNumber, 1.0, "versions %v", rows)
	require.Contains(t, byNumber, 2.0, "versions %v", rows)
	assert.Equal(t, v1["id"], byNumber[1]["Id"])
	assert.Equal(t, "first", byNumber[1]["Description"])
	assert.Equal(t, 2.0, byNumber[1]["Count"], "version 1 ran twice (once by number, once by alias)")
	assert.Equal(t, 1.0, byNumber[2]["Count"], "version 2 ran once (by alias)")

	got = c.show("function", "version", "show", fid, "1")
	requireColumns(t, got, "id", "function_id", "description", "version_number", "count", "project_id", "created_at", "updated_at")
	sameFields(t, v1, got, "id", "function_id", "description", "version_number", "project_id", "created_at")
	assert.Equal(t, 2.0, got["count"])

	// --- version detach (admin): version 1's worker is released.
	admin := s.target.As(testutil.Admin)
	workersPath := fmt.Sprintf("/v1/functions/%s/workers?function_version=1", fid)
	versionWorkers := func() []any {
		r := admin.Do(t, http.MethodGet, workersPath, nil)
		require.Equal(t, http.StatusOK, r.Status, "%s", r)
		ws, _ := r.Object(t)["workers"].([]any)
		return ws
	}
	// Run version 1 again first: its earlier run is a dozen commands ago,
	// and stacks with a short function_service_expiration (the Kubernetes
	// env's 30 s) may have released that worker since.
	ex = c.execute("--function", fid, "--function-version", "1", "--input", `{"name": "v1 again"}`)
	assert.Equal(t, "Hello, v1 again", output(t, ex))
	assert.NotEmpty(t, versionWorkers(), "version 1 ran: it should have a worker")
	adm.accepted([]string{"function", "version", "detach", fid, "1"},
		"Request to detach function "+fid+"(version 1) has been accepted.")
	testutil.WaitFor(t, "version 1's workers to go", waitTimeout, 500*time.Millisecond, func() (bool, any) {
		ws := versionWorkers()
		return len(ws) == 0, ws
	})

	// --- deletes: the alias, then version 2 (which the alias held).
	c.accepted([]string{"function", "alias", "delete", alias},
		"Request to delete function_alias "+alias+" has been accepted.")
	assert.Nil(t, findRow(c.list("function", "alias", "list"), "Name", alias), "deleted alias %s still listed", alias)

	assert.Empty(t, c.run("function", "version", "delete", fid, "2"), "version delete prints nothing")
	rows = c.list("function", "version", "list", fid)
	require.Len(t, rows, 1, "versions of %s after deleting 2: %v", fid, rows)
	assert.Equal(t, 1.0, rows[0]["Version_number"])

	// Numbers are never reused: the next version is 3, not 2.
	v3 := c.show("function", "version", "create", fid, "--description", "third")
	assert.Equal(t, 3.0, v3["version_number"], "version numbers must not be reused after a delete")

	c.accepted([]string{"function", "delete", fid}, "Request to delete function "+fid+" has been accepted.")
}
