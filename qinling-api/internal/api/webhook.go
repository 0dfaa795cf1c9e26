package api

import (
	"encoding/json"
	"io"
	"mime"
	"net/http"

	"github.com/qinling-go/qinling/pkg/db"
	"github.com/qinling-go/qinling/pkg/errdefs"
	"github.com/qinling-go/qinling/pkg/execution"
	"github.com/qinling-go/qinling/pkg/policy"
	"github.com/qinling-go/qinling/pkg/reqctx"
)

type webhookView struct {
	ID              string  `json:"id"`
	FunctionAlias   *string `json:"function_alias"`
	FunctionID      *string `json:"function_id"`
	FunctionVersion *int    `json:"function_version"`
	Description     *string `json:"description"`
	ProjectID       string  `json:"project_id"`
	CreatedAt       string  `json:"created_at"`
	UpdatedAt       *string `json:"updated_at"`
	WebhookURL      string  `json:"webhook_url"`
}

func (s *Server) renderWebhook(w *db.Webhook) webhookView {
	return webhookView{
		ID: w.ID, FunctionAlias: w.FunctionAlias, FunctionID: w.FunctionID, FunctionVersion: w.FunctionVersion,
		Description: w.Description, ProjectID: w.ProjectID, CreatedAt: timestr(w.CreatedAt), UpdatedAt: optTime(w.UpdatedAt),
		WebhookURL: s.Endpoint + "/v1/webhooks/" + w.ID + "/invoke",
	}
}

type webhookRequest struct {
	FunctionID      optString `json:"function_id"`
	FunctionVersion flexInt   `json:"function_version"`
	FunctionAlias   optString `json:"function_alias"`
	Description     optString `json:"description"`
}

// ownTarget checks a webhook's target: the function must be the caller's
// own (even for admins, as upstream) and the version must exist.
func (s *Server) ownTarget(r *http.Request, functionID string, version int) error {
	_, scope := caller(r.Context())
	if _, err := s.DB.Function(r.Context(), scope, functionID); err != nil {
		return err
	}
	if version < 0 {
		return errdefs.Invalid("function_version must not be negative.")
	}
	if version > 0 {
		_, err := s.DB.FunctionVersion(r.Context(), db.Internal, functionID, version)
		return err
	}
	return nil
}

func (s *Server) createWebhook(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	ctx := r.Context()
	var req webhookRequest
	if err := s.decodeJSON(r, &req); err != nil {
		return nil, 0, err
	}
	if err := checkLen("description", req.Description.Value, 255); err != nil {
		return nil, 0, err
	}
	w := &db.Webhook{Base: db.Base{ProjectID: reqctx.From(ctx).ProjectID}, Description: req.Description.Value}
	switch {
	case req.FunctionAlias.Value != nil && *req.FunctionAlias.Value != "":
		a, err := s.DB.FunctionAlias(ctx, w.ProjectID, *req.FunctionAlias.Value)
		if err != nil {
			return nil, 0, err
		}
		w.FunctionAlias = &a.Name
	case req.FunctionID.Value != nil && *req.FunctionID.Value != "":
		if err := s.ownTarget(r, *req.FunctionID.Value, req.FunctionVersion.Value); err != nil {
			return nil, 0, err
		}
		// A missing version is version 0 (upstream stored null and then
		// failed every invocation).
		v := req.FunctionVersion.Value
		w.FunctionID, w.FunctionVersion = req.FunctionID.Value, &v
	default:
		return nil, 0, errdefs.Invalid("Either function_alias or function_id must be provided.")
	}
	if err := s.DB.CreateWebhook(ctx, w); err != nil {
		return nil, 0, err
	}
	return s.renderWebhook(w), http.StatusCreated, nil
}

func (s *Server) listWebhooks(w http.ResponseWriter, r *http.Request) (any, int, error) {
	return listOf[db.Webhook](s, w, r, "webhooks", webhookParams, policy.WebhookGetAllAllProjects, s.renderWebhook)
}

func (s *Server) webhook(r *http.Request) (*db.Webhook, error) {
	return readable(r, s.DB.Webhook)
}

func (s *Server) getWebhook(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	return shown(r, s.webhook, s.renderWebhook)
}

func (s *Server) updateWebhook(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	ctx := r.Context()
	var req webhookRequest
	if err := s.decodeJSON(r, &req); err != nil {
		return nil, 0, err
	}
	id, err := pathID(r)
	if err != nil {
		return nil, 0, err
	}
	_, scope := caller(ctx)
	w, err := s.DB.Webhook(ctx, scope, id)
	if err != nil {
		return nil, 0, err
	}
	values := map[string]any{}
	if req.Description.Value != nil {
		if err := checkLen("description", req.Description.Value, 255); err != nil {
			return nil, 0, err
		}
		values["description"] = *req.Description.Value
	}
	switch {
	case req.FunctionAlias.Value != nil && *req.FunctionAlias.Value != "" &&
		(w.FunctionAlias == nil || *w.FunctionAlias != *req.FunctionAlias.Value):
		a, err := s.DB.FunctionAlias(ctx, w.ProjectID, *req.FunctionAlias.Value)
		if err != nil {
			return nil, 0, err
		}
		values["function_alias"], values["function_id"], values["function_version"] = a.Name, nil, nil
	case (req.FunctionID.Value != nil && *req.FunctionID.Value != "") || req.FunctionVersion.Set:
		// Only the fields given change; the rest comes from the webhook or,
		// for an alias webhook, from what the alias points at now.
		functionID, version := "", 0
		if w.FunctionID != nil {
			functionID = *w.FunctionID
		}
		if w.FunctionVersion != nil {
			version = *w.FunctionVersion
		}
		if w.FunctionAlias != nil && functionID == "" {
			if a, err := s.DB.FunctionAlias(ctx, w.ProjectID, *w.FunctionAlias); err == nil {
				functionID, version = a.FunctionID, a.FunctionVersion
			}
		}
		if req.FunctionID.Value != nil && *req.FunctionID.Value != "" {
			functionID = *req.FunctionID.Value
		}
		if req.FunctionVersion.Set {
			version = req.FunctionVersion.Value
		}
		if functionID == "" {
			return nil, 0, errdefs.Invalid("function_id must be provided to change the function version of this webhook.")
		}
		if err := s.ownTarget(r, functionID, version); err != nil {
			return nil, 0, err
		}
		values["function_id"], values["function_version"], values["function_alias"] = functionID, version, nil
	}
	if len(values) > 0 {
		if err := s.DB.UpdateWebhook(ctx, w.ID, values); err != nil {
			return nil, 0, err
		}
	}
	w, err = s.DB.Webhook(ctx, scope, id)
	if err != nil {
		return nil, 0, err
	}
	return s.renderWebhook(w), http.StatusOK, nil
}

func (s *Server) deleteWebhook(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	w, err := s.webhook(r)
	if err != nil {
		return nil, 0, err
	}
	if err := s.DB.DeleteWebhook(r.Context(), w.ID); err != nil {
		return nil, 0, err
	}
	return nil, http.StatusNoContent, nil
}

// invokeWebhook runs the webhook's function asynchronously, without a token:
// the execution belongs to the webhook's project. Every request parameter
// (query, form fields or JSON object members) becomes the input object.
func (s *Server) invokeWebhook(w http.ResponseWriter, r *http.Request) (any, int, error) {
	id, err := pathID(r)
	if err != nil {
		return nil, 0, err
	}
	hook, err := s.DB.Webhook(r.Context(), db.Internal, id)
	if err != nil {
		return nil, 0, err
	}
	input, err := s.webhookInput(w, r)
	if err != nil {
		return nil, 0, err
	}
	tr := execution.Trigger{
		Project: hook.ProjectID, RequestID: reqctx.From(r.Context()).RequestID,
		Alias: hook.FunctionAlias, FunctionID: hook.FunctionID,
		Input: &input, Description: "Created by Webhook " + hook.ID, Kind: db.TriggerWebhook,
	}
	if hook.FunctionVersion != nil {
		tr.Version = *hook.FunctionVersion
	}
	e, err := s.Executions.StartTriggered(r.Context(), tr)
	if err != nil {
		return nil, 0, err
	}
	return map[string]string{"execution_id": e.ID}, http.StatusAccepted, nil
}

// webhookInput gathers the request's parameters into a JSON object.
func (s *Server) webhookInput(w http.ResponseWriter, r *http.Request) (string, error) {
	params := map[string]any{}
	for k, vs := range r.URL.Query() {
		params[k] = vs[len(vs)-1]
	}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch mt {
	case "application/json":
		var obj map[string]any
		if err := s.decodeJSON(r, &obj); err != nil {
			return "", err
		}
		for k, v := range obj {
			params[k] = v
		}
	case "application/x-www-form-urlencoded", "multipart/form-data":
		r.Body = http.MaxBytesReader(w, r.Body, s.Limits.MaxBodySize)
		if err := r.ParseMultipartForm(s.Limits.MaxBodySize); err != nil && err != http.ErrNotMultipart {
			return "", formError(err, s.Limits.MaxBodySize)
		}
		for k, vs := range r.PostForm {
			params[k] = vs[len(vs)-1]
		}
	default:
		// Any other body is passed whole, as the positional argument would be.
		b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.Limits.MaxBodySize))
		if err != nil {
			return "", formError(err, s.Limits.MaxBodySize)
		}
		if len(b) > 0 {
			params["body"] = string(b)
		}
	}
	b, err := json.Marshal(params)
	if err != nil {
		return "", errdefs.Invalid("Webhook input cannot be encoded: %v", err)
	}
	return string(b), nil
}
