package api

import (
	"net/http"
	"time"

	"github.com/qinling-go/qinling/pkg/db"
	"github.com/qinling-go/qinling/pkg/errdefs"
	"github.com/qinling-go/qinling/pkg/policy"
)

// usageTimeLayouts are the forms start and end take: Nova's tenant usage
// forms, a date alone, and RFC 3339 with a zone; without one, UTC.
var usageTimeLayouts = []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999", "2006-01-02 15:04:05.999999", "2006-01-02"}

// projectUsage is one project's usage over the period, in the shape of
// Nova's tenant usage: totals, then one row per function.
type projectUsage struct {
	ProjectID       string          `json:"project_id"`
	Start           string          `json:"start"`
	End             string          `json:"end"`
	TotalExecutions int64           `json:"total_executions"`
	TotalSucceeded  int64           `json:"total_succeeded"`
	TotalFailed     int64           `json:"total_failed"`
	TotalDuration   float64         `json:"total_duration"`
	TotalCPUTime    float64         `json:"total_cpu_time"`
	TotalGBSeconds  float64         `json:"total_gb_seconds"`
	FunctionUsages  []functionUsage `json:"function_usages"`
	// The totals are summed in the rollup's integer units, exactly.
	sum db.UsageTotal
}

type functionUsage struct {
	FunctionID string  `json:"function_id"`
	Executions int64   `json:"executions"`
	Succeeded  int64   `json:"succeeded"`
	Failed     int64   `json:"failed"`
	Duration   float64 `json:"duration"`
	CPUTime    float64 `json:"cpu_time"`
	GBSeconds  float64 `json:"gb_seconds"`
}

// getUsage answers GET /v1/usage: the caller's project's usage over
// [start, end), at the rollup's hour granularity; admins may name a
// project_id or ask for all_projects.
func (s *Server) getUsage(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	q := r.URL.Query()
	for name := range q {
		switch name {
		case "start", "end", "project_id", "all_projects":
		default:
			return nil, 0, errdefs.Invalid("Invalid query parameter %s: usage takes start, end, project_id and all_projects.", name)
		}
	}
	end, err := usageTime("end", q.Get("end"), time.Now().UTC())
	if err != nil {
		return nil, 0, err
	}
	start, err := usageTime("start", q.Get("start"), end.Truncate(24*time.Hour))
	if err != nil {
		return nil, 0, err
	}
	if !start.Before(end) {
		return nil, 0, errdefs.Invalid("Invalid start time. The start time cannot occur after the end time.")
	}
	_, scope := caller(r.Context())
	all := false
	if v := q.Get("all_projects"); v != "" {
		b, ok := parseBool(v)
		if !ok {
			return nil, 0, errdefs.Invalid("Invalid value for all_projects: %q.", v)
		}
		all = b
	}
	if all || q.Get("project_id") != "" {
		if err := policy.Enforce(r.Context(), policy.UsageGetAllProjects); err != nil {
			return nil, 0, err
		}
		scope = db.Scope{ProjectID: q.Get("project_id"), All: all}
	}
	rows, err := s.DB.UsageBetween(r.Context(), scope, start, end)
	if err != nil {
		return nil, 0, err
	}
	out := []*projectUsage{}
	if !scope.All {
		// The one project asked for, with zeros when it used nothing.
		out = append(out, &projectUsage{ProjectID: scope.ProjectID})
	}
	for _, row := range rows {
		if len(out) == 0 || out[len(out)-1].ProjectID != row.ProjectID {
			out = append(out, &projectUsage{ProjectID: row.ProjectID})
		}
		p := out[len(out)-1]
		f := functionUsage{
			FunctionID: row.FunctionID, Executions: row.Executions, Succeeded: row.Succeeded, Failed: row.Failed,
			Duration: seconds(row.DurationMS), CPUTime: seconds(row.CPUMS), GBSeconds: db.GBSeconds(row.MemoryKiBMS),
		}
		p.FunctionUsages = append(p.FunctionUsages, f)
		p.sum.Executions += row.Executions
		p.sum.Succeeded += row.Succeeded
		p.sum.Failed += row.Failed
		p.sum.DurationMS += row.DurationMS
		p.sum.CPUMS += row.CPUMS
		p.sum.MemoryKiBMS += row.MemoryKiBMS
	}
	for _, p := range out {
		p.Start, p.End = timestr(start), timestr(end)
		p.TotalExecutions, p.TotalSucceeded, p.TotalFailed = p.sum.Executions, p.sum.Succeeded, p.sum.Failed
		p.TotalDuration, p.TotalCPUTime = seconds(p.sum.DurationMS), seconds(p.sum.CPUMS)
		p.TotalGBSeconds = db.GBSeconds(p.sum.MemoryKiBMS)
		if p.FunctionUsages == nil {
			p.FunctionUsages = []functionUsage{}
		}
	}
	return map[string]any{"usages": out}, http.StatusOK, nil
}

// seconds turns the rollup's milliseconds into seconds.
func seconds(ms int64) float64 { return float64(ms) / 1000 }

// usageTime parses a usage period bound named field; empty is def.
func usageTime(field, v string, def time.Time) (time.Time, error) {
	if v == "" {
		return def, nil
	}
	for _, layout := range usageTimeLayouts {
		if t, err := time.Parse(layout, v); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, errdefs.Invalid("Invalid %s time %q: use a date and time such as 2026-01-31T12:00:00 (UTC) or RFC 3339 with a zone.", field, v)
}
