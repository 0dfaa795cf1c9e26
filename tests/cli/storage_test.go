//go:build cli

package cli

import (
	"bytes"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/testutil"
)

// TestCLIPackagesInStore is issue 10's spine on a stack whose packages are
// in Swift or in its S3 API (QINLING_STORAGE=swift|s3 devstack/stack.sh):
// with the real client, as the demo user, functions from a file and from a
// zip run sync and async, download, update and make a version; then the
// store holds exactly their packages under upstream's keys (seen with
// `openstack object list` as Qinling's service user, whose account holds
// the container, the S3 bucket too), and no package is on the engines' or
// the API's disks outside the workers' directory. Deleting the version and
// the function removes their objects.
func TestCLIPackagesInStore(t *testing.T) {
	t.Parallel()
	s := newScenario(t)
	testutil.SkipUnlessObjectStorage(t, s.stackEnv)
	rtID := s.newRuntime(t, "cli-store-py-")
	c := s.demo.in(t)
	// In every package's code, so that a copy of it on disk is found
	// whatever its name.
	marker := "# package-marker-" + suffix(t) + "\n"

	fileID, _ := c.createFunction(rtID, "cli-store-file-"+suffix(t), helloPy+marker)
	zipData := testutil.Zip(t, map[string]string{"hello.py": helloAgainPy + marker})
	zipPath := filepath.Join(c.dir, "hello-again.zip")
	require.NoError(t, os.WriteFile(zipPath, zipData, 0o600))
	zfn := c.show("function", "create", "--package", zipPath, "--entry", "hello.main", "--runtime", rtID, "--name", "cli-store-zip-"+suffix(t))
	zipID, _ := zfn["id"].(string)
	require.Regexp(t, uuidRE, zipID, "function create printed %v", zfn)
	c.undo("function", "delete", zipID)

	for _, f := range []struct{ id, want string }{{fileID, "Hello, store"}, {zipID, "Hi again, store"}} {
		assert.Equal(t, f.want, output(t, c.execute("--function", f.id, "--input", `{"name": "store"}`)), "sync run of %s", f.id)
		ex := c.show("function", "execution", "create", "--function", f.id, "--input", `{"name": "async"}`, "--async")
		ex = c.waitExecution(ex["id"].(string))
		require.Equal(t, "success", ex["status"], "async execution %v", ex)
		assert.Equal(t, strings.Replace(f.want, "store", "async", 1), output(t, ex))
	}

	dl := filepath.Join(c.dir, "dl.zip")
	c.run("function", "download", zipID, "-o", dl)
	assert.Equal(t, zipData, readFile(t, dl), "the download is the uploaded zip")
	c.run("function", "download", fileID, "-o", dl)
	assert.Equal(t, helloPy+marker, unzipOne(t, readFile(t, dl), "hello.py"))

	updated := writeFile(t, filepath.Join(c.dir, "src-update"), "hello.py", helloAgainPy+"# updated\n"+marker)
	upd := c.show("function", "update", fileID, "--file", updated)
	assert.Equal(t, "Hi again, store", output(t, c.execute("--function", fileID, "--input", `{"name": "store"}`)))
	v := c.show("function", "version", "create", fileID, "--description", "in the store")
	assert.EqualValues(t, 1, v["version_number"], "version %v", v)
	assert.Equal(t, "Hi again, store", output(t, c.execute("--function", fileID, "--function-version", "1", "--input", `{"name": "store"}`)))

	md5Of := func(fn map[string]any) string {
		sum, _ := testutil.ObjectOf(t, fn["code"])["md5sum"].(string)
		require.Regexp(t, `^[0-9a-f]{32}$`, sum, "md5sum of function %v", fn)
		return sum
	}
	fileMD5, zipMD5 := md5Of(upd), md5Of(zfn)
	assert.Equal(t, md5Hex(zipData), zipMD5)
	store := s.storeObjects(t)
	p := s.demoProject + "/"
	assert.ElementsMatch(t, []string{p + fileID + "_" + fileMD5 + ".zip", p + fileID + "_1_" + fileMD5 + ".zip"}, store(fileID),
		"the updated package and version 1's copy; the replaced package is gone")
	assert.Equal(t, []string{p + zipID + "_" + zipMD5 + ".zip"}, store(zipID))

	requireNoPackageOnDisk(t, s.stackEnv["STACK_DIR"], marker)

	c.run("function", "version", "delete", fileID, "1")
	assert.Equal(t, []string{p + fileID + "_" + fileMD5 + ".zip"}, store(fileID), "after version delete")
	for _, id := range []string{fileID, zipID} {
		c.run("function", "delete", id)
		assert.Empty(t, store(id), "objects of function %s after its delete", id)
	}
	s.admin.run("runtime", "delete", rtID)
}

// storeObjects returns a lister of the package objects of one function, in
// key order: `openstack object list` of the stack's container as Qinling's
// service user, which owns it (devstack/lib/swift-init.py; with s3 it is
// the bucket, the same container through the s3api middleware).
func (s *scenario) storeObjects(t *testing.T) func(functionID string) []string {
	env := maps.Clone(s.admin.osEnv)
	env["OS_USERNAME"] = s.stackEnv["SERVICE_USER"]
	env["OS_PASSWORD"] = s.stackEnv["SERVICE_PASSWORD"]
	env["OS_PROJECT_NAME"] = s.stackEnv["SERVICE_PROJECT"]
	svc := newClient(t, env)
	container := s.stackEnv["SWIFT_CONTAINER"]
	return func(functionID string) []string {
		var keys []string
		for _, row := range svc.list("object", "list", container, "--prefix", s.demoProject+"/"+functionID) {
			name, _ := row["Name"].(string)
			keys = append(keys, name)
		}
		slices.Sort(keys)
		return keys
	}
}

// requireNoPackageOnDisk walks the qinling processes' state under the stack
// (STACK_DIR/data/qinling: the API's and each engine's state_path) but the
// workers' directory, where engines unpack packages for their workers
// (WorkersDir, and its .packages cache), and fails on any zip or any file
// holding marker. The local backend's directory must not exist.
func requireNoPackageOnDisk(t *testing.T, stackDir, marker string) {
	t.Helper()
	require.NotEmpty(t, stackDir, "stack.env has no STACK_DIR")
	root := filepath.Join(stackDir, "data", "qinling")
	assert.NoDirExists(t, filepath.Join(root, "packages"), "the local backend's directory")
	var found []string
	walked := 0
	require.NoError(t, filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		switch {
		case err != nil:
			return err
		case d.IsDir() && path == filepath.Join(root, "workers"):
			return filepath.SkipDir
		case !d.Type().IsRegular():
			return nil
		}
		walked++
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.HasPrefix(data, []byte("PK\x03\x04")) || bytes.Contains(data, []byte(marker)) {
			found = append(found, path)
		}
		return nil
	}))
	t.Logf("%d files under %s (but workers/) hold no package", walked, root)
	assert.Empty(t, found, "package files outside the workers' directory")
}
