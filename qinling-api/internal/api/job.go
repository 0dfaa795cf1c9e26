package api

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/qinling-go/qinling/pkg/db"
	"github.com/qinling-go/qinling/pkg/errdefs"
	"github.com/qinling-go/qinling/pkg/policy"
	"github.com/qinling-go/qinling/pkg/reqctx"
)

type jobView struct {
	ID                 string  `json:"id"`
	Name               *string `json:"name"`
	Count              *int    `json:"count"`
	Status             string  `json:"status"`
	FunctionAlias      *string `json:"function_alias"`
	FunctionID         *string `json:"function_id"`
	FunctionVersion    int     `json:"function_version"`
	FunctionInput      *string `json:"function_input"`
	Pattern            *string `json:"pattern"`
	FirstExecutionTime *string `json:"first_execution_time"`
	NextExecutionTime  string  `json:"next_execution_time"`
	ProjectID          string  `json:"project_id"`
	CreatedAt          string  `json:"created_at"`
	UpdatedAt          *string `json:"updated_at"`
}

func renderJob(j *db.Job) jobView {
	return jobView{
		ID: j.ID, Name: j.Name, Count: j.Count, Status: j.Status, FunctionAlias: j.FunctionAlias,
		FunctionID: j.FunctionID, FunctionVersion: j.FunctionVersion, FunctionInput: j.FunctionInput,
		Pattern: j.Pattern, FirstExecutionTime: optTime(j.FirstExecutionTime), NextExecutionTime: timestr(j.NextExecutionTime),
		ProjectID: j.ProjectID, CreatedAt: timestr(j.CreatedAt), UpdatedAt: optTime(j.UpdatedAt),
	}
}

// minLead is how far in the future a job's first or next run must be.
const minLead = time.Minute

// parseSchedule checks a cron pattern: five fields or a @descriptor.
func parseSchedule(pattern string) (cron.Schedule, error) {
	if len(pattern) > 32 {
		return nil, errdefs.Invalid("The specified pattern is not valid: %s (at most 32 characters).", pattern)
	}
	sched, err := cron.ParseStandard(pattern)
	if err != nil {
		return nil, errdefs.Invalid("The specified pattern is not valid: %s (%v).", pattern, err)
	}
	return sched, nil
}

// timeLayouts are the forms a job time may be given in; any zone is ignored
// and the time taken as UTC, as upstream did.
var timeLayouts = []string{
	"2006-01-02 15:04", "2006-01-02 15:04:05", "2006-01-02T15:04", "2006-01-02T15:04:05",
	time.RFC3339, "2006-01-02T15:04:05Z", "2006-01-02 15:04:05Z", "2006-01-02T15:04:05.999999", "2006-01-02 15:04:05.999999",
}

func parseJobTime(field, v string) (time.Time, error) {
	v = strings.TrimSpace(v)
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, v); err == nil {
			y, mo, d := t.Date()
			return time.Date(y, mo, d, t.Hour(), t.Minute(), t.Second(), 0, time.UTC), nil
		}
	}
	return time.Time{}, errdefs.Invalid("Invalid %s %q: use YYYY-MM-DD HH:MM[:SS] (UTC).", field, v)
}

func checkLead(t time.Time) error {
	if t.Before(time.Now().UTC().Add(minLead)) {
		return errdefs.Invalid("Execution time must be at least 1 minute in the future.")
	}
	return nil
}

type jobRequest struct {
	Name               optString `json:"name"`
	FunctionID         optString `json:"function_id"`
	FunctionAlias      optString `json:"function_alias"`
	FunctionVersion    flexInt   `json:"function_version"`
	FunctionInput      optString `json:"function_input"`
	Pattern            optString `json:"pattern"`
	FirstExecutionTime optString `json:"first_execution_time"`
	NextExecutionTime  optString `json:"next_execution_time"`
	Count              flexInt   `json:"count"`
	Status             optString `json:"status"`
}

func (s *Server) createJob(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	ctx := r.Context()
	var req jobRequest
	if err := s.decodeJSON(r, &req); err != nil {
		return nil, 0, err
	}
	if err := checkLen("name", req.Name.Value, 255); err != nil {
		return nil, 0, err
	}
	if err := checkLen("function_input", req.FunctionInput.Value, 255); err != nil {
		return nil, 0, err
	}
	j := &db.Job{Base: db.Base{ProjectID: reqctx.From(ctx).ProjectID}, Name: req.Name.Value, Status: db.StatusRunning, FunctionInput: req.FunctionInput.Value}
	switch {
	case req.FunctionAlias.Value != nil && *req.FunctionAlias.Value != "":
		a, err := s.resolveAlias(r, *req.FunctionAlias.Value)
		if err != nil {
			return nil, 0, err
		}
		j.FunctionAlias = &a.Name
	case req.FunctionID.Value != nil && *req.FunctionID.Value != "":
		f, err := s.checkTarget(r, *req.FunctionID.Value, req.FunctionVersion.Value)
		if err != nil {
			return nil, 0, err
		}
		j.FunctionID, j.FunctionVersion = &f.ID, req.FunctionVersion.Value
	default:
		return nil, 0, errdefs.Invalid("Either function_alias or function_id must be provided.")
	}
	pattern := ""
	if req.Pattern.Value != nil {
		pattern = strings.TrimSpace(*req.Pattern.Value)
	}
	first := ""
	if req.FirstExecutionTime.Value != nil {
		first = strings.TrimSpace(*req.FirstExecutionTime.Value)
	}
	if pattern == "" && first == "" {
		return nil, 0, errdefs.Invalid("pattern or first_execution_time must be specified.")
	}
	if req.Count.Set {
		if req.Count.Value < 1 {
			return nil, 0, errdefs.Invalid("count must be at least 1.")
		}
		c := req.Count.Value
		j.Count = &c
	}
	var firstAt time.Time
	if first != "" {
		var err error
		if firstAt, err = parseJobTime("first_execution_time", first); err != nil {
			return nil, 0, err
		}
		if err := checkLead(firstAt); err != nil {
			return nil, 0, err
		}
	}
	if pattern == "" {
		if j.Count != nil && *j.Count > 1 {
			return nil, 0, errdefs.Invalid("pattern must be provided if count is greater than 1.")
		}
		one := 1
		j.Count, j.NextExecutionTime = &one, firstAt
		j.FirstExecutionTime = &firstAt
	} else {
		sched, err := parseSchedule(pattern)
		if err != nil {
			return nil, 0, err
		}
		base := time.Now().UTC()
		if first != "" {
			base = firstAt.Add(-time.Minute)
		}
		next := sched.Next(base).UTC()
		j.Pattern, j.NextExecutionTime, j.FirstExecutionTime = &pattern, next, &next
	}
	if err := s.DB.CreateJob(ctx, j); err != nil {
		return nil, 0, err
	}
	return renderJob(j), http.StatusCreated, nil
}

func (s *Server) listJobs(w http.ResponseWriter, r *http.Request) (any, int, error) {
	return listOf[db.Job](s, w, r, "jobs", jobParams, policy.JobGetAllAllProjects, renderJob)
}

func (s *Server) job(r *http.Request) (*db.Job, error) {
	id, err := pathID(r)
	if err != nil {
		return nil, err
	}
	return s.DB.Job(r.Context(), readScope(r.Context()), id)
}

func (s *Server) getJob(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	j, err := s.job(r)
	if err != nil {
		return nil, 0, err
	}
	return renderJob(j), http.StatusOK, nil
}

func (s *Server) deleteJob(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	j, err := s.job(r)
	if err != nil {
		return nil, 0, err
	}
	if err := s.DB.DeleteJob(r.Context(), j.ID); err != nil {
		return nil, 0, err
	}
	return nil, http.StatusNoContent, nil
}

// updateJob applies upstream's rules: finished jobs are frozen, a one-shot
// job stays one-shot, and resuming a paused job moves its next run forward.
func (s *Server) updateJob(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	ctx := r.Context()
	var req jobRequest
	if err := s.decodeJSON(r, &req); err != nil {
		return nil, 0, err
	}
	j, err := s.job(r)
	if err != nil {
		return nil, 0, err
	}
	if j.Status == db.StatusDone || j.Status == db.StatusCancelled {
		return nil, 0, errdefs.Invalid("Can not update a finished job.")
	}
	values := map[string]any{}
	if req.Name.Value != nil {
		if err := checkLen("name", req.Name.Value, 255); err != nil {
			return nil, 0, err
		}
		values["name"] = *req.Name.Value
	}
	if req.FunctionInput.Value != nil {
		if err := checkLen("function_input", req.FunctionInput.Value, 255); err != nil {
			return nil, 0, err
		}
		values["function_input"] = *req.FunctionInput.Value
	}
	sched := cron.Schedule(nil)
	if j.Pattern != nil {
		if sched, err = parseSchedule(*j.Pattern); err != nil {
			return nil, 0, err
		}
	}
	if req.Pattern.Value != nil {
		p := strings.TrimSpace(*req.Pattern.Value)
		if j.Pattern == nil || p == "" {
			return nil, 0, errdefs.Invalid("Can not change job type.")
		}
		if sched, err = parseSchedule(p); err != nil {
			return nil, 0, err
		}
		values["pattern"] = p
	}
	status := j.Status
	if req.Status.Value != nil {
		switch *req.Status.Value {
		case db.StatusRunning, db.StatusPaused, db.StatusCancelled:
			status = *req.Status.Value
			values["status"] = status
		default:
			return nil, 0, errdefs.Invalid("Invalid status.")
		}
	}
	switch {
	case req.NextExecutionTime.Value != nil:
		next, err := parseJobTime("next_execution_time", *req.NextExecutionTime.Value)
		if err != nil {
			return nil, 0, err
		}
		if err := checkLead(next); err != nil {
			return nil, 0, err
		}
		values["next_execution_time"] = next
	case j.Status == db.StatusPaused && status == db.StatusRunning:
		if sched == nil {
			if err := checkLead(j.NextExecutionTime); err != nil {
				return nil, 0, err
			}
		} else {
			values["next_execution_time"] = sched.Next(time.Now().UTC()).UTC()
		}
	}
	if len(values) > 0 {
		if err := s.DB.UpdateJob(ctx, j.ID, values); err != nil {
			return nil, 0, err
		}
	}
	if j, err = s.DB.Job(ctx, db.Internal, j.ID); err != nil {
		return nil, 0, err
	}
	return renderJob(j), http.StatusOK, nil
}

// jobLookahead lets the tick just before a job's time pick it up and start it
// on time, rather than up to a whole period late as upstream's handler did.
const jobLookahead = 3 * time.Second

// RunJobHandler fires due jobs every interval until ctx ends. Several API
// processes may run it: each run of a job is claimed in the database first,
// so exactly one of them starts it.
func (s *Server) RunJobHandler(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.FireDueJobs(ctx)
		}
	}
}

// FireDueJobs runs one pass of the job handler.
func (s *Server) FireDueJobs(ctx context.Context) {
	due, err := s.DB.DueJobs(ctx, time.Now().UTC().Add(jobLookahead), 100)
	if err != nil {
		s.Log.Warn("job handler: listing due jobs failed", "error", err)
		return
	}
	for i := range due {
		// Due within the look-ahead: start it on its time, not early (the
		// list is in due order, so the waits add up to at most jobLookahead).
		if wait := time.Until(due[i].NextExecutionTime); wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
		if err := s.fireJob(ctx, &due[i]); err != nil {
			s.Log.Warn("job handler: job run failed", "job_id", due[i].ID, "error", err)
		}
	}
}

func (s *Server) fireJob(ctx context.Context, j *db.Job) error {
	var next *time.Time
	var count *int
	if j.Count != nil {
		c := *j.Count - 1
		count = &c
	}
	if j.Pattern != nil && (count == nil || *count > 0) {
		sched, err := parseSchedule(*j.Pattern)
		if err != nil {
			return err
		}
		n := sched.Next(j.NextExecutionTime).UTC()
		// After downtime, skip the runs that were missed rather than firing
		// them all back to back.
		if now := time.Now().UTC(); n.Before(now) {
			n = sched.Next(now).UTC()
		}
		next = &n
	}
	won, err := s.DB.ClaimJobRun(ctx, j, next, count)
	if err != nil || !won {
		return err
	}
	// The execution belongs to the job's owner: their project, no admin.
	owner := reqctx.Identity{RequestID: "req-job-" + j.ID, ProjectID: j.ProjectID, AuthEnabled: true}
	ectx := reqctx.With(ctx, owner)
	e := &db.Execution{
		Base: db.Base{ProjectID: j.ProjectID}, Status: db.StatusRunning, Sync: false,
		Input: normaliseInput(j.FunctionInput), Description: strPtr("Created by Job " + j.ID),
	}
	if j.FunctionAlias != nil {
		a, err := s.DB.FunctionAlias(ectx, db.Scope{ProjectID: j.ProjectID}, *j.FunctionAlias)
		if err != nil {
			return err
		}
		e.FunctionID, e.FunctionVersion, e.FunctionAlias = &a.FunctionID, a.FunctionVersion, &a.Name
	} else {
		e.FunctionID, e.FunctionVersion = j.FunctionID, j.FunctionVersion
	}
	_, _, err = s.runExecution(ectx, e)
	return err
}
