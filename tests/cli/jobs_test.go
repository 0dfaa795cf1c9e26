//go:build cli

package cli

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/testutil"
)

// cronJob is the job startJob created: every minute, twice.
type cronJob struct {
	id         string
	functionID string
	created    map[string]any // what job create printed
	next       time.Time      // its first run
}

const jobInput = `{"name": "job"}`

// startJob creates a function and a job that runs it every minute, twice.
// It needs two minute boundaries, so it starts before everything else and
// checkJob looks at it last.
func startJob(t *testing.T, s *scenario, rtID string) *cronJob {
	c := s.demo
	fid, _ := c.createFunction(rtID, "cli-job-"+suffix(t), helloPy)
	before := time.Now().UTC()
	j := c.show("job", "create", "--function", fid, "--pattern", "* * * * *", "--count", "2",
		"--function-input", jobInput, "--name", "cli-cron")
	after := time.Now().UTC()
	id, _ := j["id"].(string)
	require.Regexp(t, uuidRE, id, "job create printed %v", j)
	c.undo("job", "delete", id)
	requireColumns(t, j, "id", "name", "count", "status", "function_alias", "function_id", "function_version", "function_input", "pattern", "first_execution_time", "next_execution_time", "project_id", "created_at", "updated_at")
	assert.Equal(t, "cli-cron", j["name"])
	assert.Equal(t, 2.0, j["count"])
	assert.Equal(t, "running", j["status"])
	assert.Nil(t, j["function_alias"])
	assert.Equal(t, fid, j["function_id"])
	assert.Equal(t, 0.0, j["function_version"])
	assert.Equal(t, jobInput, j["function_input"])
	assert.Equal(t, "* * * * *", j["pattern"])
	assert.Equal(t, s.demoProject, j["project_id"])
	next := timestamp(t, j["next_execution_time"])
	assert.Equal(t, next, timestamp(t, j["first_execution_time"]), "with a pattern only, the first run is the first match")
	assert.Zero(t, next.Second(), "next run %s is on a minute boundary", next)
	// The server picked "now" somewhere between the two (the CLI takes a
	// second or so): the next run is the minute boundary after that.
	assert.True(t, next.After(before) && !next.After(after.Add(time.Minute)),
		"next run %s is the minute after the job was created (between %s and %s)", next, before, after)
	return &cronJob{id: id, functionID: fid, created: j, next: next}
}

// testJobUpdates covers job show and list, and job update (pause, resume,
// rename, new input) and delete on a second job that never fires.
func testJobUpdates(t *testing.T, s *scenario, job *cronJob) {
	c := s.demo.in(t)

	got := c.show("job", "show", job.id)
	sameFields(t, job.created, got, "id", "name", "function_alias", "function_id", "function_version", "function_input", "pattern", "first_execution_time", "project_id", "created_at")
	assert.Contains(t, []any{"running", "done"}, got["status"])

	// A yearly job: its next run is next 1 January, 00:00 UTC.
	now := time.Now().UTC()
	newYear := time.Date(now.Year()+1, 1, 1, 0, 0, 0, 0, time.UTC)
	j2 := c.show("job", "create", "--function", job.functionID, "--pattern", "0 0 1 1 *", "--name", "cli-yearly")
	id2, _ := j2["id"].(string)
	require.Regexp(t, uuidRE, id2, "job create printed %v", j2)
	c.undo("job", "delete", id2)
	assert.Equal(t, "running", j2["status"])
	assert.Nil(t, j2["count"], "no --count: unlimited")
	assert.Nil(t, j2["function_input"])
	assert.Equal(t, newYear, timestamp(t, j2["next_execution_time"]))

	rows := c.list("job", "list")
	for _, id := range []string{job.id, id2} {
		row := findRow(rows, "Id", id)
		require.NotNil(t, row, "job %s not in %v", id, rows)
		requireColumns(t, row, "Id", "Name", "Count", "Status", "Function_alias", "Function_id", "Function_version", "Function_input", "Pattern", "First_execution_time", "Next_execution_time", "Project_id", "Created_at", "Updated_at")
	}
	assert.Equal(t, "cli-yearly", findRow(rows, "Id", id2)["Name"])
	assert.Equal(t, "0 0 1 1 *", findRow(rows, "Id", id2)["Pattern"])

	upd := c.show("job", "update", id2, "--status", "paused", "--name", "cli-yearly-paused")
	assert.Equal(t, id2, upd["id"])
	assert.Equal(t, "paused", upd["status"])
	assert.Equal(t, "cli-yearly-paused", upd["name"])
	assert.Equal(t, "0 0 1 1 *", upd["pattern"])

	upd = c.show("job", "update", id2, "--status", "running", "--function-input", `{"name": "resumed"}`)
	assert.Equal(t, "running", upd["status"])
	assert.Equal(t, "cli-yearly-paused", upd["name"], "a field not given is unchanged")
	assert.Equal(t, `{"name": "resumed"}`, upd["function_input"])
	assert.Equal(t, newYear, timestamp(t, upd["next_execution_time"]), "resuming recomputes the next run from now")

	c.accepted([]string{"job", "delete", id2}, "Request to delete job "+id2+" has been accepted.")
	rows = c.list("job", "list")
	assert.Nil(t, findRow(rows, "Id", id2), "deleted job %s still listed", id2)
	assert.NotNil(t, findRow(rows, "Id", job.id), "job %s is gone", job.id)
}

// checkJob waits for the cron job's second run and checks that it ran
// exactly twice, each run an execution described by the job's id, and ended
// done; then deletes the job and its function.
func checkJob(t *testing.T, s *scenario, job *cronJob) {
	c := s.demo.in(t)
	second := job.next.Add(time.Minute)
	if d := time.Until(second.Add(2 * time.Second)); d > 0 {
		t.Logf("waiting %.0fs for the job's second run at %s", d.Seconds(), second.Format(time.TimeOnly))
		time.Sleep(d)
	}
	var j map[string]any
	testutil.WaitFor(t, "job "+job.id+" to be done", 45*time.Second, 3*time.Second, func() (bool, any) {
		j = c.show("job", "show", job.id)
		require.Contains(t, []any{"running", "done"}, j["status"], "job %v", j)
		return j["status"] == "done", j
	})
	assert.Equal(t, 0.0, j["count"], "no runs left")
	assert.Equal(t, job.created["pattern"], j["pattern"])

	// The second run was started as the job was marked done: wait for it.
	var rows []map[string]any
	testutil.WaitFor(t, "the job's executions to finish", waitTimeout, 2*time.Second, func() (bool, any) {
		rows = c.list("function", "execution", "list", "--filter", "function_id="+job.functionID)
		for _, r := range rows {
			if r["Status"] == "running" {
				return false, rows
			}
		}
		return len(rows) >= 2, rows
	})
	require.Len(t, rows, 2, "a count-2 job runs exactly twice: %v", rows)
	for _, r := range rows {
		assert.Equal(t, "Created by Job "+job.id, r["Description"])
		assert.Equal(t, "success", r["Status"], "execution %v", r)
		assert.Equal(t, job.functionID, r["Function_id"])
		assert.Equal(t, false, r["Sync"])
		assert.Equal(t, s.demoProject, r["Project_id"], "the job runs as its owner")
		assert.Equal(t, "job", testutil.ObjectOf(t, r["Input"])["name"], "input %v", r["Input"])
		assert.Equal(t, "Hello, job", testutil.ObjectOf(t, r["Result"])["output"], "result %v", r["Result"])
	}
	first, second2 := timestamp(t, rows[0]["Created_at"]), timestamp(t, rows[1]["Created_at"])
	if first.After(second2) {
		first, second2 = second2, first
	}
	assert.InDelta(t, 60, second2.Sub(first).Seconds(), 10, "runs a minute apart: %s and %s", first, second2)

	c.accepted([]string{"job", "delete", job.id}, "Request to delete job "+job.id+" has been accepted.")
	c.accepted([]string{"function", "delete", job.functionID}, "Request to delete function "+job.functionID+" has been accepted.")
}
