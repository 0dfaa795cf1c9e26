//go:build cli

package cli

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/testutil"
)

// testWorkers covers function scaleup, worker list, scaledown and detach,
// all admin-only, on a function of the demo user.
func testWorkers(t *testing.T, s *scenario, rtID string) {
	c, adm := s.demo.in(t), s.admin.in(t)
	fid, _ := c.createFunction(rtID, "cli-workers-"+suffix(t), helloPy)

	workers := func() []map[string]any {
		rows := adm.list("function", "worker", "list", fid)
		for _, r := range rows {
			requireColumns(t, r, "Function_id", "Worker_name")
			assert.Equal(t, fid, r["Function_id"])
			assert.NotEmpty(t, r["Worker_name"])
		}
		return rows
	}
	waitWorkers := func(n int) []map[string]any {
		t.Helper()
		var rows []map[string]any
		testutil.WaitFor(t, fmt.Sprintf("function worker list to show %d worker(s)", n), waitTimeout, time.Second, func() (bool, any) {
			rows = workers()
			return len(rows) == n, rows
		})
		return rows
	}

	adm.accepted([]string{"function", "scaleup", fid, "--count", "2"},
		"Request to scale up function "+fid+" has been accepted.")
	rows := waitWorkers(2)
	names := map[any]bool{rows[0]["Worker_name"]: true, rows[1]["Worker_name"]: true}
	require.Len(t, names, 2, "two distinct workers: %v", rows)

	adm.accepted([]string{"function", "scaledown", fid, "--count", "1"},
		"Request to scale down function "+fid+" has been accepted.")
	rows = waitWorkers(1)
	assert.True(t, names[rows[0]["Worker_name"]], "the remaining worker %v is one of %v", rows[0], names)

	// The remaining worker serves executions.
	ex := c.execute("--function", fid, "--input", `{"name": "worker"}`)
	assert.Equal(t, "Hello, worker", output(t, ex))

	adm.accepted([]string{"function", "detach", fid}, "Request to detach function "+fid+" has been accepted.")
	waitWorkers(0)

	c.accepted([]string{"function", "delete", fid}, "Request to delete function "+fid+" has been accepted.")
}
