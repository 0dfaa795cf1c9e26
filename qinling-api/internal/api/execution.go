package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/qinling-go/qinling/pkg/db"
	"github.com/qinling-go/qinling/pkg/engine"
	"github.com/qinling-go/qinling/pkg/errdefs"
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
	e := &db.Execution{
		Base:        db.Base{ProjectID: reqctx.From(ctx).ProjectID},
		Description: req.Description.Value,
		Status:      db.StatusRunning,
		Sync:        req.Sync == nil || *req.Sync,
		Input:       normaliseInput(req.Input.Value),
	}
	switch {
	case req.FunctionAlias.Value != nil && *req.FunctionAlias.Value != "":
		a, err := s.resolveAlias(r, *req.FunctionAlias.Value)
		if err != nil {
			return nil, 0, err
		}
		e.FunctionID, e.FunctionVersion, e.FunctionAlias = &a.FunctionID, a.FunctionVersion, &a.Name
	case req.FunctionID.Value != nil && *req.FunctionID.Value != "":
		e.FunctionID = req.FunctionID.Value
		e.FunctionVersion = req.FunctionVersion.Value
	default:
		return nil, 0, errdefs.Invalid("Either function_alias or function_id must be provided.")
	}
	if e.FunctionVersion < 0 {
		return nil, 0, errdefs.Invalid("function_version must not be negative.")
	}
	return s.runExecution(ctx, e)
}

// runExecution checks the function can run, records the execution and hands
// it to an engine: a call for sync executions, a cast for async ones.
func (s *Server) runExecution(ctx context.Context, e *db.Execution) (any, int, error) {
	f, err := s.DB.Function(ctx, readScope(ctx), *e.FunctionID)
	if err != nil {
		return nil, 0, err
	}
	runtimeID := ""
	if f.RuntimeID != nil {
		runtimeID = *f.RuntimeID
		rt, err := s.DB.Runtime(ctx, db.Internal, runtimeID)
		if err != nil {
			return nil, 0, err
		}
		if rt.Status != db.StatusAvailable {
			return nil, 0, errdefs.Conflict("Runtime %s is not available.", runtimeID)
		}
	}
	if e.FunctionVersion > 0 {
		if f.ParsedCode().Source != db.SourcePackage {
			return nil, 0, errdefs.Invalid("Versions exist only for package type functions.")
		}
		if _, err := s.DB.FunctionVersion(ctx, db.Internal, f.ID, e.FunctionVersion); err != nil {
			return nil, 0, errdefs.NotFound("FunctionVersion not found [function_id=%s, version_number=%d]", f.ID, e.FunctionVersion)
		}
	}
	if err := s.DB.CountExecution(ctx, f.ID, e.FunctionVersion); err != nil {
		return nil, 0, err
	}
	if err := s.DB.CreateExecution(ctx, e); err != nil {
		return nil, 0, err
	}
	var input json.RawMessage
	if e.Input != nil {
		input = json.RawMessage(*e.Input)
	}
	args := engine.ExecutionArgs{ExecutionID: e.ID, FunctionID: f.ID, FunctionVersion: e.FunctionVersion, RuntimeID: runtimeID, Input: input}
	if err := s.Engine.CreateExecution(ctx, args, e.Sync); err != nil {
		// Upstream answers 201 with status error when the engine fails; a
		// transport that is down is a 503 so clients know to retry.
		reqctx.Logger(ctx, s.Log).Error("engine did not run the execution", "execution_id", e.ID, "error", err)
		result := mustJSON(map[string]any{"output": "Function execution failed: " + errdefs.PublicMessage(err), "duration": 0})
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_, _ = s.DB.FinishExecution(sctx, e.ID, db.StatusError, &result, nil)
		if errdefs.KindOf(err) == errdefs.KindUnavailable {
			return nil, 0, err
		}
	}
	if e.Sync {
		got, err := s.DB.Execution(context.WithoutCancel(ctx), db.Internal, e.ID)
		if err != nil {
			return nil, 0, err
		}
		e = got
	}
	return renderExecution(e), http.StatusCreated, nil
}

func (s *Server) listExecutions(w http.ResponseWriter, r *http.Request) (any, int, error) {
	return listOf[db.Execution](s, w, r, "executions", executionParams, policy.ExecutionGetAllAllProjects, renderExecution)
}

func (s *Server) execution(r *http.Request) (*db.Execution, error) {
	id, err := pathID(r)
	if err != nil {
		return nil, err
	}
	return s.DB.Execution(r.Context(), readScope(r.Context()), id)
}

func (s *Server) getExecution(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	e, err := s.execution(r)
	if err != nil {
		return nil, 0, err
	}
	return renderExecution(e), http.StatusOK, nil
}

// getExecutionLog serves the log as text/plain; an empty log is 204 as
// upstream's framework answered.
func (s *Server) getExecutionLog(w http.ResponseWriter, r *http.Request) (any, int, error) {
	e, err := s.execution(r)
	if err != nil {
		return nil, 0, err
	}
	if e.Logs == nil || *e.Logs == "" {
		return nil, http.StatusNoContent, nil
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(*e.Logs))
	return nil, 0, nil
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
