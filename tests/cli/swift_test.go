//go:build cli

package cli

import (
	"crypto/md5"
	"encoding/hex"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/testutil"
)

// fails runs `openstack args...`, which must fail, and returns its stderr.
func (c *client) fails(args ...string) string {
	c.t.Helper()
	stdout, stderr, err := c.exec(args...)
	require.Error(c.t, err, "openstack %s worked:\n%s", quote(args), stdout)
	return stderr
}

func md5Hex(b []byte) string {
	sum := md5.Sum(b)
	return hex.EncodeToString(sum[:])
}

// TestCLISwiftFunctions runs testSwiftFunctions on a runtime of its own,
// apart from TestCLI so that it can run alone (-run TestCLISwiftFunctions).
func TestCLISwiftFunctions(t *testing.T) {
	t.Parallel()
	s := newScenario(t)
	rtID := s.newRuntime(t, "cli-swift-py-")
	t.Run("swift functions", func(t *testing.T) { testSwiftFunctions(t, s, rtID) })
	s.admin.run("runtime", "delete", rtID)
}

// newRuntime creates a Python runtime named prefix plus a random suffix as
// the admin and waits until it is available; the caller deletes it.
func (s *scenario) newRuntime(t *testing.T, prefix string) string {
	adm := s.admin
	rt := adm.show("runtime", "create", s.pythonImage, "--name", prefix+suffix(t))
	rtID, _ := rt["id"].(string)
	require.Regexp(t, uuidRE, rtID)
	adm.undo("runtime", "delete", rtID)
	testutil.WaitFor(t, "runtime "+rtID+" to become available", waitTimeout, time.Second, func() (bool, any) {
		shown := adm.show("runtime", "show", rtID)
		return shown["status"] == "available", shown
	})
	return rtID
}

// testSwiftFunctions covers function create --container --object as the
// demo user: the object is checked with the demo's token, run through the
// trust made at create (also from a webhook, with no token at all), a
// replaced object is refused until `function update` records it, and
// upstream's 400s. With authentication off (the all-in-one) such functions
// are refused, as upstream refused them; on a stack without Swift the
// object cannot be validated.
func testSwiftFunctions(t *testing.T, s *scenario, rtID string) {
	c := s.demo.in(t)
	if !s.swift {
		// Auth off: nothing to read the object with; a stack without
		// Swift: the demo's catalog has no object-store.
		want := "Swift object not supported."
		if s.target.Real() {
			want = "Failed to validate object in Swift."
		}
		msg := c.fails("function", "create", "--runtime", rtID, "--container", "functions", "--object", "hello.zip", "--entry", "hello.main")
		assert.Contains(t, msg, want)
		return
	}
	container := "cli-swift-" + suffix(t)
	c.run("container", "create", container)
	c.undo("container", "delete", "--recursive", container)
	put := func(name string, body []byte) {
		path := filepath.Join(c.dir, "upload-"+name)
		require.NoError(t, os.WriteFile(path, body, 0o600))
		c.run("object", "create", container, path, "--name", name)
	}
	code := func(ret string) []byte {
		return testutil.Zip(t, map[string]string{"hello.py": "def main(**kwargs):\n    return '" + ret + "'\n"})
	}
	one, two := code("swift one"), code("swift two")
	put("hello.zip", one)

	fn := c.show("function", "create", "--runtime", rtID, "--container", container, "--object", "hello.zip",
		"--entry", "hello.main", "--name", "cli-swift-"+suffix(t))
	fid, _ := fn["id"].(string)
	require.Regexp(t, uuidRE, fid, "function create printed %v", fn)
	c.undo("function", "delete", fid)
	swiftOf := func(fn map[string]any) map[string]any {
		sw, _ := testutil.ObjectOf(t, fn["code"])["swift"].(map[string]any)
		return sw
	}
	assert.Equal(t, map[string]any{"container": container, "object": "hello.zip", "etag": md5Hex(one)}, swiftOf(fn))
	assert.Equal(t, "swift one", output(t, c.execute("--function", fid)))
	dl := filepath.Join(c.dir, "dl.zip")
	c.run("function", "download", fid, "-o", dl)
	assert.Equal(t, one, readFile(t, dl), "the download is the recorded object")

	// Replaced: the function keeps the bytes it recorded until it is updated.
	put("hello.zip", two)
	assert.Contains(t, c.fails("function", "download", fid, "-o", dl), "changed after the function recorded it")
	upd := c.show("function", "update", fid, "--object", "hello.zip")
	assert.Equal(t, md5Hex(two), swiftOf(upd)["etag"])
	assert.Equal(t, "swift two", output(t, c.execute("--function", fid)))

	// A webhook carries no token: a new worker reads the object through the trust.
	s.admin.in(t).accepted([]string{"function", "detach", fid}, "Request to detach function "+fid+" has been accepted.")
	wh := c.show("webhook", "create", "--function", fid)
	whID, _ := wh["id"].(string)
	c.undo("webhook", "delete", whID)
	ex := c.waitExecution(invokeWebhook(t, wh["webhook_url"].(string)))
	assert.Equal(t, "success", ex["status"], "webhook execution %v", ex)
	assert.Equal(t, "swift two", output(t, ex))
	c.run("webhook", "delete", whID)

	assert.Contains(t, c.fails("function", "version", "create", fid), "Function versioning only allowed for package type function.")
	limit, err := strconv.Atoi(s.stackEnv["QINLING_MAX_PACKAGE_SIZE"])
	require.NoError(t, err)
	put("big.zip", make([]byte, limit+1))
	for _, tc := range []struct{ name, container, object string }{
		{"missing object", container, "nothing.zip"},
		{"missing container", container + "-gone", "hello.zip"},
		{"object over max_package_size", container, "big.zip"},
	} {
		msg := c.fails("function", "create", "--runtime", rtID, "--container", tc.container, "--object", tc.object, "--entry", "hello.main")
		assert.Contains(t, msg, "Failed to validate object in Swift.", tc.name)
	}
	c.run("function", "delete", fid)
	c.run("container", "delete", "--recursive", container)
}
