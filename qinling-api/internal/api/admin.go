package api

import (
	"net/http"

	"github.com/qinling-go/qinling/pkg/coord"
	"github.com/qinling-go/qinling/pkg/engine"
	"github.com/qinling-go/qinling/pkg/errdefs"
	"github.com/qinling-go/qinling/pkg/policy"
)

type scaleRequest struct {
	Count flexInt `json:"count"`
}

// scale handles scale_up and scale_down of a function (version 0) or a
// version; upstream answered 500 when count was missing, here it is 1.
func (s *Server) scale(up bool) handlerFunc {
	return func(_ http.ResponseWriter, r *http.Request) (any, int, error) {
		ctx := r.Context()
		if err := enforceScale(ctx, up, r.PathValue("n") != ""); err != nil {
			return nil, 0, err
		}
		var req scaleRequest
		if err := s.decodeJSON(r, &req); err != nil {
			return nil, 0, err
		}
		count := 1
		if req.Count.Set {
			count = req.Count.Value
		}
		if count < 1 {
			return nil, 0, errdefs.Invalid("Invalid count %d: it must be at least 1.", count)
		}
		f, n, err := s.versionTarget(r)
		if err != nil {
			return nil, 0, err
		}
		args := engine.FunctionArgs{FunctionID: f.ID, FunctionVersion: n, Count: count}
		if up {
			err = s.Engine.ScaleUp(ctx, args)
		} else {
			workers, werr := s.Coord.Workers(ctx, coord.FunctionVersion{FunctionID: f.ID, Version: n})
			if werr != nil {
				return nil, 0, werr
			}
			// With one worker or none there is nothing to remove.
			if len(workers) > 1 {
				err = s.Engine.ScaleDown(ctx, args)
			}
		}
		if err != nil {
			return nil, 0, err
		}
		return nil, http.StatusAccepted, nil
	}
}

// detach releases every worker of a function or version.
func (s *Server) detach(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	ctx := r.Context()
	if err := enforceDetach(ctx, r.PathValue("n") != ""); err != nil {
		return nil, 0, err
	}
	f, n, err := s.versionTarget(r)
	if err != nil {
		return nil, 0, err
	}
	if err := s.Coord.DeleteFunction(ctx, coord.FunctionVersion{FunctionID: f.ID, Version: n}); err != nil {
		return nil, 0, err
	}
	if err := s.Engine.DeleteFunction(ctx, f.ID, n); err != nil {
		return nil, 0, err
	}
	return nil, http.StatusAccepted, nil
}

type workerView struct {
	FunctionID      string `json:"function_id"`
	FunctionVersion int    `json:"function_version"`
	WorkerName      string `json:"worker_name"`
}

// listWorkers reads the workers of a function version from coordination.
func (s *Server) listWorkers(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	ctx := r.Context()
	if err := policy.Enforce(ctx, policy.FunctionWorkerGetAll); err != nil {
		return nil, 0, err
	}
	f, err := s.function(r)
	if err != nil {
		return nil, 0, err
	}
	n := 0
	if v := r.URL.Query().Get("function_version"); v != "" {
		got, ok, err := formInt("function_version", v)
		if err != nil || !ok || got < 0 {
			return nil, 0, errdefs.Invalid("Invalid function_version %q: a non-negative integer is required.", v)
		}
		n = int(got)
	}
	ws, err := s.Coord.Workers(ctx, coord.FunctionVersion{FunctionID: f.ID, Version: n})
	if err != nil {
		return nil, 0, err
	}
	out := make([]workerView, len(ws))
	for i, w := range ws {
		out[i] = workerView{FunctionID: f.ID, FunctionVersion: n, WorkerName: w.Name}
	}
	return map[string]any{"workers": out}, http.StatusOK, nil
}
