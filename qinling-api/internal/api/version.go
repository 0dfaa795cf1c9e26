package api

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/qinling-go/qinling/pkg/db"
	"github.com/qinling-go/qinling/pkg/errdefs"
	"github.com/qinling-go/qinling/pkg/reqctx"
)

type versionView struct {
	ID            string  `json:"id"`
	Description   *string `json:"description"`
	FunctionID    string  `json:"function_id"`
	VersionNumber int     `json:"version_number"`
	Count         int     `json:"count"`
	ProjectID     string  `json:"project_id"`
	CreatedAt     string  `json:"created_at"`
	UpdatedAt     *string `json:"updated_at"`
}

func renderVersion(v *db.FunctionVersion) versionView {
	return versionView{
		ID: v.ID, Description: v.Description, FunctionID: v.FunctionID, VersionNumber: v.VersionNumber,
		Count: v.Count, ProjectID: v.ProjectID, CreatedAt: timestr(v.CreatedAt), UpdatedAt: optTime(v.UpdatedAt),
	}
}

// versionNumber reads the {n} path value; upstream answered 500 for a
// non-integer.
func versionNumber(r *http.Request) (int, error) {
	raw := r.PathValue("n")
	n, err := strconv.Atoi(raw)
	if err != nil || n < 0 {
		return 0, errdefs.Invalid("Invalid function version %q: a non-negative integer is required.", raw)
	}
	return n, nil
}

// ownFunction is the function named by the path in the caller's own project:
// versions are created and deleted by the owner only, even by admins.
func (s *Server) ownFunction(r *http.Request) (*db.Function, error) {
	id, err := pathID(r)
	if err != nil {
		return nil, err
	}
	_, scope := caller(r.Context())
	return s.DB.Function(r.Context(), scope, id)
}

type versionRequest struct {
	Description optString `json:"description"`
}

func (s *Server) createVersion(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	ctx := r.Context()
	var req versionRequest
	if err := s.decodeJSON(r, &req); err != nil {
		return nil, 0, err
	}
	if err := checkLen("description", req.Description.Value, 255); err != nil {
		return nil, 0, err
	}
	f, err := s.ownFunction(r)
	if err != nil {
		return nil, 0, err
	}
	code := f.ParsedCode()
	if code.Source != db.SourcePackage {
		return nil, 0, errdefs.Forbidden("Function versioning only allowed for package type function.")
	}
	// One version at a time per function, across API processes.
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	unlock, err := s.Coord.Lock(lctx, "function_version_"+f.ID)
	if err != nil {
		return nil, 0, err
	}
	defer unlock()
	if f, err = s.DB.Function(ctx, db.Internal, f.ID); err != nil {
		return nil, 0, err
	}
	if f.LatestVersion > 0 {
		changed, err := s.Storage.ChangedSince(ctx, f.ProjectID, f.ID, code.MD5Sum, f.LatestVersion)
		if err != nil {
			return nil, 0, storageError(err)
		}
		if !changed {
			return nil, 0, errdefs.Forbidden("Function package not changed since the latest version %d.", f.LatestVersion)
		}
	}
	if err := s.Storage.Copy(ctx, f.ProjectID, f.ID, code.MD5Sum, f.LatestVersion); err != nil {
		return nil, 0, storageError(err)
	}
	v, err := s.DB.CreateFunctionVersion(ctx, f, req.Description.Value)
	if err != nil {
		_ = s.Storage.Delete(context.WithoutCancel(ctx), f.ProjectID, f.ID, code.MD5Sum, f.LatestVersion+1)
		return nil, 0, err
	}
	return renderVersion(v), http.StatusCreated, nil
}

func (s *Server) listVersions(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	f, err := s.function(r)
	if err != nil {
		return nil, 0, err
	}
	vs, err := s.DB.FunctionVersions(r.Context(), db.Internal, f.ID)
	if err != nil {
		return nil, 0, err
	}
	out := make([]versionView, len(vs))
	for i := range vs {
		out[i] = renderVersion(&vs[i])
	}
	return map[string]any{"function_versions": out}, http.StatusOK, nil
}

// version returns the function and its version n named by the path.
func (s *Server) version(r *http.Request, scope func(context.Context) db.Scope) (*db.Function, *db.FunctionVersion, error) {
	id, err := pathID(r)
	if err != nil {
		return nil, nil, err
	}
	n, err := versionNumber(r)
	if err != nil {
		return nil, nil, err
	}
	f, err := s.DB.Function(r.Context(), scope(r.Context()), id)
	if err != nil {
		return nil, nil, err
	}
	v, err := s.DB.FunctionVersion(r.Context(), db.Internal, f.ID, n)
	if err != nil {
		return nil, nil, err
	}
	return f, v, nil
}

func ownScope(ctx context.Context) db.Scope {
	_, s := caller(ctx)
	return s
}

func (s *Server) getVersion(w http.ResponseWriter, r *http.Request) (any, int, error) {
	f, v, err := s.version(r, readScope)
	if err != nil {
		return nil, 0, err
	}
	if dl := r.URL.Query().Get("download"); dl != "" {
		download, ok := parseBool(dl)
		if !ok {
			return nil, 0, errdefs.Invalid("Invalid value for download: %q.", dl)
		}
		if download {
			return s.download(w, r, f, v.VersionNumber)
		}
	}
	return renderVersion(v), http.StatusOK, nil
}

func (s *Server) deleteVersion(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	ctx := r.Context()
	f, v, err := s.version(r, ownScope)
	if err != nil {
		return nil, 0, err
	}
	jobs, err := s.DB.ActiveJobs(ctx, f.ID, v.VersionNumber)
	if err != nil {
		return nil, 0, err
	}
	if jobs > 0 {
		return nil, 0, errdefs.Forbidden("The function version is still associated with running job(s).")
	}
	refs, err := s.DB.VersionReferences(ctx, f.ID, v.VersionNumber)
	if err != nil {
		return nil, 0, err
	}
	if refs.Webhooks > 0 {
		return nil, 0, errdefs.Forbidden("The function version is still associated with webhook.")
	}
	if refs.Aliases > 0 {
		return nil, 0, errdefs.Forbidden("The function version is still associated with alias.")
	}
	if err := s.Engine.DeleteFunction(ctx, f.ID, v.VersionNumber); err != nil {
		return nil, 0, err
	}
	if err := s.Storage.Delete(ctx, f.ProjectID, f.ID, f.ParsedCode().MD5Sum, v.VersionNumber); err != nil {
		reqctx.Logger(ctx, s.Log).Warn("delete version package", "function_id", f.ID, "version", v.VersionNumber, "error", err)
	}
	if err := s.DB.DeleteFunctionVersion(ctx, f.ID, v.VersionNumber); err != nil {
		return nil, 0, err
	}
	return nil, http.StatusNoContent, nil
}

// versionTarget resolves {id} and optional {n} for the admin operations;
// version 0 is the function itself.
func (s *Server) versionTarget(r *http.Request) (*db.Function, int, error) {
	f, err := s.function(r)
	if err != nil {
		return nil, 0, err
	}
	if r.PathValue("n") == "" {
		return f, 0, nil
	}
	n, err := versionNumber(r)
	if err != nil {
		return nil, 0, err
	}
	if n > 0 {
		if _, err := s.DB.FunctionVersion(r.Context(), db.Internal, f.ID, n); err != nil {
			return nil, 0, err
		}
	}
	return f, n, nil
}
