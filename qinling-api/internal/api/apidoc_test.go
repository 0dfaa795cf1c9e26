package api_test

// docs/api.md is hand-written prose around regions this file generates:
//
//	<!-- generated: GET /v1/runtimes/{id} -->
//	(who may call it, an example request and response, errors worth knowing)
//	<!-- end generated -->
//
// TestAPIDoc sends every example request to a real api.Server (SQLite, the
// real engine, the fake orchestrator), renders what came back with IDs,
// timestamps, md5s, timings and request IDs replaced by placeholders, and
// compares the regions with docs/api.md. With QINLING_WRITE_APIDOC=1 it
// rewrites the regions instead (scripts/apidoc.sh). It also fails when a
// route registered in this package has no region, so a new endpoint cannot
// go undocumented; TestAPIDoc_Access checks the "who may call" lines against
// a server with Keystone authentication.

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/config"
	"github.com/qinling-go/qinling/pkg/policy"
	"github.com/qinling-go/qinling/pkg/testutil"
)

const (
	apidocPath     = "../../../docs/api.md"
	apidocWriteEnv = "QINLING_WRITE_APIDOC"
	apidocRegen    = "run scripts/apidoc.sh (or: QINLING_WRITE_APIDOC=1 go test -run '^TestAPIDoc$' ./qinling-api/internal/api/) and review the diff"
	// apidocHost is the Host every example is sent with: the all-in-one's
	// address, so links the server builds from it read naturally.
	apidocHost     = "127.0.0.1:7070"
	apidocBoundary = "qinling-doc-boundary"
)

// docAccess is who may call a route: the "Who may call" line of its region.
type docAccess struct {
	open        bool          // no authentication at all
	admin       policy.Action // the admin-only rule; "" means any authenticated user
	allProjects policy.Action // a list's admin-only rule for all_projects and project_id
}

// docAccessOf has one entry per route, by its documented name (the mux
// pattern without "{$}"). TestAPIDoc_Access proves each entry.
var docAccessOf = map[string]docAccess{
	"GET /":                         {open: true},
	"GET /v1":                       {open: true},
	"POST /v1/webhooks/{id}/invoke": {open: true},

	"POST /v1/runtimes":                  {admin: policy.RuntimeCreate},
	"GET /v1/runtimes":                   {},
	"GET /v1/runtimes/{id}":              {},
	"PUT /v1/runtimes/{id}":              {admin: policy.RuntimeUpdate},
	"DELETE /v1/runtimes/{id}":           {admin: policy.RuntimeDelete},
	"GET /v1/runtimes/{id}/pool":         {admin: policy.RuntimePoolGetAll},
	"POST /v1/functions":                 {},
	"GET /v1/functions":                  {allProjects: policy.FunctionGetAllAllProjects},
	"GET /v1/functions/{id}":             {},
	"PUT /v1/functions/{id}":             {},
	"DELETE /v1/functions/{id}":          {},
	"POST /v1/functions/{id}/scale_up":   {admin: policy.FunctionScaleUp},
	"POST /v1/functions/{id}/scale_down": {admin: policy.FunctionScaleDown},
	"POST /v1/functions/{id}/detach":     {admin: policy.FunctionDetach},
	"GET /v1/functions/{id}/workers":     {admin: policy.FunctionWorkerGetAll},

	"POST /v1/functions/{id}/versions":                {},
	"GET /v1/functions/{id}/versions":                 {},
	"GET /v1/functions/{id}/versions/{n}":             {},
	"DELETE /v1/functions/{id}/versions/{n}":          {},
	"POST /v1/functions/{id}/versions/{n}/scale_up":   {admin: policy.FunctionVersionScaleUp},
	"POST /v1/functions/{id}/versions/{n}/scale_down": {admin: policy.FunctionVersionScaleDown},
	"POST /v1/functions/{id}/versions/{n}/detach":     {admin: policy.FunctionVersionDetach},

	"POST /v1/aliases":          {},
	"GET /v1/aliases":           {allProjects: policy.FunctionVersionGetAllAllProjects},
	"GET /v1/aliases/{name}":    {},
	"PUT /v1/aliases/{name}":    {},
	"DELETE /v1/aliases/{name}": {},

	"POST /v1/executions":         {},
	"GET /v1/executions":          {allProjects: policy.ExecutionGetAllAllProjects},
	"GET /v1/executions/{id}":     {},
	"GET /v1/executions/{id}/log": {},
	"DELETE /v1/executions/{id}":  {},

	"POST /v1/jobs":        {},
	"GET /v1/jobs":         {allProjects: policy.JobGetAllAllProjects},
	"GET /v1/jobs/{id}":    {},
	"PUT /v1/jobs/{id}":    {},
	"DELETE /v1/jobs/{id}": {},

	"POST /v1/webhooks":        {},
	"GET /v1/webhooks":         {allProjects: policy.WebhookGetAllAllProjects},
	"GET /v1/webhooks/{id}":    {},
	"PUT /v1/webhooks/{id}":    {},
	"DELETE /v1/webhooks/{id}": {},

	"GET /v1/usage": {allProjects: policy.UsageGetAllProjects},
}

func TestAPIDoc(t *testing.T) {
	regions := map[string]*docRegion{}

	// The all-in-one: no authentication, every caller is project "default".
	srv, _, _ := newAPI(t)
	docSrv := *srv
	docSrv.Endpoint = "http://" + apidocHost // the public URL in webhook_url and next links
	defaults := config.Default().API
	docSrv.Limits.DefaultPageSize, docSrv.Limits.MaxPageSize = defaults.DefaultPageSize, defaults.MaxPageSize
	ts := httptest.NewServer(docSrv.Handler())
	t.Cleanup(ts.Close)
	d := newDocRun(t, ts.URL, regions, "<token>")
	d.label("token", "all-in-one-ignores-this-token")
	d.scenario()

	// With Keystone: the 401 and 403 examples of the introduction.
	base, ks := newAuthServer(t)
	a := newDocRun(t, base, regions, "<member-token>")
	a.label("member-token", aliceToken)
	a.label("www_authenticate_uri", ks.URL)
	a.authScenario()

	if t.Failed() {
		return
	}
	syncDoc(t, regions, docRoutes(t))
}

// scenario is every example of the all-in-one, in the order it runs: each
// step sees the objects the earlier ones made, deletions come last.
func (d *docRun) scenario() {
	unknown := "6d2b0a9e-0000-4000-8000-000000000000"
	d.label("unknown-id", unknown)

	d.example("GET /", d.get("/").open(), 200)
	d.example("GET /v1", d.get("/v1/").open(), 200)

	// Runtimes.
	d.example("POST /v1/runtimes", d.json("POST", "/v1/runtimes",
		`{"name": "python3", "image": "openstackqinling/python3-runtime:0.0.2", "description": "Python 3"}`), 201,
		"id", "runtime-id")
	d.fails("POST /v1/runtimes", "there is no `image`", d.json("POST", "/v1/runtimes", `{"name": "python3"}`), 400)
	d.fails("POST /v1/runtimes", "a read-only field (`id`, `status`, `project_id`, `created_at`, `updated_at`) is set",
		d.json("POST", "/v1/runtimes", `{"image": "python3", "status": "available"}`), 400)
	d.fails("POST /v1/runtimes", "an attribute is unknown (here upstream's api-ref typo `is_public:`)",
		d.json("POST", "/v1/runtimes", `{"image": "python3", "is_public:": true}`), 400)
	d.fails("POST /v1/runtimes", "an attribute has the wrong type", d.json("POST", "/v1/runtimes", `{"image": "python3", "is_public": "yes"}`), 400)
	d.waitField("/v1/runtimes/<runtime-id>", "status", "available")

	d.example("GET /v1/runtimes", d.get("/v1/runtimes"), 200)
	d.fails("GET /v1/runtimes", "`limit` is not a positive integer", d.get("/v1/runtimes?limit=0"), 400)
	d.example("GET /v1/runtimes/{id}", d.get("/v1/runtimes/<runtime-id>"), 200)
	d.fails("GET /v1/runtimes/{id}", "the id is not a UUID (the CLI looks names up itself)", d.get("/v1/runtimes/python3"), 400)
	d.fails("GET /v1/runtimes/{id}", "there is no such runtime, or it is another project's private one", d.get("/v1/runtimes/<unknown-id>"), 404)
	d.example("PUT /v1/runtimes/{id}", d.json("PUT", "/v1/runtimes/<runtime-id>", `{"description": "Python 3 with requests"}`), 200)
	d.fails("PUT /v1/runtimes/{id}", "a read-only field is set", d.json("PUT", "/v1/runtimes/<runtime-id>", `{"status": "error"}`), 400)
	d.fails("PUT /v1/runtimes/{id}", "there is no such runtime", d.json("PUT", "/v1/runtimes/<unknown-id>", `{"name": "py"}`), 404)
	d.example("GET /v1/runtimes/{id}/pool", d.get("/v1/runtimes/<runtime-id>/pool"), 200)
	d.fails("GET /v1/runtimes/{id}/pool", "the runtime has no pool", d.get("/v1/runtimes/<unknown-id>/pool"), 404)

	// Functions.
	pkg := testutil.Zip(d.t, map[string]string{"hello.py": "def main(name='World', **kwargs):\n    print('Hello, %s' % name)\n    return 'Hello, %s' % name\n"})
	sum := md5.Sum(pkg)
	d.label("md5", hex.EncodeToString(sum[:]))
	d.pkg = pkg
	create := func(fields ...string) docReq { return d.multipart("POST", "/v1/functions", pkg, fields...) }
	d.example("POST /v1/functions", create("name", "hello", "runtime_id", "<runtime-id>",
		"code", `{"source": "package", "md5sum": "<md5>"}`, "entry", "hello.main", "timeout", "5"), 201,
		"id", "function-id")
	d.fails("POST /v1/functions", "there is no `code`", create("runtime_id", "<runtime-id>"), 400)
	d.fails("POST /v1/functions", "`code` is a JSON object in a JSON body (it must be a string holding one)",
		d.json("POST", "/v1/functions", `{"runtime_id": "<runtime-id>", "code": {"source": "package"}}`), 400)
	d.fails("POST /v1/functions", "`code.source` is not `package`, `swift` or `image`", create("runtime_id", "<runtime-id>", "code", `{"source": "git"}`), 400)
	d.fails("POST /v1/functions", "`code.source` is `image` (this orchestrator runs packages only)",
		d.form("POST", "/v1/functions", `code={"source": "image", "image": "alpine"}`), 400)
	d.fails("POST /v1/functions", "`code.source` is `swift` and authentication is off (no token to read the object with)",
		d.form("POST", "/v1/functions", `runtime_id=<runtime-id>&code={"source": "swift", "swift": {"container": "functions", "object": "hello.zip"}}`), 400)
	d.fails("POST /v1/functions", "`runtime_id` is missing", create("code", `{"source": "package"}`), 400)
	d.fails("POST /v1/functions", "there is no such runtime", create("runtime_id", "<unknown-id>", "code", `{"source": "package"}`), 404)
	d.fails("POST /v1/functions", "`cpu`, `memory_size` or `timeout` is out of range", create("runtime_id", "<runtime-id>", "code", `{"source": "package"}`, "timeout", "301"), 400)
	d.fails("POST /v1/functions", "`cpu`, `memory_size` or `timeout` is not an integer", create("runtime_id", "<runtime-id>", "code", `{"source": "package"}`, "cpu", "lots"), 400)
	d.fails("POST /v1/functions", "there is no `package` part", d.multipart("POST", "/v1/functions", nil, "runtime_id", "<runtime-id>", "code", `{"source": "package"}`), 400)
	d.fails("POST /v1/functions", "`code.md5sum` is not the package's MD5", create("runtime_id", "<runtime-id>", "code", `{"source": "package", "md5sum": "0123456789abcdef0123456789abcdef"}`), 400)
	d.fails("POST /v1/functions", "the package is not a ZIP file", d.multipart("POST", "/v1/functions", []byte("print('hi')\n"), "runtime_id", "<runtime-id>", "code", `{"source": "package"}`), 400)

	d.example("GET /v1/functions", d.get("/v1/functions"), 200)
	d.fails("GET /v1/functions", "`all_projects` is not a boolean", d.get("/v1/functions?all_projects=maybe"), 400)
	d.fails("GET /v1/functions", "`marker` is not the id of an object of the list", d.get("/v1/functions?marker=<unknown-id>"), 400)
	d.example("GET /v1/functions/{id}", d.get("/v1/functions/<function-id>"), 200)
	dl := d.example("function download", d.get("/v1/functions/<function-id>?download=true"), 200)
	require.Equal(d.t, pkg, dl.body, "the download is the uploaded package")
	d.fails("GET /v1/functions/{id}", "`download` is not a boolean", d.get("/v1/functions/<function-id>?download=please"), 400)
	d.fails("GET /v1/functions/{id}", "there is no such function (or it is another project's, for non-admins)", d.get("/v1/functions/<unknown-id>"), 404)
	d.example("PUT /v1/functions/{id}", d.form("PUT", "/v1/functions/<function-id>", "description=Says+hello&timeout=10"), 200)
	d.fails("PUT /v1/functions/{id}", "`code.source` (or `source`) differs from the function's", d.form("PUT", "/v1/functions/<function-id>", "source=swift"), 400)
	d.fails("PUT /v1/functions/{id}", "the body's Content-Type is not multipart, url-encoded or JSON",
		docReq{method: "PUT", path: "/v1/functions/<function-id>", token: "<token>", contentType: "text/plain", body: "name=x"}, 400)
	d.fails("PUT /v1/functions/{id}", "an attribute is unknown", d.form("PUT", "/v1/functions/<function-id>", "memory=64"), 400)

	// Executions.
	d.example("POST /v1/executions", d.json("POST", "/v1/executions", `{"function_id": "<function-id>", "input": "{\"name\": \"Qinling\"}"}`), 201,
		"id", "execution-id")
	d.fails("POST /v1/executions", "neither `function_id` nor `function_alias` is given", d.json("POST", "/v1/executions", `{"input": "x"}`), 400)
	d.fails("POST /v1/executions", "there is no such function", d.json("POST", "/v1/executions", `{"function_id": "<unknown-id>"}`), 404)
	d.fails("POST /v1/executions", "there is no such version", d.json("POST", "/v1/executions", `{"function_id": "<function-id>", "function_version": 7}`), 404)
	d.fails("POST /v1/executions", "there is no such alias", d.json("POST", "/v1/executions", `{"function_alias": "canary"}`), 404)
	d.fails("POST /v1/executions", "`sync` is not a boolean", d.json("POST", "/v1/executions", `{"function_id": "<function-id>", "sync": "no"}`), 400)
	d.fails("POST /v1/executions", "a read-only field (`id`, `status`, `result`, `project_id`, `created_at`, `updated_at`) is set",
		d.json("POST", "/v1/executions", `{"function_id": "<function-id>", "status": "success"}`), 400)
	d.example("GET /v1/executions", d.get("/v1/executions?function_id=<function-id>&status=in:success,failed"), 200)
	d.fails("GET /v1/executions", "`limit` is not a positive integer", d.get("/v1/executions?limit=ten"), 400)
	d.example("GET /v1/executions/{id}", d.get("/v1/executions/<execution-id>"), 200)
	d.fails("GET /v1/executions/{id}", "there is no such execution", d.get("/v1/executions/<unknown-id>"), 404)
	d.example("GET /v1/executions/{id}/log", d.get("/v1/executions/<execution-id>/log"), 200)
	d.fails("GET /v1/executions/{id}/log", "there is no such execution", d.get("/v1/executions/<unknown-id>/log"), 404)

	// Usage, counted as the executions above finished.
	d.example("GET /v1/usage", d.get("/v1/usage"), 200)
	d.fails("GET /v1/usage", "`start` or `end` is not a date and time", d.get("/v1/usage?start=yesterday"), 400)
	d.fails("GET /v1/usage", "`start` is not before `end`", d.get("/v1/usage?start=2026-02-01&end=2026-01-01"), 400)
	d.fails("GET /v1/usage", "a query parameter is unknown", d.get("/v1/usage?function_id=<function-id>"), 400)

	// The function has a worker now: its runtime's image is held.
	d.fails("PUT /v1/runtimes/{id}", "`image` changes while a function of the runtime has workers",
		d.json("PUT", "/v1/runtimes/<runtime-id>", `{"image": "openstackqinling/python3-runtime:0.0.3"}`), 403)
	d.fails("DELETE /v1/runtimes/{id}", "a function (of any project) uses the runtime", d.del("/v1/runtimes/<runtime-id>"), 403)

	// Versions.
	d.example("POST /v1/functions/{id}/versions", d.json("POST", "/v1/functions/<function-id>/versions", `{"description": "First release"}`), 201,
		"id", "version-id")
	d.fails("POST /v1/functions/{id}/versions", "the package has not changed since the latest version",
		d.json("POST", "/v1/functions/<function-id>/versions", `{"description": "Again"}`), 403)
	d.fails("POST /v1/functions/{id}/versions", "the function is not in the caller's own project (admins included) or does not exist",
		d.json("POST", "/v1/functions/<unknown-id>/versions", `{}`), 404)
	d.example("GET /v1/functions/{id}/versions", d.get("/v1/functions/<function-id>/versions"), 200)
	d.example("GET /v1/functions/{id}/versions/{n}", d.get("/v1/functions/<function-id>/versions/1"), 200)
	d.fails("GET /v1/functions/{id}/versions/{n}", "`n` is not a non-negative integer", d.get("/v1/functions/<function-id>/versions/latest"), 400)
	d.fails("GET /v1/functions/{id}/versions/{n}", "there is no such version", d.get("/v1/functions/<function-id>/versions/9"), 404)

	// Aliases.
	d.example("POST /v1/aliases", d.json("POST", "/v1/aliases",
		`{"name": "prod", "function_id": "<function-id>", "function_version": 1, "description": "Production"}`), 201,
		"id", "alias-id")
	d.fails("POST /v1/aliases", "`name` or `function_id` is missing", d.json("POST", "/v1/aliases", `{"description": "x"}`), 400)
	d.fails("POST /v1/aliases", "the project already has an alias of that name",
		d.json("POST", "/v1/aliases", `{"name": "prod", "function_id": "<function-id>"}`), 400)
	d.fails("POST /v1/aliases", "another alias of the project already points at that function version",
		d.json("POST", "/v1/aliases", `{"name": "stable", "function_id": "<function-id>", "function_version": 1}`), 400)
	d.fails("POST /v1/aliases", "the function or version does not exist",
		d.json("POST", "/v1/aliases", `{"name": "canary", "function_id": "<function-id>", "function_version": 5}`), 404)
	d.example("GET /v1/aliases", d.get("/v1/aliases"), 200)
	d.example("GET /v1/aliases/{name}", d.get("/v1/aliases/prod"), 200)
	d.fails("GET /v1/aliases/{name}", "there is no alias of that name", d.get("/v1/aliases/canary"), 404)
	d.example("PUT /v1/aliases/{name}", d.json("PUT", "/v1/aliases/prod",
		`{"function_id": null, "function_version": "1", "description": "Production traffic"}`), 200)
	d.fails("PUT /v1/aliases/{name}", "the new target does not exist", d.json("PUT", "/v1/aliases/prod", `{"function_version": 4}`), 404)
	d.fails("PUT /v1/aliases/{name}", "`function_version` is not an integer", d.json("PUT", "/v1/aliases/prod", `{"function_version": "latest"}`), 400)
	d.fails("DELETE /v1/functions/{id}/versions/{n}", "an alias points at the version",
		d.del("/v1/functions/<function-id>/versions/1"), 403)

	// Webhooks.
	d.example("POST /v1/webhooks", d.json("POST", "/v1/webhooks", `{"function_alias": "prod", "description": "Build hook"}`), 201,
		"id", "webhook-id")
	d.fails("POST /v1/webhooks", "neither `function_id` nor `function_alias` is given", d.json("POST", "/v1/webhooks", `{"description": "x"}`), 400)
	d.fails("POST /v1/webhooks", "the function is not in the caller's own project (admins included) or does not exist",
		d.json("POST", "/v1/webhooks", `{"function_id": "<unknown-id>", "function_version": 0}`), 404)
	d.fails("POST /v1/webhooks", "there is no such alias", d.json("POST", "/v1/webhooks", `{"function_alias": "canary"}`), 404)
	d.example("GET /v1/webhooks", d.get("/v1/webhooks"), 200)
	d.example("GET /v1/webhooks/{id}", d.get("/v1/webhooks/<webhook-id>"), 200)
	d.fails("GET /v1/webhooks/{id}", "there is no such webhook", d.get("/v1/webhooks/<unknown-id>"), 404)
	d.example("PUT /v1/webhooks/{id}", d.json("PUT", "/v1/webhooks/<webhook-id>", `{"description": "Build hook (main branch)"}`), 200)
	d.fails("PUT /v1/webhooks/{id}", "the new function version does not exist",
		d.json("PUT", "/v1/webhooks/<webhook-id>", `{"function_id": "<function-id>", "function_version": "3"}`), 404)
	d.example("POST /v1/webhooks/{id}/invoke", d.form("POST", "/v1/webhooks/<webhook-id>/invoke", "name=qinling").open(), 202,
		"execution_id", "webhook-execution-id")
	d.fails("POST /v1/webhooks/{id}/invoke", "there is no such webhook", d.form("POST", "/v1/webhooks/<unknown-id>/invoke", "name=qinling").open(), 404)
	d.fails("POST /v1/webhooks/{id}/invoke", "the JSON body is not an object", d.json("POST", "/v1/webhooks/<webhook-id>/invoke", `["qinling"]`).open(), 400)
	d.waitField("/v1/executions/<webhook-execution-id>", "status", "success")
	d.fails("DELETE /v1/functions/{id}", "an alias points at the function",
		d.del("/v1/functions/<function-id>"), 403)

	// The introduction's filter, paging and error examples.
	d.example("intro: filters", d.get("/v1/executions?description=has:<webhook-id>"), 200)
	d.fails("intro: filters", "a parameter is not one of the list's filters", d.get("/v1/executions?colour=blue"), 400)
	d.fails("intro: filters", "a filter is given twice", d.get("/v1/executions?status=success&status=failed"), 400)
	d.fails("intro: filters", "`in:` or `nin:` has more than 1,000 values",
		d.get("/v1/executions?status=in:"+strings.TrimSuffix(strings.Repeat("success,", 1001), ",")), 400)
	d.fails("intro: filters", "an integer field's value is not an integer", d.get("/v1/executions?function_version=latest"), 400)
	d.fails("intro: filters", "a boolean field's value is not a boolean", d.get("/v1/executions?sync=maybe"), 400)
	d.fails("intro: filters", "the operator does not apply to the field", d.get("/v1/executions?sync=gt:false"), 400)
	d.example("intro: paging", d.get("/v1/executions?limit=1"), 200)
	d.fails("intro: paging", "`limit` is not a positive integer", d.get("/v1/executions?limit=-1"), 400)
	d.fails("intro: paging", "`marker` is not the id of an object of the list", d.get("/v1/executions?marker=<unknown-id>"), 400)
	d.fails("intro: paging", "`sort_dir` is not `asc` or `desc`", d.get("/v1/executions?sort_dir=newest"), 400)
	d.example("intro: errors", d.get("/v1/functions/<unknown-id>"), 404)
	d.fails("intro: errors", "the path is not an API route", d.get("/v2/functions"), 404)
	d.fails("intro: errors", "the path is a route, but not for this method (the `Allow` header lists those it has)",
		d.req("PATCH", "/v1/functions/<function-id>"), 405)
	d.fails("intro: errors", "the body is not JSON", d.json("POST", "/v1/executions", `{"function_id": `), 400)
	d.fails("intro: errors", "the body is JSON but not an object", d.json("POST", "/v1/executions", `["<function-id>"]`), 400)
	d.fails("intro: errors", "a JSON body is larger than `[api] max_body_size`",
		d.json("POST", "/v1/executions", `{"input": "`+strings.Repeat("x", 1<<20)+`"}`), 413)

	// Jobs.
	d.example("POST /v1/jobs", d.json("POST", "/v1/jobs", `{"name": "nightly", "function_id": "<function-id>", "function_version": 0, `+
		`"function_input": "{\"name\": \"cron\"}", "pattern": "0 3 * * *", "first_execution_time": "2099-01-01 00:00", "count": 30}`), 201,
		"id", "job-id")
	d.fails("POST /v1/jobs", "neither `pattern` nor `first_execution_time` is given", d.json("POST", "/v1/jobs", `{"function_id": "<function-id>"}`), 400)
	d.fails("POST /v1/jobs", "`pattern` is not a cron pattern", d.json("POST", "/v1/jobs", `{"function_id": "<function-id>", "pattern": "every night"}`), 400)
	d.fails("POST /v1/jobs", "`first_execution_time` is less than a minute ahead",
		d.json("POST", "/v1/jobs", `{"function_id": "<function-id>", "first_execution_time": "2001-01-01 00:00"}`), 400)
	d.fails("POST /v1/jobs", "`count` is above 1 without a `pattern`",
		d.json("POST", "/v1/jobs", `{"function_id": "<function-id>", "first_execution_time": "2099-01-01 00:00", "count": 2}`), 400)
	d.fails("POST /v1/jobs", "neither `function_id` nor `function_alias` is given", d.json("POST", "/v1/jobs", `{"pattern": "* * * * *"}`), 400)
	d.example("GET /v1/jobs", d.get("/v1/jobs"), 200)
	d.example("GET /v1/jobs/{id}", d.get("/v1/jobs/<job-id>"), 200)
	d.fails("GET /v1/jobs/{id}", "there is no such job", d.get("/v1/jobs/<unknown-id>"), 404)
	d.example("PUT /v1/jobs/{id}", d.json("PUT", "/v1/jobs/<job-id>", `{"status": "paused"}`), 200)
	d.fails("PUT /v1/jobs/{id}", "`status` is not `running`, `paused` or `cancelled`", d.json("PUT", "/v1/jobs/<job-id>", `{"status": "done"}`), 400)
	d.fails("PUT /v1/jobs/{id}", "`pattern` is empty, or set on a one-shot job", d.json("PUT", "/v1/jobs/<job-id>", `{"pattern": ""}`), 400)
	d.fails("PUT /v1/jobs/{id}", "`next_execution_time` is less than a minute ahead",
		d.json("PUT", "/v1/jobs/<job-id>", `{"next_execution_time": "2001-01-01 00:00"}`), 400)
	d.fails("PUT /v1/functions/{id}", "the change restarts workers (anything but `name`, `description`, `timeout`) while a job that is not finished uses the function",
		d.form("PUT", "/v1/functions/<function-id>", "entry=hello.main"), 403)
	d.fails("DELETE /v1/functions/{id}", "a job that is not finished uses the function", d.del("/v1/functions/<function-id>"), 403)

	// Admin operations on the function (version 0) and on version 1, which
	// has the worker the webhook's execution took.
	d.example("POST /v1/functions/{id}/scale_up", d.json("POST", "/v1/functions/<function-id>/scale_up", `{"count": 1}`), 202)
	d.fails("POST /v1/functions/{id}/scale_up", "`count` is below 1", d.json("POST", "/v1/functions/<function-id>/scale_up", `{"count": 0}`), 400)
	d.waitWorkers(0, 2)
	d.example("GET /v1/functions/{id}/workers", d.get("/v1/functions/<function-id>/workers"), 200)
	d.fails("GET /v1/functions/{id}/workers", "`function_version` is not a non-negative integer", d.get("/v1/functions/<function-id>/workers?function_version=latest"), 400)
	d.example("POST /v1/functions/{id}/scale_down", d.json("POST", "/v1/functions/<function-id>/scale_down", `{"count": 1}`), 202)
	d.fails("POST /v1/functions/{id}/scale_down", "there is no such function", d.json("POST", "/v1/functions/<unknown-id>/scale_down", `{}`), 404)
	d.waitWorkers(0, 1)
	d.example("POST /v1/functions/{id}/detach", d.req("POST", "/v1/functions/<function-id>/detach"), 202)
	d.fails("POST /v1/functions/{id}/detach", "there is no such function", d.req("POST", "/v1/functions/<unknown-id>/detach"), 404)
	d.waitWorkers(0, 0)
	d.waitWorkers(1, 1)
	d.example("POST /v1/functions/{id}/versions/{n}/scale_up", d.json("POST", "/v1/functions/<function-id>/versions/1/scale_up", `{"count": 1}`), 202)
	d.fails("POST /v1/functions/{id}/versions/{n}/scale_up", "there is no such version", d.json("POST", "/v1/functions/<function-id>/versions/7/scale_up", `{"count": 1}`), 404)
	d.waitWorkers(1, 2)
	d.example("POST /v1/functions/{id}/versions/{n}/scale_down", d.json("POST", "/v1/functions/<function-id>/versions/1/scale_down", `{"count": 1}`), 202)
	d.waitWorkers(1, 1)
	d.example("POST /v1/functions/{id}/versions/{n}/detach", d.req("POST", "/v1/functions/<function-id>/versions/1/detach"), 202)
	d.waitWorkers(1, 0)

	// Deletions, each object after what refers to it.
	d.example("DELETE /v1/executions/{id}", d.del("/v1/executions/<execution-id>"), 204)
	d.fails("DELETE /v1/executions/{id}", "there is no such execution", d.del("/v1/executions/<execution-id>"), 404)
	d.example("DELETE /v1/jobs/{id}", d.del("/v1/jobs/<job-id>"), 204)
	d.fails("DELETE /v1/jobs/{id}", "there is no such job", d.del("/v1/jobs/<job-id>"), 404)
	d.example("DELETE /v1/webhooks/{id}", d.del("/v1/webhooks/<webhook-id>"), 204)
	d.fails("DELETE /v1/webhooks/{id}", "there is no such webhook", d.del("/v1/webhooks/<webhook-id>"), 404)
	d.example("DELETE /v1/aliases/{name}", d.del("/v1/aliases/prod"), 204)
	d.fails("DELETE /v1/aliases/{name}", "there is no alias of that name", d.del("/v1/aliases/prod"), 404)
	d.example("DELETE /v1/functions/{id}/versions/{n}", d.del("/v1/functions/<function-id>/versions/1"), 204)
	d.fails("DELETE /v1/functions/{id}/versions/{n}", "there is no such version", d.del("/v1/functions/<function-id>/versions/1"), 404)
	d.example("DELETE /v1/functions/{id}", d.del("/v1/functions/<function-id>"), 204)
	d.fails("DELETE /v1/functions/{id}", "there is no such function", d.del("/v1/functions/<function-id>"), 404)
	d.example("DELETE /v1/runtimes/{id}", d.del("/v1/runtimes/<runtime-id>"), 204)
}

// authScenario is the introduction's authentication examples, against a
// server that validates Keystone tokens.
func (d *docRun) authScenario() {
	d.label("bad-token", "garbage")
	d.example("intro: 401", d.get("/v1/functions").open(), 401)
	d.fails("intro: 401", "the token is not valid (expired, revoked, garbage)",
		docReq{method: "GET", path: "/v1/functions", token: "<bad-token>"}, 401)
	d.example("intro: 403", d.get("/v1/functions?all_projects=true"), 403)
}

func TestAPIDoc_Access(t *testing.T) {
	base, _ := newAuthServer(t)
	routes := docRoutes(t)
	seen := map[string]bool{}
	for _, route := range routes {
		name := docName(route)
		seen[name] = true
		acc, ok := docAccessOf[name]
		if !ok {
			t.Errorf("route %q has no entry in docAccessOf (apidoc_test.go): say who may call it", name)
			continue
		}
		method, path := docProbe(route)
		t.Run(name, func(t *testing.T) {
			notPolicy := func(r response, who string) {
				require.NotEqual(t, http.StatusUnauthorized, r.status, "%s: %s", who, r.body)
				require.False(t, r.status == http.StatusForbidden && docFault(r) == "Operation not allowed", "%s was refused by policy: %s", who, r.body)
			}
			r := callJSON(t, "", method, base+path, `{}`)
			if acc.open {
				notPolicy(r, "no token")
			} else {
				require.Equal(t, http.StatusUnauthorized, r.status, "no token: %s", r.body)
			}
			r = callJSON(t, aliceToken, method, base+path, `{}`)
			if acc.admin != "" {
				require.True(t, policy.AdminOnly(acc.admin), "%s is not an admin-only rule", acc.admin)
				require.Equal(t, http.StatusForbidden, r.status, "member: %s", r.body)
				require.Equal(t, "Operation not allowed", docFault(r))
			} else {
				notPolicy(r, "member")
			}
			r = callJSON(t, adminToken, method, base+path, `{}`)
			notPolicy(r, "admin")
			require.False(t, strings.HasPrefix(docFault(r), "Resource not found:"), "%s is not routed: %s", name, r.body)
			if acc.allProjects != "" {
				require.True(t, policy.AdminOnly(acc.allProjects), "%s is not an admin-only rule", acc.allProjects)
				r = callJSON(t, aliceToken, method, base+path+"?all_projects=true", "")
				require.Equal(t, http.StatusForbidden, r.status, "member, all_projects: %s", r.body)
				require.Equal(t, "Operation not allowed", docFault(r))
				require.Equal(t, http.StatusOK, callJSON(t, adminToken, method, base+path+"?all_projects=true", "").status)
			}
		})
	}
	for name := range docAccessOf {
		if !seen[name] {
			t.Errorf("docAccessOf names %q, which is not a route: remove it", name)
		}
	}
}

// docRoutes returns the pattern of every route this package registers: each
// string literal that is the first argument of a call and reads "METHOD
// /path". Registering through another helper does not hide a route.
func docRoutes(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("*.go")
	require.NoError(t, err)
	pattern := regexp.MustCompile(`^(GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS) /`)
	fset := token.NewFileSet()
	set := map[string]bool{}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		require.NoError(t, err)
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) == 0 {
				return true
			}
			lit, ok := call.Args[0].(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			if s, err := strconv.Unquote(lit.Value); err == nil && pattern.MatchString(s) {
				set[s] = true
			}
			return true
		})
	}
	out := make([]string, 0, len(set))
	for s := range set {
		out = append(out, s)
	}
	sort.Strings(out)
	require.GreaterOrEqual(t, len(out), 40, "the routes of Handler() were not found: %v", out)
	return out
}

// docName is a route's name in the doc: its pattern without "{$}".
func docName(route string) string { return strings.Replace(route, "{$}", "", 1) }

// docProbe is a request that reaches route: its wildcards filled in.
func docProbe(route string) (method, path string) {
	method, path, _ = strings.Cut(docName(route), " ")
	path = regexp.MustCompile(`\{[^}]*\}`).ReplaceAllStringFunc(path, func(w string) string {
		switch w {
		case "{n}":
			return "1"
		case "{name}":
			return "no-such-alias"
		}
		return "6d2b0a9e-0000-4000-8000-000000000000"
	})
	return method, path
}

func docFault(r response) string {
	var m struct {
		Faultstring string `json:"faultstring"`
	}
	_ = json.Unmarshal(r.body, &m)
	return m.Faultstring
}

// docRegion is what one generated region holds.
type docRegion struct {
	example string // the rendered example request and response
	status  int    // the example's status
	errors  []docError
	text    string // the whole region, for the summary
}

type docError struct {
	when   string
	status int
	fault  string
}

// docRun sends example requests to one server and renders them.
type docRun struct {
	t       *testing.T
	base    string
	token   string // the token placeholder requests carry by default
	vars    []docVar
	regions map[string]*docRegion
	pkg     []byte // the package, shown as <contents of hello.zip>
}

// docVar is a placeholder: requests are written with "<name>" and sent with
// value; value in responses is shown as "<name>".
type docVar struct{ name, value string }

func newDocRun(t *testing.T, base string, regions map[string]*docRegion, token string) *docRun {
	return &docRun{t: t, base: base, token: token, regions: regions}
}

func (d *docRun) label(name, value string) {
	d.t.Helper()
	require.NotEmpty(d.t, value, "placeholder <%s> has no value", name)
	for _, v := range d.vars {
		require.NotEqual(d.t, v.name, name, "placeholder <%s> is labelled twice", name)
		require.NotEqual(d.t, v.value, value, "%q is both <%s> and <%s>", value, v.name, name)
	}
	d.vars = append(d.vars, docVar{name, value})
}

func (d *docRun) expand(s string) string {
	for _, v := range d.vars {
		s = strings.ReplaceAll(s, "<"+v.name+">", v.value)
	}
	return s
}

var (
	docUUID      = regexp.MustCompile(`[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}`)
	docTimestamp = regexp.MustCompile(`\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z`)
	docTiming    = regexp.MustCompile(`(\\"(duration|queue_ms|acquire_ms|run_ms|total_ms|gb_seconds)\\":)-?[0-9.eE+-]+`)
	// docUsage is the measured amounts of GET /v1/usage.
	docUsage     = regexp.MustCompile(`("(total_duration|duration|total_cpu_time|cpu_time|total_gb_seconds|gb_seconds)": )-?[0-9.eE+-]+`)
	docRequestID = regexp.MustCompile(`^req-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
)

// normalise replaces what differs from run to run with placeholders: the
// labelled values, timestamps near now (far ones, such as a job's first run
// in 2099, are the example's own), and the timings in a result. An ID
// nobody labelled fails the test rather than slip into the doc.
func (d *docRun) normalise(s string) string {
	d.t.Helper()
	vars := append([]docVar(nil), d.vars...)
	sort.SliceStable(vars, func(i, j int) bool { return len(vars[i].value) > len(vars[j].value) })
	for _, v := range vars {
		s = strings.ReplaceAll(s, v.value, "<"+v.name+">")
	}
	now := time.Now()
	s = docTimestamp.ReplaceAllStringFunc(s, func(ts string) string {
		at, err := time.Parse(time.RFC3339, ts)
		if err == nil && at.After(now.Add(-24*time.Hour)) && at.Before(now.Add(24*time.Hour)) {
			return "<timestamp>"
		}
		return ts
	})
	s = docTiming.ReplaceAllStringFunc(s, func(m string) string {
		sub := docTiming.FindStringSubmatch(m)
		switch sub[2] {
		case "duration":
			return sub[1] + "<seconds>"
		case "gb_seconds":
			return sub[1] + "<gb-seconds>"
		}
		return sub[1] + "<ms>"
	})
	s = docUsage.ReplaceAllStringFunc(s, func(m string) string {
		sub := docUsage.FindStringSubmatch(m)
		if strings.HasSuffix(sub[2], "gb_seconds") {
			return sub[1] + "<gb-seconds>"
		}
		return sub[1] + "<seconds>"
	})
	if ids := docUUID.FindAllString(s, -1); len(ids) > 0 {
		d.t.Errorf("unlabelled IDs %v in:\n%s\nlabel them with d.label", ids, s)
	}
	return s
}

// docReq is an example request, written with placeholders.
type docReq struct {
	method, path string
	token        string // the X-Auth-Token placeholder; "" sends none
	contentType  string
	body         string   // JSON or url-encoded text
	fields       []string // multipart text parts: name, value, name, value...
	pkg          []byte   // the multipart file part "package"
}

func (r docReq) open() docReq { r.token = ""; return r }

func (d *docRun) req(method, path string) docReq {
	return docReq{method: method, path: path, token: d.token}
}
func (d *docRun) get(path string) docReq { return d.req("GET", path) }
func (d *docRun) del(path string) docReq { return d.req("DELETE", path) }

func (d *docRun) json(method, path, body string) docReq {
	r := d.req(method, path)
	r.contentType, r.body = "application/json", body
	return r
}

func (d *docRun) form(method, path, body string) docReq {
	r := d.req(method, path)
	r.contentType, r.body = "application/x-www-form-urlencoded", body
	return r
}

func (d *docRun) multipart(method, path string, pkg []byte, fields ...string) docReq {
	r := d.req(method, path)
	r.contentType, r.fields, r.pkg = "multipart/form-data; boundary="+apidocBoundary, fields, pkg
	return r
}

// multipartBody writes the form with each value passed through value and
// the package as pkg.
func (r docReq) multipartBody(value func(string) string, pkg []byte) []byte {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	_ = mw.SetBoundary(apidocBoundary)
	for i := 0; i+1 < len(r.fields); i += 2 {
		_ = mw.WriteField(r.fields[i], value(r.fields[i+1]))
	}
	if r.pkg != nil {
		w, _ := mw.CreateFormFile("package", "hello.zip")
		_, _ = w.Write(pkg)
	}
	_ = mw.Close()
	return buf.Bytes()
}

// send makes the request real: placeholders expanded, Host the all-in-one's.
func (d *docRun) send(r docReq) response {
	d.t.Helper()
	var body io.Reader
	switch {
	case r.fields != nil || r.pkg != nil:
		body = bytes.NewReader(r.multipartBody(d.expand, r.pkg))
	case r.body != "":
		body = strings.NewReader(d.expand(r.body))
	}
	req, err := http.NewRequest(r.method, d.base+d.expand(r.path), body)
	require.NoError(d.t, err)
	req.Host = apidocHost
	if r.token != "" {
		req.Header.Set("X-Auth-Token", d.expand(r.token))
	}
	if r.contentType != "" {
		req.Header.Set("Content-Type", r.contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(d.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(d.t, err)
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// showRequest renders r as written, as HTTP/1.1 on the wire.
func (d *docRun) showRequest(r docReq) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\nHost: %s\n", r.method, r.path, apidocHost)
	if r.token != "" {
		fmt.Fprintf(&b, "X-Auth-Token: %s\n", r.token)
	}
	if r.contentType != "" {
		fmt.Fprintf(&b, "Content-Type: %s\n", r.contentType)
	}
	var body string
	switch {
	case r.fields != nil || r.pkg != nil:
		raw := r.multipartBody(func(s string) string { return s }, []byte("<contents of hello.zip>"))
		body = strings.TrimSuffix(strings.ReplaceAll(string(raw), "\r\n", "\n"), "\n")
	case strings.HasPrefix(r.contentType, "application/json"):
		body = docIndent([]byte(r.body))
	default:
		body = r.body
	}
	if body != "" {
		b.WriteString("\n" + body + "\n")
	}
	return b.String()
}

// showResponse renders the status line, the headers worth showing and the
// body (JSON indented; the server sends it compact).
func (d *docRun) showResponse(r response) string {
	d.t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "HTTP/1.1 %d %s\n", r.status, http.StatusText(r.status))
	for _, h := range []string{"Content-Type", "Content-Disposition", "WWW-Authenticate", "X-Openstack-Request-Id"} {
		v := r.header.Get(h)
		if v == "" {
			continue
		}
		if h == "X-Openstack-Request-Id" {
			require.Regexp(d.t, docRequestID, v)
			v = "req-<request-id>"
		}
		fmt.Fprintf(&b, "%s: %s\n", h, v)
	}
	var body string
	switch ct := r.header.Get("Content-Type"); {
	case len(r.body) == 0:
	case ct == "application/zip":
		require.Equal(d.t, d.pkg, r.body)
		body = "<contents of hello.zip>"
	case strings.HasPrefix(ct, "application/json"):
		body = docIndent(r.body)
	default:
		body = strings.TrimSuffix(string(r.body), "\n")
	}
	if body != "" {
		b.WriteString("\n" + body + "\n")
	}
	return d.normalise(b.String())
}

func docIndent(b []byte) string {
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return string(b)
	}
	return out.String()
}

func (d *docRun) region(name string) *docRegion {
	if d.regions[name] == nil {
		d.regions[name] = &docRegion{}
	}
	return d.regions[name]
}

// example sends r, checks the status is want, and makes it the example of
// region name. labels are pairs of a JSON member of the answer and the
// placeholder its value gets from now on, e.g. "id", "runtime-id".
func (d *docRun) example(name string, r docReq, want int, labels ...string) response {
	d.t.Helper()
	if route, ok := docRouteName(name); ok {
		_, known := docAccessOf[route]
		require.True(d.t, known, "region %q looks like a route but is none: add it to docAccessOf or rename it", name)
		require.True(d.t, docMatches(route, r.method, r.path), "the example of %q sends %s %s", name, r.method, r.path)
	}
	resp := d.send(r)
	require.Equal(d.t, want, resp.status, "%s %s: %s", r.method, r.path, resp.body)
	for i := 0; i+1 < len(labels); i += 2 {
		d.label(labels[i+1], d.field(resp, labels[i]))
	}
	reg := d.region(name)
	require.Empty(d.t, reg.example, "region %q has two examples", name)
	reg.status = resp.status
	reg.example = "```http\n" + d.showRequest(r) + "```\n\n```http\n" + d.showResponse(resp) + "```\n"
	return resp
}

// fails sends r, checks it is refused with want and upstream's error body,
// and adds the case to the errors table of region name.
func (d *docRun) fails(name, when string, r docReq, want int) {
	d.t.Helper()
	resp := d.send(r)
	require.Equal(d.t, want, resp.status, "%s (%s %s): %s", when, r.method, r.path, resp.body)
	require.Equal(d.t, "application/json", resp.header.Get("Content-Type"), "%s: %s", when, resp.body)
	var body map[string]any
	require.NoError(d.t, json.Unmarshal(resp.body, &body), "%s: %s", when, resp.body)
	code := "Client"
	if want >= 500 {
		code = "Server"
	}
	require.Equal(d.t, map[string]any{"faultcode": code, "faultstring": body["faultstring"], "debuginfo": nil}, body, "%s", when)
	fault, _ := body["faultstring"].(string)
	require.NotEmpty(d.t, fault, "%s", when)
	reg := d.region(name)
	reg.errors = append(reg.errors, docError{when: when, status: want, fault: d.normalise(fault)})
}

// field reads a string member of a JSON answer.
func (d *docRun) field(r response, key string) string {
	d.t.Helper()
	v, _ := r.json(d.t)[key].(string)
	require.NotEmpty(d.t, v, "no %q in %s", key, r.body)
	return v
}

// waitField polls path until its JSON member key is want.
func (d *docRun) waitField(path, key, want string) {
	d.t.Helper()
	d.wait(path, func(r response) bool { return r.status == 200 && r.json(d.t)[key] == want })
}

// waitWorkers polls until version n of the function has count workers.
func (d *docRun) waitWorkers(n, count int) {
	d.t.Helper()
	d.wait(fmt.Sprintf("/v1/functions/<function-id>/workers?function_version=%d", n), func(r response) bool {
		ws, _ := r.json(d.t)["workers"].([]any)
		return r.status == 200 && len(ws) == count
	})
}

func (d *docRun) wait(path string, done func(response) bool) {
	d.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		r := d.send(d.get(path))
		if done(r) {
			return
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("GET %s: still %d %s after 5s", path, r.status, r.body)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// docRouteName reports whether a region name reads as a route.
func docRouteName(name string) (string, bool) {
	method, path, ok := strings.Cut(name, " ")
	if !ok || !strings.HasPrefix(path, "/") || strings.ToUpper(method) != method {
		return "", false
	}
	return name, true
}

// docMatches reports whether method and path (placeholders allowed) reach
// the route named route.
func docMatches(route, method, path string) bool {
	rm, rp, _ := strings.Cut(route, " ")
	path, _, _ = strings.Cut(path, "?")
	if len(path) > 1 {
		path = strings.TrimRight(path, "/")
	}
	if rm != method {
		return false
	}
	want, got := strings.Split(rp, "/"), strings.Split(path, "/")
	if len(want) != len(got) {
		return false
	}
	for i := range want {
		if !strings.HasPrefix(want[i], "{") && want[i] != got[i] {
			return false
		}
	}
	return true
}

// render is a region's generated text.
func (reg *docRegion) render(name string) string {
	if reg.text != "" {
		return reg.text
	}
	var b strings.Builder
	if acc, ok := docAccessOf[name]; ok {
		b.WriteString("**Who may call:** " + acc.describe() + "\n\n")
	}
	if reg.example != "" {
		b.WriteString(reg.example)
	}
	if len(reg.errors) > 0 {
		if reg.example != "" {
			b.WriteString("\n")
		}
		b.WriteString("| When | Status | `faultstring` |\n| --- | --- | --- |\n")
		for _, e := range reg.errors {
			fmt.Fprintf(&b, "| %s | %d | %s |\n", e.when, e.status, docCode(e.fault))
		}
	}
	return b.String()
}

func (a docAccess) describe() string {
	var s string
	switch {
	case a.open:
		s = "anyone; no token is needed."
	case a.admin != "":
		s = fmt.Sprintf("admins only (policy `%s`); others get 403 `Operation not allowed`.", a.admin)
	default:
		s = "any authenticated user."
	}
	if a.allProjects != "" {
		s += fmt.Sprintf(" Listing other projects (`all_projects=true`, `project_id=`) is for admins only (policy `%s`).", a.allProjects)
	}
	return s
}

// docSummary is the table of every route, in the order of the doc.
func docSummary(order []string, regions map[string]*docRegion) string {
	var b strings.Builder
	b.WriteString("| Method and path | Success | Who may call |\n| --- | --- | --- |\n")
	for _, name := range order {
		acc, ok := docAccessOf[name]
		if !ok {
			continue
		}
		status := "?"
		if reg := regions[name]; reg != nil && reg.status != 0 {
			status = strconv.Itoa(reg.status)
		}
		who := "any user"
		switch {
		case acc.open:
			who = "anyone, no token"
		case acc.admin != "":
			who = "admin"
		case acc.allProjects != "":
			who = "any user; other projects: admin"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", name, status, who)
	}
	return b.String()
}

// docCode is s as a code span in a table cell.
func docCode(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	if strings.Contains(s, "`") {
		return "`` " + s + " ``"
	}
	return "`" + s + "`"
}

var docRegionRE = regexp.MustCompile(`(?s)<!-- generated: ([^>]+?) -->\n.*?<!-- end generated -->`)

// syncDoc rewrites the generated regions of docs/api.md, then checks the
// file is unchanged (or, with QINLING_WRITE_APIDOC set, writes it).
func syncDoc(t *testing.T, regions map[string]*docRegion, routes []string) {
	old, err := os.ReadFile(apidocPath)
	require.NoError(t, err, "docs/api.md is missing")
	var problems []string
	var order []string
	for _, m := range docRegionRE.FindAllStringSubmatch(string(old), -1) {
		order = append(order, m[1])
	}
	regions["summary"] = &docRegion{text: docSummary(order, regions)}
	seen := map[string]bool{}
	out := docRegionRE.ReplaceAllStringFunc(string(old), func(m string) string {
		name := docRegionRE.FindStringSubmatch(m)[1]
		if seen[name] {
			problems = append(problems, fmt.Sprintf("docs/api.md has two regions %q", name))
		}
		seen[name] = true
		reg := regions[name]
		if reg == nil {
			problems = append(problems, fmt.Sprintf("docs/api.md has a region %q that apidoc_test.go does not generate: remove it or add its example", name))
			return m
		}
		return "<!-- generated: " + name + " -->\n" + reg.render(name) + "<!-- end generated -->"
	})
	for _, route := range routes {
		name := docName(route)
		if !seen[name] {
			problems = append(problems, fmt.Sprintf("route %q is not documented: add a section for it to docs/api.md with\n\t<!-- generated: %s -->\n\t<!-- end generated -->", name, name))
		}
		if reg := regions[name]; reg == nil || reg.example == "" {
			problems = append(problems, fmt.Sprintf("route %q has no example: add one to the scenario in apidoc_test.go", name))
		}
	}
	var names []string
	for name := range regions {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if _, route := docAccessOf[name]; !seen[name] && !route {
			problems = append(problems, fmt.Sprintf("docs/api.md has no region for %q: add\n\t<!-- generated: %s -->\n\t<!-- end generated -->", name, name))
		}
	}
	if len(problems) > 0 {
		t.Fatalf("docs/api.md and apidoc_test.go disagree:\n%s", strings.Join(problems, "\n"))
	}
	if os.Getenv(apidocWriteEnv) != "" {
		if out != string(old) {
			require.NoError(t, os.WriteFile(apidocPath, []byte(out), 0o644))
			t.Logf("wrote %s", apidocPath)
		}
		return
	}
	if out != string(old) {
		t.Fatalf("docs/api.md's examples are not what the server does now (%s): %s", docFirstDiff(string(old), out), apidocRegen)
	}
}

func docFirstDiff(old, cur string) string {
	a, b := strings.Split(old, "\n"), strings.Split(cur, "\n")
	for i := 0; i < len(a) || i < len(b); i++ {
		var x, y string
		if i < len(a) {
			x = a[i]
		}
		if i < len(b) {
			y = b[i]
		}
		if x != y {
			return fmt.Sprintf("line %d is %q, the server gives %q", i+1, x, y)
		}
	}
	return "no line differs"
}
