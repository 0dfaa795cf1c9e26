//go:build functional

package functional

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/testutil"
)

// TestRuntimeLifecycle: create → creating → available, list, show, pool, delete.
func TestRuntimeLifecycle(t *testing.T) {
	t.Parallel()
	created := createRuntime(t, admin, "python3", "lifecycle")
	id := created["id"].(string)
	assert.Equal(t, "creating", created["status"])
	assert.Equal(t, "python3", created["image"])
	assert.Equal(t, "lifecycle", created["name"])
	assert.Equal(t, true, created["is_public"])
	assert.Equal(t, true, created["trusted"])
	assert.Nil(t, created["description"])
	assert.Equal(t, admin.ProjectID(t), created["project_id"], "the creator's project ('default' with auth off)")

	rt := waitRuntime(t, srv, id)
	require.Equal(t, "available", rt["status"], "%v", rt)

	t.Run("list", func(t *testing.T) {
		r := call(t, srv, http.MethodGet, "/v1/runtimes", nil)
		expect(t, r, http.StatusOK)
		var body struct {
			Runtimes []map[string]any `json:"runtimes"`
		}
		r.Decode(t, &body)
		require.NotNil(t, body.Runtimes, "%s: want {\"runtimes\": [...]}", r)
		var found map[string]any
		for _, item := range body.Runtimes {
			requireShape(t, item, runtimeFields)
			if item["id"] == id {
				found = item
			}
		}
		require.NotNil(t, found, "runtime %s not listed", id)
		assert.Equal(t, "available", found["status"])
		assert.Equal(t, "lifecycle", found["name"])
	})

	t.Run("show", func(t *testing.T) {
		r := call(t, srv, http.MethodGet, "/v1/runtimes/"+id, nil)
		expect(t, r, http.StatusOK)
		got := r.Object(t)
		requireShape(t, got, runtimeFields)
		for _, f := range []string{"id", "name", "image", "description", "is_public", "trusted", "project_id", "created_at"} {
			assert.Equal(t, created[f], got[f], f)
		}
	})

	t.Run("pool", func(t *testing.T) {
		// Nothing uses this runtime: the pool fills to pool_size free
		// workers (per engine, or over all engines, on the real stack).
		size := float64(admin.PoolSize())
		full := []any{size, size * float64(admin.Engines())}
		pool := waitFor(t, admin, "/v1/runtimes/"+id+"/pool", runtimeReady, func(p map[string]any) bool {
			c, _ := p["capacity"].(map[string]any)
			return slices.Contains(full, c["total"]) && c["available"] == c["total"]
		})
		assert.Equal(t, id, pool["name"])
	})

	t.Run("delete", func(t *testing.T) {
		r := call(t, admin, http.MethodDelete, "/v1/runtimes/"+id, nil)
		expect(t, r, http.StatusNoContent)
		assert.Empty(t, r.Body, "204 must have an empty body")

		// The engine removes the row after tearing the pool down.
		testutil.WaitFor(t, "the deleted runtime to go", runtimeReady, 200*time.Millisecond, func() (bool, any) {
			r := call(t, srv, http.MethodGet, "/v1/runtimes/"+id, nil)
			if r.Status == http.StatusNotFound {
				r.Fault(t)
				return true, nil
			}
			expect(t, r, http.StatusOK)
			assert.Contains(t, []string{"available", "deleting"}, r.Object(t)["status"])
			return false, r
		})
	})
}

// TestRuntimeWithUnrunnableImage: the local orchestrator cannot run a
// container image; the runtime must end in `error` (not hang in creating),
// and the server must say why.
func TestRuntimeWithUnrunnableImage(t *testing.T) {
	t.Parallel()
	id := unrunnableRuntime(t)
	r := call(t, srv, http.MethodGet, "/v1/runtimes/"+id, nil)
	expect(t, r, http.StatusOK)
	assert.Equal(t, "error", r.Object(t)["status"])
	// The runtime resource has no reason field of its own (docs/api.md,
	// "Runtimes"), so the reason also goes to the log, naming the image.
	assert.True(t, strings.Contains(srv.Logs(), "docker.io/library/busybox"),
		"the server log should say why runtime %s failed, naming its image", id)
}
