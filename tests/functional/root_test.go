//go:build functional

package functional

import (
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/testutil"
)

// TestVersionDiscovery covers GET / and GET /v1/ (docs/api.md, "Version discovery"), the two paths
// that answer without a token.
func TestVersionDiscovery(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		path  string
		check func(t *testing.T, body map[string]any)
	}{
		{
			name: "root lists v1 as current",
			path: "/",
			check: func(t *testing.T, body map[string]any) {
				versions, ok := body["versions"].([]any)
				require.True(t, ok, "versions must be a list: %v", body)
				require.Len(t, versions, 1)
				v := versions[0].(map[string]any)
				assert.Equal(t, "v1.0", v["id"])
				assert.Equal(t, "CURRENT", v["status"])
				links, ok := v["links"].([]any)
				require.True(t, ok, "links must be a list: %v", v)
				require.Len(t, links, 1)
				link := links[0].(map[string]any)
				assert.Equal(t, "self", link["rel"])
				assert.Equal(t, "v1", link["target"])
				assert.True(t, strings.HasSuffix(link["href"].(string), "/v1"), "href %v", link["href"])
			},
		},
		{
			name: "v1 root gives its uri",
			path: "/v1/",
			check: func(t *testing.T, body map[string]any) {
				uri, _ := body["uri"].(string)
				assert.True(t, strings.HasPrefix(uri, "http") && strings.HasSuffix(uri, "/v1"), "uri %q", uri)
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Version discovery needs no token.
			r := call(t, srv, http.MethodGet, tc.path, nil, "X-Auth-Token", "")
			expect(t, r, http.StatusOK)
			tc.check(t, r.Object(t))
		})
	}
}

// TestStartup: what a newcomer sees of a starting all-in-one is one short
// summary line, not every option; --help and --version answer at once; its
// state directory does not hold 128 MB of preallocated etcd log.
func TestStartup(t *testing.T) {
	testutil.SkipIfReal(t, srv, "reads the all-in-one's log and runs its binary")
	t.Parallel()
	t.Run("summary line", func(t *testing.T) {
		summary := regexp.MustCompile(`(?m)^.*msg="qinling-api started".*$`).FindString(srv.Logs())
		require.NotEmpty(t, summary, "no startup summary in the log")
		for _, want := range []string{
			"address=" + srv.URL, "state=" + srv.Server.StateDir, "auth=off", "all_in_one=true",
			`orchestrator="local (sandbox on, isolation reuse)"`, "storage=", "version=",
		} {
			assert.Contains(t, summary, want)
		}
		assert.NotContains(t, srv.Logs(), "rpc_response_timeout", "the whole configuration is for debug level")
	})
	t.Run("embedded etcd small on disk", func(t *testing.T) {
		// etcd preallocates 128 MB of write-ahead log by default; a
		// one-machine default should not.
		dir := filepath.Join(srv.Server.StateDir, "etcd")
		used := testutil.DiskUsage(t, dir)
		require.Positive(t, used, "the all-in-one's embedded etcd keeps its data in %s", dir)
		assert.Less(t, used, int64(16<<20), "on-disk size of %s", dir)
	})
	bin := filepath.Join(testutil.Binaries(t), "qinling-api")
	for _, tc := range []struct {
		name string
		arg  string
		want string
	}{
		{name: "help", arg: "--help", want: "etc/qinling.conf.sample"},
		{name: "version", arg: "--version", want: "qinling-api "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := exec.Command(bin, tc.arg).Output()
			require.NoError(t, err, "%s %s must exit 0", bin, tc.arg)
			assert.Contains(t, string(out), tc.want)
		})
	}
}
