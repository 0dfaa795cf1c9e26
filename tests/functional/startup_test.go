//go:build functional

package functional

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/testutil"
)

// TestStartup: what a newcomer sees of a starting all-in-one is one short
// summary line, not every option; --help and --version answer at once.
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
