package db_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/db"
	"github.com/qinling-go/qinling/pkg/reqctx"
)

// running inserts a running execution of function fid in project.
func running(t *testing.T, d *db.DB, project, fid string) string {
	t.Helper()
	e := &db.Execution{Base: db.Base{ProjectID: project}, FunctionID: &fid, Status: db.StatusRunning}
	require.NoError(t, d.CreateExecution(context.Background(), e))
	return e.ID
}

func TestUsageCountedOnceWithTheFinish(t *testing.T) {
	each(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		d := open(t)
		f := &db.Function{Base: db.Base{ProjectID: "p1"}, MemorySize: 64 << 20, Code: "{}"}
		require.NoError(t, d.CreateFunction(ctx, f))
		other := db.NewID()
		used := db.Usage{DurationMS: 1500, CPUMS: 700, MemorySize: 64 << 20}

		ok1 := running(t, d, "p1", f.ID)
		ok2 := running(t, d, "p1", f.ID)
		bad := running(t, d, "p1", f.ID)
		foreign := running(t, d, "p2", other)
		for i, id := range []string{ok1, ok2} {
			o := db.Outcome{Status: db.StatusSuccess, Usage: used}
			if i == 1 {
				// As an engine finishes: with the row it read at the start.
				read, err := d.Execution(ctx, db.Internal, id)
				require.NoError(t, err)
				o.Read = read
			}
			done, err := d.Finish(ctx, id, o)
			require.NoError(t, err)
			require.True(t, done)
		}
		done, err := d.Finish(ctx, ok1, db.Outcome{Status: db.StatusFailed, Usage: used})
		require.NoError(t, err)
		require.False(t, done, "a finished execution is not finished (nor counted) again")

		// An engine's result and the recovery of its engine race: one wins.
		_, err = d.StartExecution(ctx, bad, "gone")
		require.NoError(t, err)
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			_, err := d.Finish(ctx, bad, db.Outcome{Status: db.StatusFailed, Usage: used})
			require.NoError(t, err)
		}()
		go func() {
			defer wg.Done()
			_, err := d.EndEngineExecutions(ctx, "gone", `{"output": "gone"}`)
			require.NoError(t, err)
		}()
		wg.Wait()
		_, err = d.FinishExecution(ctx, foreign, db.StatusFailed, nil, nil)
		require.NoError(t, err)

		// Usage outlives the rows it was counted from.
		require.NoError(t, d.DeleteExecution(ctx, ok1))
		require.NoError(t, d.DeleteFunction(ctx, f.ID))

		hour := time.Now().UTC().Truncate(time.Hour)
		rows, err := d.UsageBetween(ctx, db.Scope{ProjectID: "p1"}, hour, hour.Add(time.Hour))
		require.NoError(t, err)
		require.Len(t, rows, 1, "a project sees only its own usage")
		got := rows[0]
		require.Equal(t, f.ID, got.FunctionID)
		require.EqualValues(t, 3, got.Executions)
		require.EqualValues(t, 2, got.Succeeded)
		require.EqualValues(t, 1, got.Failed)
		// The racing finisher either measured its run or found it ended.
		require.Contains(t, []int64{3000, 4500}, got.DurationMS)
		require.Contains(t, []int64{1400, 2100}, got.CPUMS)
		require.InDelta(t, 0.0625*float64(got.DurationMS)/1000, db.GBSeconds(got.MemoryKiBMS), 1e-9)

		all, err := d.UsageBetween(ctx, db.Internal, hour.Add(-time.Minute), hour.Add(time.Minute))
		require.NoError(t, err)
		require.Len(t, all, 2, "an hour overlapping the period counts")
		none, err := d.UsageBetween(ctx, db.Internal, hour.Add(time.Hour), hour.Add(2*time.Hour))
		require.NoError(t, err)
		require.Empty(t, none)
		ever, err := d.UsageSinceEver(ctx)
		require.NoError(t, err)
		require.Equal(t, all, ever, "every hour there is, every project")
	})
}

// outbox reads the queued messages' event types and payloads.
func outbox(t *testing.T, d *db.DB) (events []string, payloads []map[string]any) {
	t.Helper()
	msgs, err := d.ClaimOutbox(context.Background(), "reader", time.Minute, 100)
	require.NoError(t, err)
	for _, m := range msgs {
		var msg struct {
			EventType string         `json:"event_type"`
			MessageID string         `json:"message_id"`
			Payload   map[string]any `json:"payload"`
			Project   string         `json:"_context_project_id"`
		}
		require.NoError(t, json.Unmarshal([]byte(m.Message), &msg))
		require.Equal(t, m.MessageID, msg.MessageID)
		require.NotContains(t, m.Message, "secret", "the caller's token never leaves")
		events = append(events, msg.EventType)
		payloads = append(payloads, msg.Payload)
	}
	return events, payloads
}

func TestNotificationsQueuedWithTheirChange(t *testing.T) {
	each(t, func(t *testing.T, open opener) {
		ctx := reqctx.With(context.Background(), reqctx.Identity{ProjectID: "p1", UserID: "u1", RequestID: "req-1", AuthToken: "secret"})
		d := open(t)
		rt := &db.Runtime{Base: db.Base{ProjectID: "p1"}, Image: "python3", Status: db.StatusCreating}
		require.NoError(t, d.CreateRuntime(ctx, rt))
		n, err := d.OutboxLen(ctx)
		require.NoError(t, err)
		require.Zero(t, n, "notifications off: nothing queued")

		d.EnableNotifications("qinling-api.test")
		require.NoError(t, d.UpdateRuntime(ctx, rt.ID, map[string]any{"status": db.StatusAvailable}))
		f := &db.Function{Base: db.Base{ProjectID: "p1"}, RuntimeID: &rt.ID, MemorySize: 32 << 20, Code: "{}"}
		require.NoError(t, d.CreateFunction(ctx, f))
		v, err := d.CreateFunctionVersion(ctx, f, nil)
		require.NoError(t, err)
		a := &db.FunctionAlias{Base: db.Base{ProjectID: "p1"}, Name: "prod", FunctionID: f.ID, FunctionVersion: v.VersionNumber}
		require.NoError(t, d.CreateFunctionAlias(ctx, a))
		require.Error(t, d.CreateFunctionAlias(ctx, &db.FunctionAlias{Base: db.Base{ProjectID: "p1"}, Name: "prod", FunctionID: f.ID}),
			"a refused change queues nothing")
		require.NoError(t, d.DeleteFunctionAlias(ctx, a.ID))
		require.NoError(t, d.DeleteFunctionVersion(ctx, f.ID, v.VersionNumber))
		w := &db.Webhook{Base: db.Base{ProjectID: "p1"}, FunctionID: &f.ID}
		require.NoError(t, d.CreateWebhook(ctx, w))
		require.NoError(t, d.DeleteWebhook(ctx, w.ID))
		j := &db.Job{Base: db.Base{ProjectID: "p1"}, FunctionID: &f.ID, Status: db.StatusRunning, NextExecutionTime: time.Now()}
		require.NoError(t, d.CreateJob(ctx, j))
		require.NoError(t, d.UpdateJob(ctx, j.ID, map[string]any{"status": db.StatusPaused}))
		require.NoError(t, d.DeleteJob(ctx, j.ID))

		trig, user := db.TriggerWebhook, "u1"
		e := &db.Execution{Base: db.Base{ProjectID: "p1"}, FunctionID: &f.ID, Status: db.StatusRunning, Trigger: &trig, UserID: &user}
		require.NoError(t, d.CreateExecution(ctx, e))
		_, err = d.Finish(context.Background(), e.ID, db.Outcome{Status: db.StatusSuccess,
			Usage: db.Usage{DurationMS: 2000, CPUMS: 10, MemorySize: 32 << 20, WaitMS: 5, PeakMemoryBytes: 1 << 20}})
		require.NoError(t, err)
		require.NoError(t, d.DeleteFunction(ctx, f.ID))
		require.NoError(t, d.DeleteRuntime(ctx, rt.ID))

		events, payloads := outbox(t, d)
		require.Equal(t, []string{
			"runtime.update.end", "function.create.end", "function.version.create.end",
			"function.alias.create.end", "function.alias.delete.end", "function.version.delete.end",
			"webhook.create.end", "webhook.delete.end", "job.create.end", "job.update.end", "job.delete.end",
			"function.execution.end", "function.delete.end", "runtime.delete.end",
		}, events)
		require.Equal(t, rt.ID, payloads[0]["id"])
		require.Equal(t, db.StatusAvailable, payloads[0]["status"])
		require.Equal(t, "prod", payloads[3]["name"])
		end := payloads[11]
		require.Equal(t, e.ID, end["execution_id"])
		require.Equal(t, "p1", end["project_id"])
		require.Equal(t, "u1", end["user_id"])
		require.Equal(t, rt.ID, end["runtime_id"])
		require.Equal(t, "webhook", end["trigger"])
		require.Equal(t, db.StatusSuccess, end["status"])
		require.InDelta(t, 2.0, end["duration"], 1e-9)
		require.InDelta(t, 0.0625, end["gb_seconds"], 1e-9)
		require.EqualValues(t, 1<<20, end["peak_memory"])

		msgs, err := d.ClaimOutbox(ctx, "other-sender", time.Minute, 100)
		require.NoError(t, err)
		require.Empty(t, msgs, "claimed messages are not handed to a second sender")
	})
}

// TestUsageConcurrentFinishes: executions of one function ending at once
// all count, though they add to one row.
func TestUsageConcurrentFinishes(t *testing.T) {
	each(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		d := open(t)
		fid := db.NewID()
		var ids []string
		for range 24 {
			ids = append(ids, running(t, d, "p", fid))
		}
		var wg sync.WaitGroup
		for _, id := range ids {
			wg.Add(1)
			go func() {
				defer wg.Done()
				done, err := d.Finish(ctx, id, db.Outcome{Status: db.StatusSuccess, Usage: db.Usage{DurationMS: 3}})
				assert.NoError(t, err)
				assert.True(t, done)
			}()
		}
		wg.Wait()
		hour := time.Now().UTC().Truncate(time.Hour)
		rows, err := d.UsageBetween(ctx, db.Internal, hour.Add(-time.Hour), hour.Add(time.Hour))
		require.NoError(t, err)
		require.Len(t, rows, 1)
		require.EqualValues(t, len(ids), rows[0].Executions)
		require.EqualValues(t, 3*len(ids), rows[0].DurationMS)
	})
}

func TestRunningCounts(t *testing.T) {
	each(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		d := open(t)
		f1, f2 := db.NewID(), db.NewID()
		for _, e := range []struct{ project, fid string }{{"p1", f1}, {"p1", f1}, {"p1", f2}, {"p2", f1}} {
			running(t, d, e.project, e.fid)
		}
		done := running(t, d, "p1", f1)
		_, err := d.FinishExecution(ctx, done, db.StatusSuccess, nil, nil)
		require.NoError(t, err)

		tests := []struct {
			name  string
			count func() (int, error)
			want  int
		}{
			{"a project's running executions", func() (int, error) { return perProject(d, f1, "p1") }, 3},
			{"another project's", func() (int, error) { return perProject(d, f1, "p2") }, 1},
			{"a project without any", func() (int, error) { return perProject(d, f1, "p3") }, 0},
			{"a function's, in every project", func() (int, error) { return perFunction(d, f1, 0) }, 3},
			{"another version of it", func() (int, error) { return perFunction(d, f1, 1) }, 0},
			{"another function's", func() (int, error) { return perFunction(d, f2, 0) }, 1},
			{"the engine's count of a function's", func() (int, error) { return d.RunningExecutions(ctx, f1, 0) }, 3},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				n, err := tc.count()
				require.NoError(t, err)
				assert.Equal(t, tc.want, n)
			})
		}
	})
}

// TestRunningInProjectPlan: the API's counts of a function's and of a
// project's running executions, recovery's query of the engines holding
// running executions and the all-in-one's of its queued ones find them by
// an index that holds the running ones, not by walking the project's (or
// every) execution, however many ended ones there are: on SQLite the
// partial index of running executions (migration 10), on MySQL
// (function_id, function_version, status) and (status, project_id)
// (migration 7), status having no index of its own (migration 9).
func TestRunningInProjectPlan(t *testing.T) {
	for name, open := range openers {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			d := open(t)
			f := db.NewID()
			for range 200 {
				id := running(t, d, "p1", f)
				_, err := d.FinishExecution(ctx, id, db.StatusSuccess, nil, nil)
				require.NoError(t, err)
			}
			running(t, d, "p1", f)
			running(t, d, "p2", f)
			index := map[string][]string{
				"counts":  {"ix_executions_running_project", "ix_executions_load"},
				"engines": {"ix_executions_running_project"},
				"queued":  {"ix_executions_running_project"},
			}
			if name == "sqlite" {
				index = map[string][]string{
					"counts":  {"ix_executions_running (function_id=? AND function_version=?)", "SCAN executions USING COVERING INDEX ix_executions_running"},
					"engines": {"ix_executions_running"},
					"queued":  {"ix_executions_running"},
				}
			}
			for _, tc := range []struct {
				name  string
				plan  func() (string, error)
				index []string
			}{
				{name: "running counts", plan: func() (string, error) { return db.PlanOfRunningCounts(ctx, d, f, "p1") }, index: index["counts"]},
				{name: "engines of running executions", plan: func() (string, error) { return db.PlanOfStartedEngines(ctx, d) }, index: index["engines"]},
				{name: "queued executions", plan: func() (string, error) { return db.PlanOfUnstartedAsync(ctx, d) }, index: index["queued"]},
			} {
				plan, err := tc.plan()
				require.NoError(t, err)
				t.Logf("%s plan:\n%s", tc.name, plan)
				for _, ix := range tc.index {
					assert.Contains(t, plan, ix, "%s: uses %s", tc.name, ix)
				}
			}
			fn, proj, err := d.RunningCounts(ctx, f, 0, "p1")
			require.NoError(t, err)
			assert.Equal(t, 2, fn)
			assert.Equal(t, 1, proj)
			n, err := d.RunningExecutions(ctx, f, 0)
			require.NoError(t, err)
			assert.Equal(t, 2, n)
		})
	}
}

func perProject(d *db.DB, functionID, project string) (int, error) {
	_, n, err := d.RunningCounts(context.Background(), functionID, 0, project)
	return n, err
}

func perFunction(d *db.DB, functionID string, version int) (int, error) {
	n, _, err := d.RunningCounts(context.Background(), functionID, version, "p1")
	return n, err
}

// TestFinishWithWhatTheFinisherKnows: an engine that hands Finish the row it
// read (or was sent) and the function it ran has the end transaction read
// neither again; the stored end and its function.execution.end must be the
// same as when Finish reads them, whether the start was recorded before
// (StartExecutionAt) or is stored with the end (Outcome.StartedAt).
func TestFinishWithWhatTheFinisherKnows(t *testing.T) {
	each(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		d := open(t)
		d.EnableNotifications("qinling-engine.test")
		rt := &db.Runtime{Base: db.Base{ProjectID: "p1"}, Image: "python3", Status: db.StatusAvailable}
		require.NoError(t, d.CreateRuntime(ctx, rt))
		f := &db.Function{Base: db.Base{ProjectID: "p1"}, RuntimeID: &rt.ID, MemorySize: 32 << 20, Code: "{}"}
		require.NoError(t, d.CreateFunction(ctx, f))
		drained(t, d)
		startedAt := time.Now().UTC().Add(-time.Second).Truncate(time.Millisecond)
		for _, tc := range []struct {
			name string
			// recorded: the start was recorded before the end
			// (StartExecutionAt); else it is stored with it.
			recorded bool
			read     bool // Finish is handed the row and the function
		}{
			{"read back, start recorded", true, false},
			{"known, start recorded", true, true},
			{"read back, start with the end", false, false},
			{"known, start with the end", false, true},
		} {
			t.Run(tc.name, func(t *testing.T) {
				user, alias, trig := "u1", "prod", db.TriggerAPI
				e := &db.Execution{Base: db.Base{ProjectID: "p1"}, FunctionID: &f.ID, FunctionAlias: &alias, Status: db.StatusRunning,
					Sync: true, Trigger: &trig, UserID: &user}
				require.NoError(t, d.CreateExecution(ctx, e))
				sent := *e
				o := db.Outcome{Status: db.StatusFailed, Usage: db.Usage{DurationMS: 3, MemorySize: 32 << 20},
					End: time.Now().UTC().Truncate(time.Millisecond)}
				if tc.recorded {
					ok, err := d.StartExecutionAt(ctx, e.ID, "engine-1#a", startedAt)
					require.NoError(t, err)
					require.True(t, ok)
					engine := "engine-1#a"
					sent.Engine, sent.StartedAt = &engine, &startedAt
				} else {
					o.StartedBy, o.StartedAt = "engine-1#a", startedAt
				}
				if tc.read {
					o.Read, o.Function = &sent, f
				}
				done, err := d.Finish(ctx, e.ID, o)
				require.NoError(t, err)
				require.True(t, done)

				row, err := d.Execution(ctx, db.Internal, e.ID)
				require.NoError(t, err)
				require.Equal(t, db.StatusFailed, row.Status)
				require.Equal(t, "engine-1#a", *row.Engine)
				require.True(t, startedAt.Equal(*row.StartedAt), "started_at %s, want %s", row.StartedAt, startedAt)
				events, payloads := outbox(t, d)
				drained(t, d)
				require.Equal(t, []string{"function.execution.end"}, events)
				end := payloads[0]
				require.Equal(t, db.StatusFailed, end["status"])
				require.Equal(t, rt.ID, end["runtime_id"])
				require.Equal(t, "u1", end["user_id"])
				require.Equal(t, "prod", end["function_alias"])
				require.Equal(t, "api", end["trigger"])
				require.Equal(t, row.StartedAt.UTC().Format(time.RFC3339Nano), end["started_at"])
				require.Equal(t, o.End.Format(time.RFC3339Nano), end["ended_at"])
				created, err := time.Parse(time.RFC3339Nano, end["created_at"].(string))
				require.NoError(t, err)
				require.WithinDuration(t, row.CreatedAt, created, time.Millisecond)
			})
		}
	})
}

// drained empties the outbox, as a sender does once the broker confirmed.
func drained(t *testing.T, d *db.DB) {
	t.Helper()
	msgs, err := d.ClaimOutbox(context.Background(), "reader", time.Minute, 100)
	require.NoError(t, err)
	var seqs []int64
	for _, m := range msgs {
		seqs = append(seqs, m.Seq)
	}
	require.NoError(t, d.DeleteOutbox(context.Background(), seqs))
}

// TestFinishKnownOnce: an execution finished twice by finishers that know
// it (Outcome.Read and Function, the engine's way: on MySQL one round trip
// whose usage and outbox statements run only if the end's guard changed the
// row) is stored, counted and notified once.
func TestFinishKnownOnce(t *testing.T) {
	each(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		d := open(t)
		d.EnableNotifications("qinling-engine.test")
		f := &db.Function{Base: db.Base{ProjectID: "p1"}, MemorySize: 32 << 20, Code: "{}"}
		require.NoError(t, d.CreateFunction(ctx, f))
		drained(t, d)
		id := running(t, d, "p1", f.ID)
		read, err := d.Execution(ctx, db.Internal, id)
		require.NoError(t, err)
		for i, status := range []string{db.StatusSuccess, db.StatusFailed} {
			done, err := d.Finish(ctx, id, db.Outcome{Status: status, Usage: db.Usage{DurationMS: 5}, Read: read, Function: f})
			require.NoError(t, err)
			require.Equal(t, i == 0, done, "finish %d", i+1)
		}
		row, err := d.Execution(ctx, db.Internal, id)
		require.NoError(t, err)
		require.Equal(t, db.StatusSuccess, row.Status)
		hour := time.Now().UTC().Truncate(time.Hour)
		rows, err := d.UsageBetween(ctx, db.Internal, hour.Add(-time.Hour), hour.Add(2*time.Hour))
		require.NoError(t, err)
		require.Len(t, rows, 1)
		require.EqualValues(t, 1, rows[0].Executions)
		require.EqualValues(t, 1, rows[0].Succeeded)
		require.EqualValues(t, 5, rows[0].DurationMS)
		events, _ := outbox(t, d)
		require.Equal(t, []string{"function.execution.end"}, events)

		// A second execution ending in the same hour adds to the row (the
		// upsert's update, then its outbox row).
		id2 := running(t, d, "p1", f.ID)
		read2, err := d.Execution(ctx, db.Internal, id2)
		require.NoError(t, err)
		done, err := d.Finish(ctx, id2, db.Outcome{Status: db.StatusError, Usage: db.Usage{DurationMS: 7}, Read: read2, Function: f})
		require.NoError(t, err)
		require.True(t, done)
		rows, err = d.UsageBetween(ctx, db.Internal, hour.Add(-time.Hour), hour.Add(2*time.Hour))
		require.NoError(t, err)
		require.EqualValues(t, 2, rows[0].Executions)
		require.EqualValues(t, 1, rows[0].Failed)
		require.EqualValues(t, 12, rows[0].DurationMS)
		events, _ = outbox(t, d)
		require.Equal(t, []string{"function.execution.end", "function.execution.end"}, events)
	})
}
