package jobs_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/db"
	"github.com/qinling-go/qinling/pkg/db/dbtest"
	"github.com/qinling-go/qinling/pkg/engine"
	"github.com/qinling-go/qinling/pkg/errdefs"
	"github.com/qinling-go/qinling/pkg/execution"
	"github.com/qinling-go/qinling/pkg/jobs"
)

func TestParse(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, pattern string
		period        time.Duration // between two runs; 0 when it varies
		why           string        // in the refusal; "" means valid
	}{
		{name: "every minute", pattern: "* * * * *", period: time.Minute},
		{name: "every five minutes", pattern: "*/5 * * * *", period: 5 * time.Minute},
		{name: "hourly descriptor", pattern: "@hourly", period: time.Hour},
		{name: "every two minutes", pattern: "@every 2m", period: 2 * time.Minute},
		{name: "every minute exactly", pattern: "@every 1m", period: time.Minute},
		{name: "leap day", pattern: "0 0 29 2 *"},
		{name: "surrounding spaces", pattern: "  0 12 * * 1-5 ", period: 0},
		{name: "every second", pattern: "@every 1s", why: "at least one minute apart"},
		{name: "every 59 seconds", pattern: "@every 59s", why: "at least one minute apart"},
		{name: "negative period", pattern: "@every -1m", why: "at least one minute apart"},
		{name: "seconds field", pattern: "*/30 * * * * *", why: "seconds are not supported"},
		{name: "never: 30 February", pattern: "0 0 30 2 *", why: "never matches"},
		{name: "never: 31 April", pattern: "0 0 31 4 *", why: "never matches"},
		{name: "empty", pattern: "", why: "empty"},
		{name: "blank", pattern: "   ", why: "empty"},
		{name: "too long", pattern: "0,1,2,3,4,5,6,7,8,9,10,11,12 * * * *", why: "at most 32 characters"},
		{name: "time zone", pattern: "CRON_TZ=Asia/Tokyo 0 * * * *", why: "time zones are not supported"},
		{name: "time zone short", pattern: "TZ=UTC 0 * * * *", why: "time zones are not supported"},
		{name: "words", pattern: "every minute", why: "expected exactly 5 fields"},
		{name: "four fields", pattern: "* * * *", why: "expected exactly 5 fields"},
		{name: "minute out of range", pattern: "60 * * * *", why: "above maximum"},
		{name: "step zero", pattern: "*/0 * * * *", why: "step"},
		{name: "unknown descriptor", pattern: "@fortnightly", why: "unrecognized descriptor"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, err := jobs.Parse(tc.pattern)
			if tc.why != "" {
				require.Error(t, err)
				require.Equal(t, errdefs.KindInvalid, errdefs.KindOf(err))
				require.Contains(t, err.Error(), "The specified pattern is not valid: "+tc.pattern)
				require.Contains(t, err.Error(), tc.why)
				return
			}
			require.NoError(t, err)
			now := time.Now()
			first := s.Next(now)
			require.True(t, first.After(now), "next run %s is not after %s", first, now)
			require.Equal(t, time.UTC, first.Location())
			if tc.period != 0 {
				require.Equal(t, tc.period, s.Next(first).Sub(first))
			}
		})
	}
}

// FuzzParse: any text is either refused with an invalid-kind error that
// quotes it, or gives a schedule whose runs come in order, in UTC and at
// least MinPeriod apart. The seed corpus is in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{"* * * * *", "@daily", "@every 90s", "0 0 30 2 *", "1-5/2 */3 1,15 JAN-MAR MON-FRI"} {
		f.Add(seed)
	}
	base := time.Date(2030, 6, 15, 12, 34, 56, 0, time.UTC)
	f.Fuzz(func(t *testing.T, pattern string) {
		s, err := jobs.Parse(pattern)
		if err != nil {
			if errdefs.KindOf(err) != errdefs.KindInvalid {
				t.Fatalf("Parse(%q): error of kind %s: %v", pattern, errdefs.KindOf(err), err)
			}
			if utf8.ValidString(pattern) && !strings.Contains(err.Error(), pattern) {
				t.Fatalf("Parse(%q): the refusal does not quote the pattern: %v", pattern, err)
			}
			return
		}
		first := s.Next(base)
		if first.IsZero() {
			return // a pattern that matches, but not within five years of base
		}
		if !first.After(base) || first.Location() != time.UTC {
			t.Fatalf("Parse(%q): next after %s is %s", pattern, base, first)
		}
		if second := s.Next(first); !second.IsZero() && second.Sub(first) < jobs.MinPeriod {
			t.Fatalf("Parse(%q): runs %s and %s are closer than %s", pattern, first, second, jobs.MinPeriod)
		}
	})
}

// engineCalls is an engine that takes every async execution and keeps it;
// FireDue starts them one after another, in its own goroutine.
type engineCalls struct{ runs []engine.ExecutionArgs }

func (c *engineCalls) CreateExecution(_ context.Context, a engine.ExecutionArgs, _ bool) (engine.ExecutionOutcome, error) {
	c.runs = append(c.runs, a)
	return engine.ExecutionOutcome{}, nil
}

func TestHandler_FireDue(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d := dbtest.SQLite(t)
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
			log := slog.New(slog.DiscardHandler)
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
