package api

import (
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/qinling-go/qinling/pkg/db"
	"github.com/qinling-go/qinling/pkg/errdefs"
	"github.com/qinling-go/qinling/pkg/jobs"
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

// maxLead bounds how far ahead a job's first or next run may be set: a
// pattern's next match after it (robfig/cron looks up to five years ahead)
// must still fit a MySQL DATETIME, and nobody schedules a century ahead.
const maxLead = 100 * 365 * 24 * time.Hour

// maxCount is the most runs a job may be given: jobs.count is an INTEGER
// column, 32 bits on MySQL.
const maxCount = math.MaxInt32

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
	now := time.Now().UTC()
	if t.Before(now.Add(minLead)) {
		return errdefs.Invalid("Execution time must be at least 1 minute in the future.")
	}
	if t.After(now.Add(maxLead)) {
		return errdefs.Invalid("Execution time must be at most 100 years in the future.")
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
		// Each run resolves the alias in the job's project; so does this check.
		a, err := s.DB.FunctionAlias(ctx, j.ProjectID, *req.FunctionAlias.Value)
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
		// Upstream took 0 and negative counts and then ran such a job
		// forever; no count (null) is how a job runs forever.
		if req.Count.Value < 1 || req.Count.Value > maxCount {
			return nil, 0, errdefs.Invalid("count must be between 1 and %d, or null for a job without end.", maxCount)
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
		sched, err := jobs.Parse(pattern)
		if err != nil {
			return nil, 0, err
		}
		base := time.Now().UTC()
		if first != "" {
			base = firstAt.Add(-time.Minute)
		}
		next := sched.Next(base)
		if next.IsZero() {
			return nil, 0, errdefs.Invalid("The specified pattern %s has no run within five years of first_execution_time.", pattern)
		}
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
	return readable(r, s.DB.Job)
}

func (s *Server) getJob(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	return shown(r, s.job, renderJob)
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
	pattern := j.Pattern
	if req.Pattern.Value != nil {
		p := strings.TrimSpace(*req.Pattern.Value)
		if j.Pattern == nil || p == "" {
			return nil, 0, errdefs.Invalid("Can not change job type.")
		}
		if _, err := jobs.Parse(p); err != nil {
			return nil, 0, err
		}
		pattern, values["pattern"] = &p, p
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
		if pattern == nil {
			if err := checkLead(j.NextExecutionTime); err != nil {
				return nil, 0, err
			}
			break
		}
		// A pattern stored before jobs.Parse's rules may fail them now.
		sched, err := jobs.Parse(*pattern)
		if err != nil {
			return nil, 0, errdefs.Invalid("%s Give the job a new pattern.", errdefs.PublicMessage(err))
		}
		values["next_execution_time"] = sched.Next(time.Now())
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
