package jobs_test

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/db"
	"github.com/qinling-go/qinling/pkg/engine"
	"github.com/qinling-go/qinling/pkg/execution"
	"github.com/qinling-go/qinling/pkg/jobs"
)

// engineCalls is an engine that takes every async execution and keeps it.
type engineCalls struct {
	mu   sync.Mutex
	runs []engine.ExecutionArgs
}

func (c *engineCalls) CreateExecution(_ context.Context, a engine.ExecutionArgs, _ bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.runs = append(c.runs, a)
	return nil
}

func TestHandler_FireDue(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d, err := db.Open("sqlite", filepath.Join(t.TempDir(), "jobs.sqlite"), db.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { d.Close() })
	_, _, err = d.Sync(ctx)
	require.NoError(t, err)
	rt := &db.Runtime{Base: db.Base{ProjectID: "admin"}, Image: "python3", Status: db.StatusAvailable, IsPublic: true}
	require.NoError(t, d.CreateRuntime(ctx, rt))
	fns := map[string]string{}
	for _, project := range []string{"other", "owner"} { // other's alias is the older
		f := &db.Function{Base: db.Base{ProjectID: project}, RuntimeID: &rt.ID, CPU: 100, MemorySize: 33554432, Timeout: 5}
		f.SetCode(db.Code{Source: db.SourcePackage, MD5Sum: "0123456789abcdef0123456789abcdef"})
		require.NoError(t, d.CreateFunction(ctx, f))
		require.NoError(t, d.CreateFunctionAlias(ctx, &db.FunctionAlias{Base: db.Base{ProjectID: project}, Name: "prod", FunctionID: f.ID}))
		fns[project] = f.ID
	}

	owner := fns["owner"]
	text := func(s string) *string { return &s }
	number := func(n int) *int { return &n }
	due := time.Now().UTC().Add(-time.Second)
	for _, tc := range []struct {
		name     string
		job      db.Job
		runs     []string // functions started
		status   string   // the job's afterwards
		count    *int
		nextFrom time.Time // the next run is after this; zero when done
	}{
		{name: "pattern moves on", job: db.Job{Pattern: text("*/5 * * * *"), FunctionID: &owner},
			runs: []string{owner}, status: db.StatusRunning, nextFrom: time.Now()},
		{name: "last of its count", job: db.Job{Pattern: text("* * * * *"), Count: number(1), FunctionID: &owner},
			runs: []string{owner}, status: db.StatusDone, count: number(0)},
		{name: "one-shot", job: db.Job{Count: number(1), FunctionID: &owner},
			runs: []string{owner}, status: db.StatusDone, count: number(0)},
		{name: "alias resolved in the job's project", job: db.Job{Pattern: text("@daily"), FunctionAlias: text("prod")},
			runs: []string{owner}, status: db.StatusRunning, nextFrom: time.Now()},
		{name: "stored pattern that never matches ends the job", job: db.Job{Pattern: text("0 0 30 2 *"), FunctionID: &owner},
			status: db.StatusDone},
		{name: "stored pattern more often than a minute ends the job", job: db.Job{Pattern: text("@every 1s"), Count: number(5), FunctionID: &owner},
			status: db.StatusDone, count: number(5)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := &engineCalls{}
			log := slog.New(slog.NewTextHandler(io.Discard, nil))
			h := &jobs.Handler{DB: d, Executions: &execution.Starter{DB: d, Engine: calls, Log: log}, Log: log}
			j := tc.job
			j.ProjectID, j.Status, j.NextExecutionTime = "owner", db.StatusRunning, due
			require.NoError(t, d.CreateJob(ctx, &j))
			t.Cleanup(func() { _ = d.DeleteJob(ctx, j.ID) })
			h.FireDue(ctx)

			var ran []string
			for _, a := range calls.runs {
				ran = append(ran, a.FunctionID)
			}
			require.Equal(t, tc.runs, ran)
			got, err := d.Job(ctx, db.Internal, j.ID)
			require.NoError(t, err)
			require.Equal(t, tc.status, got.Status)
			require.Equal(t, tc.count, got.Count)
			if !tc.nextFrom.IsZero() {
				require.True(t, got.NextExecutionTime.After(tc.nextFrom), "next run %s", got.NextExecutionTime)
			}
		})
	}
}
