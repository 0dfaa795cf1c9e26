package api

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/qinling-go/qinling/pkg/coord"
	"github.com/qinling-go/qinling/pkg/db"
	"github.com/qinling-go/qinling/pkg/engine"
	"github.com/qinling-go/qinling/pkg/errdefs"
	"github.com/qinling-go/qinling/pkg/policy"
	"github.com/qinling-go/qinling/pkg/reqctx"
)

type runtimeRequest struct {
	Image       optString `json:"image"`
	Name        optString `json:"name"`
	Description optString `json:"description"`
	IsPublic    *bool     `json:"is_public"`
	Trusted     *bool     `json:"trusted"`
	// Read-only attributes are refused with upstream's message.
	ID        any `json:"id"`
	Status    any `json:"status"`
	ProjectID any `json:"project_id"`
	CreatedAt any `json:"created_at"`
	UpdatedAt any `json:"updated_at"`
}

func (rr *runtimeRequest) readOnlySet() bool {
	return rr.ID != nil || rr.Status != nil || rr.ProjectID != nil || rr.CreatedAt != nil || rr.UpdatedAt != nil
}

func (s *Server) createRuntime(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	ctx := r.Context()
	if err := policy.Enforce(ctx, policy.RuntimeCreate); err != nil {
		return nil, 0, err
	}
	var req runtimeRequest
	if err := s.decodeJSON(r, &req); err != nil {
		return nil, 0, err
	}
	if req.readOnlySet() {
		return nil, 0, errdefs.Invalid("Cannot set read only field.")
	}
	if req.Image.Value == nil || strings.TrimSpace(*req.Image.Value) == "" {
		return nil, 0, errdefs.Invalid("Required param is missing. Required: {'image'}")
	}
	if len(*req.Image.Value) > 255 {
		return nil, 0, errdefs.Invalid("image is longer than 255 characters.")
	}
	if err := checkLen("name", req.Name.Value, 255); err != nil {
		return nil, 0, err
	}
	if err := checkLen("description", req.Description.Value, 255); err != nil {
		return nil, 0, err
	}
	rt := &db.Runtime{
		Base: db.Base{ProjectID: reqctx.From(ctx).ProjectID},
		Name: req.Name.Value, Description: req.Description.Value, Image: strings.TrimSpace(*req.Image.Value),
		Status: db.StatusCreating, IsPublic: true, Trusted: true,
	}
	if req.IsPublic != nil {
		rt.IsPublic = *req.IsPublic
	}
	if req.Trusted != nil {
		rt.Trusted = *req.Trusted
	}
	if err := s.DB.CreateRuntime(ctx, rt); err != nil {
		return nil, 0, err
	}
	if err := s.Engine.CreateRuntime(ctx, rt.ID); err != nil {
		_ = s.DB.UpdateRuntime(ctx, rt.ID, map[string]any{"status": db.StatusError})
		return nil, 0, err
	}
	return renderRuntime(rt), http.StatusCreated, nil
}

// checkRuntimeIdle refuses an image change while any function of the
// runtime has workers: they run the old image and would be cut off mid-call.
func (s *Server) checkRuntimeIdle(ctx context.Context, runtimeID string) error {
	fs, err := s.DB.Functions(ctx, db.Internal, db.ListOptions{Filters: []db.Filter{{Column: "runtime_id", Op: "eq", Values: []string{runtimeID}}}})
	if err != nil {
		return err
	}
	for _, f := range fs {
		ws, err := s.Coord.Workers(ctx, coord.FunctionVersion{FunctionID: f.ID})
		if err != nil {
			return err
		}
		if len(ws) > 0 {
			return errdefs.Forbidden("Runtime %s is still in use by functions.", runtimeID)
		}
	}
	return nil
}

func checkLen(field string, v *string, n int) error {
	if v != nil && len(*v) > n {
		return errdefs.Invalid("%s is longer than %d characters.", field, n)
	}
	return nil
}

func (s *Server) listRuntimes(w http.ResponseWriter, r *http.Request) (any, int, error) {
	return listOf[db.Runtime](s, w, r, "runtimes", runtimeParams, "", renderRuntime)
}

func (s *Server) getRuntime(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	id, err := pathID(r)
	if err != nil {
		return nil, 0, err
	}
	_, scope := caller(r.Context())
	rt, err := s.DB.Runtime(r.Context(), scope, id)
	if err != nil {
		return nil, 0, err
	}
	return renderRuntime(rt), http.StatusOK, nil
}

// updateRuntime changes name and description. Changing the image rolls the
// pool, which comes with the full admin API.
func (s *Server) updateRuntime(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	ctx := r.Context()
	if err := policy.Enforce(ctx, policy.RuntimeUpdate); err != nil {
		return nil, 0, err
	}
	id, err := pathID(r)
	if err != nil {
		return nil, 0, err
	}
	var req runtimeRequest
	if err := s.decodeJSON(r, &req); err != nil {
		return nil, 0, err
	}
	if req.readOnlySet() {
		return nil, 0, errdefs.Invalid("Cannot set read only field.")
	}
	_, scope := caller(ctx)
	rt, err := s.DB.Runtime(ctx, scope, id)
	if err != nil {
		return nil, 0, err
	}
	values := map[string]any{}
	if req.Name.Set {
		values["name"] = req.Name.Value
	}
	if req.Description.Set {
		values["description"] = req.Description.Value
	}
	var roll *engine.UpdateRuntimeArgs
	if req.Image.Value != nil && strings.TrimSpace(*req.Image.Value) != rt.Image {
		image := strings.TrimSpace(*req.Image.Value)
		if image == "" || len(image) > 255 {
			return nil, 0, errdefs.Invalid("image must be 1 to 255 characters.")
		}
		if err := rt.CheckAvailable(); err != nil {
			return nil, 0, err
		}
		if err := s.checkRuntimeIdle(ctx, id); err != nil {
			return nil, 0, err
		}
		values["image"], values["status"] = image, db.StatusUpgrading
		roll = &engine.UpdateRuntimeArgs{RuntimeID: id, Image: image, PreImage: rt.Image}
	}
	if len(values) > 0 {
		if err := s.DB.UpdateRuntime(ctx, id, values); err != nil {
			return nil, 0, err
		}
	}
	if roll != nil {
		if err := s.Engine.UpdateRuntime(ctx, *roll); err != nil {
			_ = s.DB.UpdateRuntime(context.WithoutCancel(ctx), id, map[string]any{"image": roll.PreImage, "status": db.StatusAvailable})
			return nil, 0, err
		}
	}
	rt, err = s.DB.Runtime(ctx, scope, id)
	if err != nil {
		return nil, 0, err
	}
	return renderRuntime(rt), http.StatusOK, nil
}

func (s *Server) deleteRuntime(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	ctx := r.Context()
	if err := policy.Enforce(ctx, policy.RuntimeDelete); err != nil {
		return nil, 0, err
	}
	id, err := pathID(r)
	if err != nil {
		return nil, 0, err
	}
	_, scope := caller(ctx)
	if _, err := s.DB.Runtime(ctx, scope, id); err != nil {
		return nil, 0, err
	}
	inUse, err := s.DB.RuntimeInUse(ctx, id)
	if err != nil {
		return nil, 0, err
	}
	if inUse {
		return nil, 0, errdefs.Forbidden("Runtime %s is still in use.", id)
	}
	if err := s.DB.UpdateRuntime(ctx, id, map[string]any{"status": db.StatusDeleting}); err != nil {
		return nil, 0, err
	}
	if err := s.Engine.DeleteRuntime(ctx, id); err != nil {
		return nil, 0, err
	}
	return nil, http.StatusNoContent, nil
}

func (s *Server) getRuntimePool(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	ctx := r.Context()
	if err := policy.Enforce(ctx, policy.RuntimePoolGetAll); err != nil {
		return nil, 0, err
	}
	id, err := pathID(r)
	if err != nil {
		return nil, 0, err
	}
	cp, err := s.Engine.RuntimePool(ctx, id)
	if err != nil {
		if errors.Is(err, errdefs.ErrNotFound) {
			return nil, 0, errdefs.NotFound("Runtime not found [id=%s]", id)
		}
		return nil, 0, err
	}
	return map[string]any{"name": id, "capacity": cp}, http.StatusOK, nil
}
