package jobs

import (
	"context"
	"log/slog"
	"time"

	"github.com/qinling-go/qinling/pkg/db"
	"github.com/qinling-go/qinling/pkg/execution"
)

// Interval is upstream's period of the job handler.
const Interval = 3 * time.Second

// lookahead lets the tick just before a job's time pick it up and start it
// on time, rather than up to a whole period late as upstream's handler did.
const lookahead = 3 * time.Second

// batch bounds the due jobs one pass reads.
const batch = 100

// Handler fires due jobs. Several API processes may run one each: every run
// of a job is claimed in the database first, so exactly one of them starts it.
type Handler struct {
	DB         *db.DB
	Executions *execution.Starter
	Log        *slog.Logger
}

// Run fires due jobs every interval until ctx ends.
func (h *Handler) Run(ctx context.Context, interval time.Duration) {
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-time.After(interval):
			h.FireDue(ctx)
		}
	}
}

// FireDue runs one pass: every job due within the look-ahead, in due order.
func (h *Handler) FireDue(ctx context.Context) {
	due, err := h.DB.DueJobs(ctx, time.Now().UTC().Add(lookahead), batch)
	if err != nil {
		h.Log.Warn("job handler: listing due jobs failed", "error", err)
		return
	}
	for i := range due {
		// Due within the look-ahead: start it on its time, not early (the
		// list is in due order, so the waits add up to at most lookahead).
		if wait := time.Until(due[i].NextExecutionTime); wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
		if err := h.fire(ctx, &due[i]); err != nil {
			h.Log.Warn("job handler: job run failed", "job_id", due[i].ID, "error", err)
		}
	}
}

// fire claims the job's run, moving it on to its next run or to done, and
// starts the run's execution if this handler won the claim.
func (h *Handler) fire(ctx context.Context, j *db.Job) error {
	next, count, ok := h.advance(j)
	won, err := h.DB.ClaimJobRun(ctx, j, next, count)
	if err != nil || !won || !ok {
		return err
	}
	_, err = h.Executions.StartTriggered(ctx, execution.Trigger{
		Project: j.ProjectID, RequestID: "req-job-" + j.ID,
		Alias: j.FunctionAlias, FunctionID: j.FunctionID, Version: j.FunctionVersion,
		Input: j.FunctionInput, Description: "Created by Job " + j.ID, Kind: db.TriggerJob,
	})
	return err
}

// advance is the job's state after this run: its next run (nil when this
// is the last) and its remaining count (nil when unlimited). ok is false
// when the run must not start: a pattern stored before the rules of Parse
// that fails them now ends its job instead of firing on every tick.
func (h *Handler) advance(j *db.Job) (next *time.Time, count *int, ok bool) {
	if j.Count != nil {
		c := *j.Count - 1
		count = &c
	}
	if j.Pattern == nil || (count != nil && *count <= 0) {
		return nil, count, true
	}
	s, err := Parse(*j.Pattern)
	if err != nil {
		h.Log.Warn("job handler: the job's pattern is not valid; the job ends", "job_id", j.ID, "error", err)
		return nil, j.Count, false
	}
	n := s.Next(j.NextExecutionTime)
	// After downtime, skip the runs that were missed rather than firing
	// them all back to back.
	if now := time.Now().UTC(); !n.IsZero() && n.Before(now) {
		n = s.Next(now)
	}
	if n.IsZero() {
		return nil, count, true
	}
	return &n, count, true
}
