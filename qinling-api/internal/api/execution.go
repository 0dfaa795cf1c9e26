package api

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/qinling-go/qinling/pkg/db"
	"github.com/qinling-go/qinling/pkg/errdefs"
	"github.com/qinling-go/qinling/pkg/execution"
	"github.com/qinling-go/qinling/pkg/policy"
	"github.com/qinling-go/qinling/pkg/reqctx"
)

type executionRequest struct {
	FunctionID      optString `json:"function_id"`
	FunctionVersion flexInt   `json:"function_version"`
	FunctionAlias   optString `json:"function_alias"`
	Sync            *bool     `json:"sync"`
	Input           rawInput  `json:"input"`
	Description     optString `json:"description"`
	// Read-only attributes.
	ID        any `json:"id"`
	Status    any `json:"status"`
	Result    any `json:"result"`
	ProjectID any `json:"project_id"`
	CreatedAt any `json:"created_at"`
	UpdatedAt any `json:"updated_at"`
}

// rawInput is the execution input: upstream declares it a string, and the
// CLI sends whatever the user typed as one. A JSON object is accepted too
// and kept as its text.
type rawInput struct{ Value *string }

func (in *rawInput) UnmarshalJSON(b []byte) error {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	switch t := v.(type) {
	case nil:
		in.Value = nil
	case string:
		in.Value = &t
	default:
		s := string(b)
		in.Value = &s
	}
	return nil
}

func (s *Server) createExecution(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	ctx := r.Context()
	var req executionRequest
	if err := s.decodeJSON(r, &req); err != nil {
		return nil, 0, err
	}
	if req.ID != nil || req.Status != nil || req.Result != nil || req.ProjectID != nil || req.CreatedAt != nil || req.UpdatedAt != nil {
		return nil, 0, errdefs.Invalid("Cannot set read only field.")
	}
	if err := checkLen("description", req.Description.Value, 255); err != nil {
		return nil, 0, err
	}
	start := execution.Request{
		Project:     reqctx.From(ctx).ProjectID,
		Functions:   readScope(ctx),
		Sync:        req.Sync == nil || *req.Sync,
		Input:       req.Input.Value,
		Description: req.Description.Value,
	}
	if req.FunctionAlias.Value != nil && *req.FunctionAlias.Value != "" {
		project, err := aliasProject(r)
		if err != nil {
			return nil, 0, err
		}
		start.Target = execution.Target{Alias: *req.FunctionAlias.Value, AliasProject: project}
	} else if req.FunctionID.Value != nil {
		start.Target = execution.Target{FunctionID: *req.FunctionID.Value, Version: req.FunctionVersion.Value}
	}
	e, err := s.Executions.Start(ctx, start)
	if err != nil {
		return nil, 0, err
	}
	return renderExecution(e), http.StatusCreated, nil
}

func (s *Server) listExecutions(w http.ResponseWriter, r *http.Request) (any, int, error) {
	return listOf[db.Execution](s, w, r, "executions", executionParams, policy.ExecutionGetAllAllProjects, renderExecution)
}

func (s *Server) execution(r *http.Request) (*db.Execution, error) {
	return readable(r, s.DB.Execution)
}

func (s *Server) getExecution(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	return shown(r, s.execution, renderExecution)
}

// getExecutionLog serves the log as text/plain; an empty log of a finished
// execution is 204 as upstream's framework answered. The log is written when
// the execution ends, so a running one says so instead of showing nothing:
// `openstack function execution log show` prints the body as it is.
func (s *Server) getExecutionLog(w http.ResponseWriter, r *http.Request) (any, int, error) {
	e, err := s.execution(r)
	if err != nil {
		return nil, 0, err
	}
	log := ""
	if e.Logs != nil {
		log = *e.Logs
	}
	if e.Status == db.StatusRunning {
		// Not valid JSON, which the CLI would try to decode and then crash on.
		log += runningLogNote(e.ID)
	}
	if log == "" {
		return nil, http.StatusNoContent, nil
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(log))
	return nil, 0, nil
}

// runningLogNote is the log of an execution that has not ended yet.
func runningLogNote(id string) string {
	return "Execution " + id + " is still running: its log is complete when it has finished.\n"
}

func (s *Server) deleteExecution(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	e, err := s.execution(r)
	if err != nil {
		return nil, 0, err
	}
	if err := s.DB.DeleteExecution(r.Context(), e.ID); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		return nil, 0, err
	}
	return nil, http.StatusNoContent, nil
}
