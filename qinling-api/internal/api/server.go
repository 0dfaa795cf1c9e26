// Package api is qinling-api's HTTP layer: routes, middleware (request IDs,
// identity, recovery), request decoding and the wire rendering of upstream
// Qinling's v1 API. Handlers return (value, status, error); one function,
// respond, writes every answer, and errors become JSON with faultstring.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/qinling-go/qinling/pkg/coord"
	"github.com/qinling-go/qinling/pkg/db"
	"github.com/qinling-go/qinling/pkg/engine"
	"github.com/qinling-go/qinling/pkg/errdefs"
	"github.com/qinling-go/qinling/pkg/execution"
	"github.com/qinling-go/qinling/pkg/metrics"
	"github.com/qinling-go/qinling/pkg/policy"
	"github.com/qinling-go/qinling/pkg/reqctx"
	"github.com/qinling-go/qinling/storage"
	"github.com/qinling-go/qinling/storage/swiftcode"
)

// Limits are the request and resource bounds the API enforces.
type Limits struct {
	MaxBodySize    int64
	MaxPackageSize int64
	DefaultCPU     int
	MinCPU         int
	MaxCPU         int
	DefaultMemory  int64
	MinMemory      int64
	MaxMemory      int64
	DefaultTimeout int
	MinTimeout     int
	MaxTimeout     int
	// DefaultPageSize is a list's page size when the request has no limit,
	// MaxPageSize the largest page; 0 leaves lists unpaged.
	DefaultPageSize int
	MaxPageSize     int
	// MinWorkers and MaxWorkers are [engine] min_workers_per_function and
	// max_workers_per_function, what a function's own bounds default to
	// (workerlimits.go).
	MinWorkers, MaxWorkers int
}

// Authenticator turns a request into an identity, or an error: unauthorized
// (401) when the caller's credentials are missing or bad, unavailable (503)
// when they cannot be checked now. The no-auth one gives everyone upstream's
// project "default"; pkg/keystone's Validator checks Keystone tokens.
type Authenticator interface {
	Authenticate(r *http.Request) (reqctx.Identity, error)
}

// Challenger is an Authenticator that tells clients where to get
// credentials: its Challenge is sent as WWW-Authenticate with every 401.
type Challenger interface {
	Challenge() string
}

// NoAuth is the authenticator of auth_enable = false.
type NoAuth struct{}

// Authenticate returns the default project's identity.
func (NoAuth) Authenticate(*http.Request) (reqctx.Identity, error) {
	return reqctx.Identity{ProjectID: reqctx.DefaultProject}, nil
}

// Server serves the v1 API.
type Server struct {
	DB     *db.DB
	Engine engine.Client
	// Executions starts executions (executions API and webhooks); the job
	// handler of pkg/jobs shares it.
	Executions *execution.Starter
	Coord      coord.Coordinator
	Storage    storage.PackageStorage
	// Swift reaches the objects of swift functions; nil when
	// authentication is off (no token to read them with: upstream's 400).
	Swift    swiftcode.Source
	Auth     Authenticator
	Limits   Limits
	Endpoint string // public URL, for links
	Log      *slog.Logger
	// ImageFunctions is set when the engines' orchestrator runs image
	// functions ([engine] orchestrator = kubernetes); otherwise creating
	// one is refused.
	ImageFunctions bool
	// Metrics, when set, counts and times every request by its route
	// (qinling-api/internal/app serves them at /metrics).
	Metrics *metrics.Metrics
}

type handlerFunc func(w http.ResponseWriter, r *http.Request) (any, int, error)

// Handler returns the API's http.Handler.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	open := func(pattern string, h handlerFunc) { mux.Handle(pattern, s.wrap(h, false)) }
	authed := func(pattern string, h handlerFunc) { mux.Handle(pattern, s.wrap(h, true)) }

	// The only routes without authentication, as upstream's AuthHook
	// exemptions: version discovery (the middleware has already turned
	// /v1/ into /v1) and webhook invocation, whose URL is its credential.
	// Everything else, including unknown paths, needs a token.
	open("GET /{$}", s.root)
	open("GET /v1", s.v1root)
	open("POST /v1/webhooks/{id}/invoke", s.invokeWebhook)

	authed("POST /v1/runtimes", s.createRuntime)
	authed("GET /v1/runtimes", s.listRuntimes)
	authed("GET /v1/runtimes/{id}", s.getRuntime)
	authed("PUT /v1/runtimes/{id}", s.updateRuntime)
	authed("DELETE /v1/runtimes/{id}", s.deleteRuntime)
	authed("GET /v1/runtimes/{id}/pool", s.getRuntimePool)

	authed("POST /v1/functions", s.createFunction)
	authed("GET /v1/functions", s.listFunctions)
	authed("GET /v1/functions/{id}", s.getFunction)
	authed("PUT /v1/functions/{id}", s.updateFunction)
	authed("DELETE /v1/functions/{id}", s.deleteFunction)

	authed("POST /v1/functions/{id}/scale_up", s.scale(true))
	authed("POST /v1/functions/{id}/scale_down", s.scale(false))
	authed("POST /v1/functions/{id}/detach", s.detach)
	authed("GET /v1/functions/{id}/workers", s.listWorkers)

	authed("POST /v1/functions/{id}/versions", s.createVersion)
	authed("GET /v1/functions/{id}/versions", s.listVersions)
	authed("GET /v1/functions/{id}/versions/{n}", s.getVersion)
	authed("DELETE /v1/functions/{id}/versions/{n}", s.deleteVersion)
	authed("POST /v1/functions/{id}/versions/{n}/scale_up", s.scale(true))
	authed("POST /v1/functions/{id}/versions/{n}/scale_down", s.scale(false))
	authed("POST /v1/functions/{id}/versions/{n}/detach", s.detach)

	authed("POST /v1/aliases", s.createAlias)
	authed("GET /v1/aliases", s.listAliases)
	authed("GET /v1/aliases/{name}", s.getAlias)
	authed("PUT /v1/aliases/{name}", s.updateAlias)
	authed("DELETE /v1/aliases/{name}", s.deleteAlias)

	authed("POST /v1/jobs", s.createJob)
	authed("GET /v1/jobs", s.listJobs)
	authed("GET /v1/jobs/{id}", s.getJob)
	authed("PUT /v1/jobs/{id}", s.updateJob)
	authed("DELETE /v1/jobs/{id}", s.deleteJob)

	authed("POST /v1/webhooks", s.createWebhook)
	authed("GET /v1/webhooks", s.listWebhooks)
	authed("GET /v1/webhooks/{id}", s.getWebhook)
	authed("PUT /v1/webhooks/{id}", s.updateWebhook)
	authed("DELETE /v1/webhooks/{id}", s.deleteWebhook)

	authed("POST /v1/executions", s.createExecution)
	authed("GET /v1/executions", s.listExecutions)
	authed("GET /v1/executions/{id}", s.getExecution)
	authed("GET /v1/executions/{id}/log", s.getExecutionLog)
	authed("DELETE /v1/executions/{id}", s.deleteExecution)

	authed("GET /v1/usage", s.getUsage)

	// Anything else is a JSON error: the CLI crashes on a text/plain one.
	// It is authenticated like upstream, which checked the token before
	// routing, so callers without a token cannot probe for routes.
	authed("/", func(w http.ResponseWriter, r *http.Request) (any, int, error) {
		if allow := allowedMethods(mux, r); len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			return nil, 0, errdefs.New(errdefs.KindMethodNotAllowed, "Method %s is not allowed on %s; allowed: %s.",
				r.Method, r.URL.Path, strings.Join(allow, ", "))
		}
		return nil, 0, errdefs.NotFound("Resource not found: %s %s", r.Method, r.URL.Path)
	})
	// Inside the middleware, on the request the mux routes: the route
	// template it matched labels the request's metrics.
	return s.middleware(s.Metrics.InstrumentHTTP(mux))
}

// routeMethods are the methods the API's routes use.
var routeMethods = []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete}

// allowedMethods lists the methods that have a route for r's path: none for
// a path the API does not know (a 404), some for a wrong method (a 405).
func allowedMethods(mux *http.ServeMux, r *http.Request) []string {
	var allow []string
	for _, m := range routeMethods {
		probe := &http.Request{Method: m, URL: r.URL, Host: r.Host}
		if _, pattern := mux.Handler(probe); pattern != "/" && pattern != "" {
			allow = append(allow, m)
		}
	}
	if slices.Contains(allow, http.MethodGet) {
		allow = slices.Insert(allow, 1, http.MethodHead)
	}
	return allow
}

// middleware gives every request an ID, normalises trailing slashes (the CLI
// asks for /v1/functions/<id>/workers/?...), and recovers panics as JSON 500s.
func (s *Server) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rid := "req-" + uuid.NewString()
		w.Header().Set("X-Openstack-Request-Id", rid)
		if p := r.URL.Path; len(p) > 1 && strings.HasSuffix(p, "/") {
			r.URL.Path = strings.TrimRight(p, "/")
			if r.URL.Path == "" {
				r.URL.Path = "/"
			}
		}
		ctx := reqctx.With(r.Context(), reqctx.Identity{RequestID: rid, ProjectID: reqctx.DefaultProject})
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		defer func() {
			p := recover()
			if p == http.ErrAbortHandler {
				// A streamed answer that cannot be finished (streamList):
				// net/http drops the connection, so the client sees a cut
				// answer rather than a complete-looking one.
				defer panic(p)
				rec.status = 0
			} else if p != nil {
				s.Log.Error("panic serving request", "request_id", rid, "panic", p, "stack", string(debug.Stack()))
				if !rec.wrote {
					writeError(rec, errdefs.New(errdefs.KindInternal, "internal error"))
				}
			}
			level := slog.LevelInfo
			if rec.status >= 500 {
				level = slog.LevelError
			}
			s.Log.Log(ctx, level, "request", "request_id", rid, "method", r.Method, "path", r.URL.Path,
				"status", rec.status, "duration_ms", float64(time.Since(start).Microseconds())/1000)
		}()
		next.ServeHTTP(rec, r.WithContext(ctx))
	})
}

type statusRecorder struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status, s.wrote = code, true
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	s.wrote = true
	return s.ResponseWriter.Write(b)
}

func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// wrap authenticates (when asked), calls h and writes its answer.
func (s *Server) wrap(h handlerFunc, authenticate bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if authenticate {
			id, err := s.Auth.Authenticate(r)
			if err != nil {
				if c, ok := s.Auth.(Challenger); ok && errdefs.KindOf(err) == errdefs.KindUnauthorized {
					w.Header().Set("WWW-Authenticate", c.Challenge())
				}
				s.fail(w, r, err)
				return
			}
			id.RequestID = reqctx.From(r.Context()).RequestID
			r = r.WithContext(reqctx.With(r.Context(), id))
		}
		v, status, err := h(w, r)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		respond(w, status, v)
	})
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	log := reqctx.Logger(r.Context(), s.Log)
	if errdefs.HTTPStatus(err) >= 500 {
		log.Error("request failed", "error", err)
	} else {
		log.Debug("request rejected", "error", err)
	}
	writeError(w, err)
}

// respond writes v as JSON. A nil v with 204 writes no body at all, as the
// clients (tempest) require; raw bodies (logs, downloads) are written by the
// handler itself, which then returns status 0.
func respond(w http.ResponseWriter, status int, v any) {
	switch {
	case status == 0:
		return
	case status == http.StatusNoContent || v == nil:
		// 204s, and upstream's empty 202s (scale, detach), have no body.
		w.WriteHeader(status)
		return
	}
	b, err := json.Marshal(v)
	if err != nil {
		writeError(w, errdefs.Wrap(errdefs.KindInternal, err, "encode response"))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// writeError writes upstream's error body: a JSON object with faultstring.
func writeError(w http.ResponseWriter, err error) {
	status := errdefs.HTTPStatus(err)
	code := "Client"
	if status >= 500 {
		code = "Server"
	}
	b, _ := json.Marshal(map[string]any{"faultcode": code, "faultstring": errdefs.PublicMessage(err), "debuginfo": nil})
	if d := errdefs.RetryAfter(err); d > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(d.Seconds()))))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func (s *Server) root(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	return map[string]any{"versions": []any{map[string]any{
		"id": "v1.0", "status": "CURRENT",
		"links": []any{map[string]string{"href": s.baseURL(r) + "/v1", "target": "v1", "rel": "self"}},
	}}}, http.StatusOK, nil
}

func (s *Server) v1root(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	return map[string]string{"uri": s.baseURL(r) + "/v1"}, http.StatusOK, nil
}

// baseURL is the URL the client used to reach us, as upstream's
// application_url.
func (s *Server) baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return fmt.Sprintf("%s://%s", scheme, r.Host)
}

// caller returns the identity and its default scope.
func caller(ctx context.Context) (reqctx.Identity, db.Scope) {
	id := reqctx.From(ctx)
	return id, db.Scope{ProjectID: id.ProjectID}
}

// readScope is the scope of by-ID reads: admins may read any project's
// objects, as upstream.
func readScope(ctx context.Context) db.Scope {
	id, s := caller(ctx)
	s.All = id.IsAdmin()
	return s
}

// listScope applies all_projects and project_id to a list; allProjects is the
// resource's "<resource>:get_all:all_projects" policy action. Callers that
// pass it (admins) may list every project or one named project; for others
// all_projects is refused and project_id ignored (upstream crashed there).
// Without either, everyone, admins included, lists their own project.
func listScope(r *http.Request, allProjects policy.Action) (db.Scope, error) {
	_, s := caller(r.Context())
	q := r.URL.Query()
	all := false
	if v := q.Get("all_projects"); v != "" {
		b, ok := parseBool(v)
		if !ok {
			return s, errdefs.Invalid("Invalid value for all_projects: %q.", v)
		}
		all = b
	}
	if all {
		if err := policy.Enforce(r.Context(), allProjects); err != nil {
			return s, err
		}
		s.All = true
	}
	if p := q.Get("project_id"); p != "" {
		switch err := policy.Enforce(r.Context(), allProjects); {
		case err == nil:
			s = db.Scope{ProjectID: p}
		case !errors.Is(err, errdefs.ErrForbidden):
			return s, err
		}
	}
	return s, nil
}

// parseBool follows oslo's bool_from_string.
func parseBool(v string) (bool, bool) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "1", "t", "true", "on", "y", "yes":
		return true, true
	case "0", "f", "false", "off", "n", "no":
		return false, true
	}
	return false, false
}

// pathID returns the {id} path value after checking it is a UUID; the CLI
// treats anything else as a name, so only scripts send such ids.
func pathID(r *http.Request) (string, error) {
	id := r.PathValue("id")
	if _, err := uuid.Parse(id); err != nil || len(id) != 36 {
		return "", errdefs.Invalid("Invalid input for field/attribute id. Value: '%s'. Expected a UUID.", id)
	}
	return strings.ToLower(id), nil
}

// readable loads the resource the path's {id} names, as far as the caller
// may read it (admins: any project, as upstream).
func readable[T any](r *http.Request, load func(context.Context, db.Scope, string) (*T, error)) (*T, error) {
	id, err := pathID(r)
	if err != nil {
		return nil, err
	}
	return load(r.Context(), readScope(r.Context()), id)
}

// shown answers a GET of one resource: what load finds, rendered.
func shown[T, V any](r *http.Request, load func(*http.Request) (*T, error), render func(*T) V) (any, int, error) {
	v, err := load(r)
	if err != nil {
		return nil, 0, err
	}
	return render(v), http.StatusOK, nil
}
