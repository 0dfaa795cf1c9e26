//go:build functional

package functional

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/testutil"
)

// TestFunctionLifecycle: create (multipart), list, show, download, update
// (new package; name and timeout), delete.
func TestFunctionLifecycle(t *testing.T) {
	t.Parallel()
	rtID := pythonRuntime(t)
	pkg := testutil.Zip(t, map[string]string{"hello.py": helloPy})

	fn := createFunction(t, srv, packageForm(rtID, "lifecycle", "hello.main", pkg))
	id := fn["id"].(string)
	// Pecan-rendered responses carry code as an object (docs/api.md, "Responses").
	assert.Equal(t, map[string]any{"source": "package", "md5sum": testutil.MD5(pkg)}, fn["code"])
	for field, want := range map[string]any{
		"name": "lifecycle", "description": nil, "runtime_id": rtID, "entry": "hello.main",
		"timeout": 5.0, "cpu": 100.0, "memory_size": 33554432.0, // the [resource_limits] defaults
		"count": 0.0, "latest_version": 0.0, "project_id": srv.ProjectID(t),
	} {
		assert.Equal(t, want, fn[field], field)
	}

	t.Run("list renders code as a JSON string", func(t *testing.T) {
		r := call(t, srv, http.MethodGet, "/v1/functions", nil)
		expect(t, r, http.StatusOK)
		var body struct {
			Functions []map[string]any `json:"functions"`
		}
		r.Decode(t, &body)
		require.NotNil(t, body.Functions, "%s: want {\"functions\": [...]}", r)
		var found map[string]any
		for _, item := range body.Functions {
			requireShape(t, item, functionFields)
			if item["id"] == id {
				found = item
			}
		}
		require.NotNil(t, found, "function %s not listed", id)
		require.IsType(t, "", found["code"], "code in a list is a JSON string (WSME rendering)")
		assert.Equal(t, fn["code"], testutil.ObjectOf(t, found["code"]))
		assert.Equal(t, "lifecycle", found["name"])
	})

	t.Run("show", func(t *testing.T) {
		r := call(t, srv, http.MethodGet, "/v1/functions/"+id, nil)
		expect(t, r, http.StatusOK)
		got := r.Object(t)
		requireShape(t, got, functionFields)
		for _, f := range functionFields {
			if f != "updated_at" {
				assert.Equal(t, fn[f], got[f], f)
			}
		}
	})

	t.Run("download", func(t *testing.T) {
		requireDownload(t, id, pkg)
	})

	pkg2 := testutil.Zip(t, map[string]string{"hello.py": helloPy + "# v2\n"})
	t.Run("update package", func(t *testing.T) {
		// What `openstack function update --package` sends: the code dict
		// flattened to source=package, no md5sum (docs/api.md, PUT /v1/functions/{id}).
		r := call(t, srv, http.MethodPut, "/v1/functions/"+id, &testutil.Form{
			Fields: map[string]string{"source": "package"},
			Files:  map[string]testutil.File{"package": {Name: "lifecycle.zip", Data: pkg2}},
		})
		expect(t, r, http.StatusOK)
		got := r.Object(t)
		requireShape(t, got, functionFields)
		assert.Equal(t, map[string]any{"source": "package", "md5sum": testutil.MD5(pkg2)}, testutil.ObjectOf(t, got["code"]))
		assert.Equal(t, "lifecycle", got["name"])
		requireDownload(t, id, pkg2)
	})

	t.Run("update name and timeout", func(t *testing.T) {
		r := call(t, srv, http.MethodPut, "/v1/functions/"+id, url.Values{"name": {"renamed"}, "timeout": {"10"}})
		expect(t, r, http.StatusOK)
		got := r.Object(t)
		requireShape(t, got, functionFields)
		assert.Equal(t, "renamed", got["name"])
		assert.Equal(t, 10.0, got["timeout"])
		assert.Equal(t, testutil.MD5(pkg2), testutil.ObjectOf(t, got["code"])["md5sum"], "code must not change")

		r = call(t, srv, http.MethodGet, "/v1/functions/"+id, nil)
		expect(t, r, http.StatusOK)
		assert.Equal(t, "renamed", r.Object(t)["name"])
	})

	t.Run("delete", func(t *testing.T) {
		r := call(t, srv, http.MethodDelete, "/v1/functions/"+id, nil)
		expect(t, r, http.StatusNoContent)
		assert.Empty(t, r.Body, "204 must have an empty body")
		r = call(t, srv, http.MethodGet, "/v1/functions/"+id, nil)
		expect(t, r, http.StatusNotFound)
		r.Fault(t)
	})
}

// requireDownload checks GET ?download=true as `openstack function download`
// sends it (no Content-Type, requests' Accept-Encoding) and the client copies
// the raw body: exactly application/zip, not content-encoded, the same bytes.
func requireDownload(t *testing.T, id string, want []byte) {
	t.Helper()
	r := call(t, srv, http.MethodGet, "/v1/functions/"+id+"?download=true", nil,
		"Content-Type", "", "Accept-Encoding", "gzip, deflate")
	expect(t, r, http.StatusOK)
	assert.Equal(t, "application/zip", r.Header.Get("Content-Type"), "tempest compares it exactly")
	assert.Empty(t, r.Header.Get("Content-Encoding"), "the client writes the raw body to the file")
	assert.Equal(t, testutil.MD5(want), testutil.MD5(r.Body), "downloaded package differs from the uploaded one (%d vs %d bytes)", len(r.Body), len(want))
}
