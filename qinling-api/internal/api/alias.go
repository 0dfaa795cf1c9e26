package api

import (
	"net/http"
	"strings"

	"github.com/qinling-go/qinling/pkg/db"
	"github.com/qinling-go/qinling/pkg/errdefs"
	"github.com/qinling-go/qinling/pkg/policy"
	"github.com/qinling-go/qinling/pkg/reqctx"
)

type aliasView struct {
	ID              string  `json:"id"`
	Name            string  `json:"name"`
	Description     *string `json:"description"`
	FunctionID      string  `json:"function_id"`
	FunctionVersion int     `json:"function_version"`
	ProjectID       string  `json:"project_id"`
	CreatedAt       string  `json:"created_at"`
	UpdatedAt       *string `json:"updated_at"`
}

func renderAlias(a *db.FunctionAlias) aliasView {
	return aliasView{
		ID: a.ID, Name: a.Name, Description: a.Description, FunctionID: a.FunctionID,
		FunctionVersion: a.FunctionVersion, ProjectID: a.ProjectID,
		CreatedAt: timestr(a.CreatedAt), UpdatedAt: optTime(a.UpdatedAt),
	}
}

type aliasRequest struct {
	Name            optString `json:"name"`
	FunctionID      optString `json:"function_id"`
	FunctionVersion flexInt   `json:"function_version"`
	Description     optString `json:"description"`
}

// checkTarget makes sure a function version exists for the caller; upstream
// accepted aliases, jobs and webhooks pointing at nothing.
func (s *Server) checkTarget(r *http.Request, functionID string, version int) (*db.Function, error) {
	f, err := s.DB.Function(r.Context(), readScope(r.Context()), functionID)
	if err != nil {
		return nil, err
	}
	if version < 0 {
		return nil, errdefs.Invalid("function_version must not be negative.")
	}
	if version > 0 {
		if _, err := s.DB.FunctionVersion(r.Context(), db.Internal, functionID, version); err != nil {
			return nil, err
		}
	}
	return f, nil
}

func (s *Server) createAlias(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	ctx := r.Context()
	var req aliasRequest
	if err := s.decodeJSON(r, &req); err != nil {
		return nil, 0, err
	}
	var missing []string
	if req.Name.Value == nil || strings.TrimSpace(*req.Name.Value) == "" {
		missing = append(missing, "'name'")
	}
	if req.FunctionID.Value == nil || *req.FunctionID.Value == "" {
		missing = append(missing, "'function_id'")
	}
	if len(missing) > 0 {
		return nil, 0, errdefs.Invalid("Required param is missing. Required: {%s}", strings.Join(missing, ", "))
	}
	if err := checkLen("name", req.Name.Value, 255); err != nil {
		return nil, 0, err
	}
	if err := checkLen("description", req.Description.Value, 255); err != nil {
		return nil, 0, err
	}
	f, err := s.checkTarget(r, *req.FunctionID.Value, req.FunctionVersion.Value)
	if err != nil {
		return nil, 0, err
	}
	a := &db.FunctionAlias{
		Base: db.Base{ProjectID: reqctx.From(ctx).ProjectID}, Name: *req.Name.Value,
		FunctionID: f.ID, FunctionVersion: req.FunctionVersion.Value, Description: req.Description.Value,
	}
	if err := s.DB.CreateFunctionAlias(ctx, a); err != nil {
		return nil, 0, err
	}
	return renderAlias(a), http.StatusCreated, nil
}

func (s *Server) listAliases(w http.ResponseWriter, r *http.Request) (any, int, error) {
	return listOf[db.FunctionAlias](s, w, r, "function_aliases", aliasParams, policy.FunctionVersionGetAllAllProjects, renderAlias)
}

// alias is the alias the path names, in aliasProject.
func (s *Server) alias(r *http.Request) (*db.FunctionAlias, error) {
	project, err := aliasProject(r)
	if err != nil {
		return nil, err
	}
	return s.DB.FunctionAlias(r.Context(), project, r.PathValue("name"))
}

// aliasProject is the project an alias name is looked up in: the caller's
// own, admins included — upstream let an admin's name reach the oldest alias
// of that name in any project, so an admin ran, changed and deleted other
// projects' aliases unawares. An admin (who may list every project's
// aliases) names another project with ?project_id=; anyone else asking for
// another project is refused rather than silently given their own alias.
func aliasProject(r *http.Request) (string, error) {
	own := reqctx.From(r.Context()).ProjectID
	p := r.URL.Query().Get("project_id")
	if p == "" || p == own {
		return own, nil
	}
	if err := policy.Enforce(r.Context(), policy.FunctionVersionGetAllAllProjects); err != nil {
		return "", err
	}
	return p, nil
}

func (s *Server) getAlias(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	a, err := s.alias(r)
	if err != nil {
		return nil, 0, err
	}
	return renderAlias(a), http.StatusOK, nil
}

func (s *Server) updateAlias(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	ctx := r.Context()
	var req aliasRequest
	if err := s.decodeJSON(r, &req); err != nil {
		return nil, 0, err
	}
	a, err := s.alias(r)
	if err != nil {
		return nil, 0, err
	}
	values := map[string]any{}
	functionID, version := a.FunctionID, a.FunctionVersion
	if req.FunctionID.Value != nil && *req.FunctionID.Value != "" {
		functionID = *req.FunctionID.Value
	}
	if req.FunctionVersion.Set {
		version = req.FunctionVersion.Value
	}
	if functionID != a.FunctionID || version != a.FunctionVersion {
		if _, err := s.checkTarget(r, functionID, version); err != nil {
			return nil, 0, err
		}
		values["function_id"], values["function_version"] = functionID, version
	}
	if req.Description.Value != nil {
		if err := checkLen("description", req.Description.Value, 255); err != nil {
			return nil, 0, err
		}
		values["description"] = *req.Description.Value
	}
	if len(values) > 0 {
		if err := s.DB.UpdateFunctionAlias(ctx, a.ID, values); err != nil {
			return nil, 0, err
		}
	}
	a, err = s.DB.FunctionAlias(ctx, a.ProjectID, a.Name)
	if err != nil {
		return nil, 0, err
	}
	return renderAlias(a), http.StatusOK, nil
}

func (s *Server) deleteAlias(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	a, err := s.alias(r)
	if err != nil {
		return nil, 0, err
	}
	if err := s.DB.DeleteFunctionAlias(r.Context(), a.ID); err != nil {
		return nil, 0, err
	}
	return nil, http.StatusNoContent, nil
}
