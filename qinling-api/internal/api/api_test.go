package api_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/orchestrator"
	"github.com/qinling-go/qinling/orchestrator/fake"
	"github.com/qinling-go/qinling/pkg/coord/memory"
	"github.com/qinling-go/qinling/pkg/db"
	"github.com/qinling-go/qinling/pkg/engine"
	"github.com/qinling-go/qinling/pkg/execution"
	"github.com/qinling-go/qinling/pkg/rpc/inproc"
	"github.com/qinling-go/qinling/pkg/testutil"
	"github.com/qinling-go/qinling/qinling-api/internal/api"
	storagemem "github.com/qinling-go/qinling/storage/memory"
)

// newServer runs the API over a real SQLite database and the in-process
// transport to a real engine whose orchestrator is the fake.
func newServer(t *testing.T) (*httptest.Server, *fake.Orchestrator) {
	t.Helper()
	_, ts, orch := newAPI(t)
	return ts, orch
}

// newAPI is newServer that also hands out the api.Server, for tests that
// drive its background work (the job handler) directly.
func newAPI(t *testing.T) (*api.Server, *httptest.Server, *fake.Orchestrator) {
	t.Helper()
	return newAPIWithAuth(t, api.NoAuth{})
}

// newAPIWithAuth is newAPI with the given authenticator.
func newAPIWithAuth(t *testing.T, auth api.Authenticator) (*api.Server, *httptest.Server, *fake.Orchestrator) {
	t.Helper()
	return newAPIWith(t, auth, nil)
}

// newAPIWith is newAPIWithAuth with tune applied to the server before it serves.
func newAPIWith(t *testing.T, auth api.Authenticator, tune func(*api.Server)) (*api.Server, *httptest.Server, *fake.Orchestrator) {
	t.Helper()
	d, err := db.Open("sqlite", filepath.Join(t.TempDir(), "q.sqlite"), db.Options{})
	require.NoError(t, err)
	_, _, err = d.Sync(context.Background())
	require.NoError(t, err)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	orch := fake.New(fake.Config{PoolSize: 2})
	orch.Handle("hello.main", func(inv orchestrator.Invocation) orchestrator.Result {
		var in map[string]any
		_ = json.Unmarshal(inv.Input, &in)
		name := fmt.Sprint(in["name"])
		if p, ok := in["__function_input"]; ok {
			name = fmt.Sprint(p)
		}
		out, _ := json.Marshal("Hello, " + name)
		return orchestrator.Result{Success: true, Output: out, Logs: "Start\nHello, " + name + "\nFinished\n"}
	})
	co := memory.New()
	st := storagemem.New(storagemem.Config{MaxSize: 1 << 20})
	tr := inproc.New(10 * time.Second)
	client := engine.Client{RPC: tr}
	srv := &api.Server{
		DB: d, Engine: client, Executions: &execution.Starter{DB: d, Engine: client, Log: log},
		Coord: co, Storage: st, Auth: auth, Log: log,
		Limits: api.Limits{
			MaxBodySize: 1 << 20, MaxPackageSize: 1 << 20,
			DefaultCPU: 100, MinCPU: 100, MaxCPU: 300,
			DefaultMemory: 33554432, MinMemory: 33554432, MaxMemory: 134217728,
			DefaultTimeout: 5, MinTimeout: 1, MaxTimeout: 300,
			MinWorkers: 1, MaxWorkers: 10,
		},
	}
	if tune != nil {
		tune(srv)
	}
	// The engine reads swift functions' objects as the API does.
	eng := engine.New(d, orch, co, st, engine.Options{Swift: srv.Swift}, log)
	ctx, cancel := context.WithCancel(context.Background())
	go tr.Serve(ctx, eng)
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(func() { ts.Close(); cancel(); tr.Close(); d.Close() })
	return srv, ts, orch
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(r.body, &m), "body: %s", r.body)
	return m
}

func do(t *testing.T, method, url, contentType string, body io.Reader) response {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	require.NoError(t, err)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

func doJSON(t *testing.T, method, url, body string) response {
	return do(t, method, url, "application/json", strings.NewReader(body))
}

func multipartBody(t *testing.T, fields map[string]string, pkg []byte) (string, io.Reader) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for k, v := range fields {
		require.NoError(t, mw.WriteField(k, v))
	}
	if pkg != nil {
		w, err := mw.CreateFormFile("package", "p.zip")
		require.NoError(t, err)
		_, _ = w.Write(pkg)
	}
	require.NoError(t, mw.Close())
	return mw.FormDataContentType(), &buf
}

func createRuntime(t *testing.T, base string) string {
	r := doJSON(t, "POST", base+"/v1/runtimes", `{"image": "python3", "name": "py"}`)
	require.Equal(t, http.StatusCreated, r.status, string(r.body))
	id := r.json(t)["id"].(string)
	require.Eventually(t, func() bool {
		return doJSON(t, "GET", base+"/v1/runtimes/"+id, "").json(t)["status"] == "available"
	}, 5*time.Second, 10*time.Millisecond)
	return id
}

func createFunction(t *testing.T, base, runtimeID string) (string, []byte) {
	pkg := testutil.Zip(t, map[string]string{"hello.py": "def main(name, **kw):\n    return name\n"})
	sum := md5.Sum(pkg)
	ct, body := multipartBody(t, map[string]string{
		"runtime_id": runtimeID, "name": "hello", "entry": "hello.main",
		"code": fmt.Sprintf(`{"source": "package", "md5sum": "%s"}`, hex.EncodeToString(sum[:])),
	}, pkg)
	r := do(t, "POST", base+"/v1/functions", ct, body)
	require.Equal(t, http.StatusCreated, r.status, string(r.body))
	return r.json(t)["id"].(string), pkg
}

func TestAPI_Root(t *testing.T) {
	ts, _ := newServer(t)
	r := doJSON(t, "GET", ts.URL+"/", "")
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, ts.URL+"/v1", r.json(t)["versions"].([]any)[0].(map[string]any)["links"].([]any)[0].(map[string]any)["href"])
	r = doJSON(t, "GET", ts.URL+"/v1/", "")
	require.Equal(t, map[string]any{"uri": ts.URL + "/v1"}, r.json(t))
	require.True(t, strings.HasPrefix(r.header.Get("X-Openstack-Request-Id"), "req-"))
}

func TestAPI_Spine(t *testing.T) {
	ts, orch := newServer(t)
	rt := createRuntime(t, ts.URL)

	r := doJSON(t, "GET", ts.URL+"/v1/runtimes/"+rt+"/pool", "")
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, map[string]any{"name": rt, "capacity": map[string]any{"total": 2.0, "available": 2.0}}, r.json(t))

	fid, pkg := createFunction(t, ts.URL, rt)
	r = doJSON(t, "GET", ts.URL+"/v1/functions/"+fid, "")
	fn := r.json(t)
	require.Equal(t, "package", fn["code"].(map[string]any)["source"], "show renders code as an object")
	for _, k := range []string{"id", "name", "description", "count", "code", "runtime_id", "entry", "project_id", "created_at", "updated_at", "cpu", "memory_size", "timeout", "latest_version"} {
		require.Contains(t, fn, k)
	}
	require.Equal(t, "default", fn["project_id"])
	require.EqualValues(t, 5, fn["timeout"])

	list := doJSON(t, "GET", ts.URL+"/v1/functions", "").json(t)["functions"].([]any)
	require.Len(t, list, 1)
	require.IsType(t, "", list[0].(map[string]any)["code"], "lists render code as a JSON string")

	dl := do(t, "GET", ts.URL+"/v1/functions/"+fid+"?download=true", "", nil)
	require.Equal(t, http.StatusOK, dl.status)
	require.Equal(t, "application/zip", dl.header.Get("Content-Type"))
	require.Equal(t, pkg, dl.body)

	r = doJSON(t, "POST", ts.URL+"/v1/executions", fmt.Sprintf(`{"function_id": %q, "input": "{\"name\": \"x\"}"}`, fid))
	require.Equal(t, http.StatusCreated, r.status, string(r.body))
	ex := r.json(t)
	require.Equal(t, "success", ex["status"])
	require.Equal(t, `{"name": "x"}`, ex["input"])
	var res map[string]any
	require.NoError(t, json.Unmarshal([]byte(ex["result"].(string)), &res))
	require.Equal(t, "Hello, x", res["output"])

	log := do(t, "GET", ts.URL+"/v1/executions/"+ex["id"].(string)+"/log", "", nil)
	require.Equal(t, http.StatusOK, log.status)
	require.Contains(t, log.header.Get("Content-Type"), "text/plain")
	require.Contains(t, string(log.body), "Hello, x")

	// A bare word is the positional argument and is echoed back as sent.
	r = doJSON(t, "POST", ts.URL+"/v1/executions", fmt.Sprintf(`{"function_id": %q, "input": "Qinling", "sync": false}`, fid))
	require.Equal(t, http.StatusCreated, r.status)
	async := r.json(t)
	require.Equal(t, "Qinling", async["input"])
	require.Eventually(t, func() bool {
		return doJSON(t, "GET", ts.URL+"/v1/executions/"+async["id"].(string), "").json(t)["status"] == "success"
	}, 5*time.Second, 10*time.Millisecond)

	got := doJSON(t, "GET", ts.URL+"/v1/executions?status=in:success,failed&function_id="+fid, "").json(t)["executions"].([]any)
	require.Len(t, got, 2)
	got = doJSON(t, "GET", ts.URL+"/v1/executions?status=failed", "").json(t)["executions"].([]any)
	require.Empty(t, got)
	require.EqualValues(t, 2, doJSON(t, "GET", ts.URL+"/v1/functions/"+fid, "").json(t)["count"])

	del := do(t, "DELETE", ts.URL+"/v1/executions/"+ex["id"].(string), "", nil)
	require.Equal(t, http.StatusNoContent, del.status)
	require.Empty(t, del.body)

	// Update the package: the new md5 shows and the old workers are released.
	ct, body := multipartBody(t, map[string]string{"source": "package"}, testutil.Zip(t, map[string]string{"hello.py": "def main(**kw):\n    return 2\n"}))
	r = do(t, "PUT", ts.URL+"/v1/functions/"+fid, ct, body)
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	require.NotEqual(t, fn["code"], r.json(t)["code"])
	require.Eventually(t, func() bool { return len(orch.Calls().DeletedFunctions) > 0 }, 5*time.Second, 10*time.Millisecond)

	r = do(t, "PUT", ts.URL+"/v1/functions/"+fid, "application/x-www-form-urlencoded", strings.NewReader("name=renamed&timeout=10"))
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	require.Equal(t, "renamed", r.json(t)["name"])
	require.EqualValues(t, 10, r.json(t)["timeout"])

	r = do(t, "DELETE", ts.URL+"/v1/runtimes/"+rt, "", nil)
	require.Equal(t, http.StatusForbidden, r.status, "a runtime in use cannot go")
	require.Equal(t, http.StatusNoContent, do(t, "DELETE", ts.URL+"/v1/functions/"+fid, "", nil).status)
	require.Equal(t, http.StatusNoContent, do(t, "DELETE", ts.URL+"/v1/runtimes/"+rt, "", nil).status)
	require.Eventually(t, func() bool {
		return do(t, "GET", ts.URL+"/v1/runtimes/"+rt, "", nil).status == http.StatusNotFound
	}, 5*time.Second, 10*time.Millisecond)
}

func TestAPI_BadInput(t *testing.T) {
	ts, _ := newServer(t)
	rt := createRuntime(t, ts.URL)
	fid, _ := createFunction(t, ts.URL, rt)
	pkg := testutil.Zip(t, map[string]string{"main.py": "def main(): pass\n"})
	multi := func(fields map[string]string, pkg []byte) func() response {
		return func() response {
			ct, body := multipartBody(t, fields, pkg)
			return do(t, "POST", ts.URL+"/v1/functions", ct, body)
		}
	}
	withRuntime := func(extra map[string]string) map[string]string {
		m := map[string]string{"runtime_id": rt, "code": `{"source": "package"}`}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	for _, tc := range []struct {
		name       string
		req        func() response
		wantStatus int
		wantFault  string
	}{
		{"malformed JSON", func() response { return doJSON(t, "POST", ts.URL+"/v1/runtimes", `{"image": `) }, 400, "not in valid JSON"},
		{"JSON array body", func() response { return doJSON(t, "POST", ts.URL+"/v1/runtimes", `[1]`) }, 400, "JSON object"},
		{"unknown attribute", func() response { return doJSON(t, "POST", ts.URL+"/v1/runtimes", `{"image": "x", "is_public:": true}`) }, 400, "Unknown attribute"},
		{"wrong type", func() response { return doJSON(t, "POST", ts.URL+"/v1/runtimes", `{"image": "x", "is_public": 3}`) }, 400, "is_public"},
		{"read-only field", func() response {
			return doJSON(t, "POST", ts.URL+"/v1/runtimes", `{"image": "x", "status": "available"}`)
		}, 400, "read only"},
		{"missing image", func() response { return doJSON(t, "POST", ts.URL+"/v1/runtimes", `{"name": "x"}`) }, 400, "Required param is missing"},
		{"non-UUID runtime", func() response { return doJSON(t, "GET", ts.URL+"/v1/runtimes/xyz", "") }, 400, "UUID"},
		{"unknown runtime", func() response {
			return doJSON(t, "GET", ts.URL+"/v1/runtimes/6d2b0a9e-0000-4000-8000-000000000000", "")
		}, 404, "Runtime not found"},
		{"missing code", multi(map[string]string{"runtime_id": rt}, pkg), 400, "Required param is missing"},
		{"code not JSON", multi(withRuntime(map[string]string{"code": "{nope"}), pkg), 400, "code must be a JSON object"},
		{"code as object in JSON body", func() response {
			return doJSON(t, "POST", ts.URL+"/v1/functions", fmt.Sprintf(`{"runtime_id": %q, "code": {"source": "package"}}`, rt))
		}, 400, "code"},
		{"bad source", multi(withRuntime(map[string]string{"code": `{"source": "ftp"}`}), pkg), 400, "Invalid code source"},
		{"missing package", multi(withRuntime(nil), nil), 400, "Package is missing"},
		{"wrong md5", multi(withRuntime(map[string]string{"code": `{"source": "package", "md5sum": "0123"}`}), pkg), 400, "Package md5 mismatch."},
		{"corrupt zip", multi(withRuntime(nil), []byte("definitely not a zip")), 400, "ZIP"},
		{"too large", multi(withRuntime(nil), bytes.Repeat([]byte("x"), 2<<20)), 413, "larger"},
		{"cpu not integer", multi(withRuntime(map[string]string{"cpu": "lots"}), pkg), 400, "Invalid cpu resource specified. An integer is required."},
		{"timeout out of range", multi(withRuntime(map[string]string{"timeout": "301"}), pkg), 400, "timeout resource limitation not within the allowable range: 1 ~ 300(seconds)."},
		{"memory out of range", multi(withRuntime(map[string]string{"memory_size": "1"}), pkg), 400, "memory resource limitation"},
		{"no runtime_id", multi(map[string]string{"code": `{"source": "package"}`}, pkg), 400, `"runtime_id" must be specified.`},
		{"unknown runtime on create", multi(map[string]string{"runtime_id": "6d2b0a9e-0000-4000-8000-000000000000", "code": `{"source": "package"}`}, pkg), 404, "Runtime not found"},
		{"execution without function", func() response { return doJSON(t, "POST", ts.URL+"/v1/executions", `{}`) }, 400, "Either function_alias or function_id must be provided."},
		{"execution sync wrong type", func() response {
			return doJSON(t, "POST", ts.URL+"/v1/executions", fmt.Sprintf(`{"function_id": %q, "sync": "yes"}`, fid))
		}, 400, "sync"},
		{"execution unknown function", func() response {
			return doJSON(t, "POST", ts.URL+"/v1/executions", `{"function_id": "6d2b0a9e-0000-4000-8000-000000000000"}`)
		}, 404, "Function not found"},
		{"unknown execution", func() response {
			return doJSON(t, "GET", ts.URL+"/v1/executions/6d2b0a9e-0000-4000-8000-000000000000", "")
		}, 404, "Execution not found"},
		{"non-UUID execution", func() response { return doJSON(t, "GET", ts.URL+"/v1/executions/xyz/log", "") }, 400, "UUID"},
		{"unknown path", func() response { return doJSON(t, "GET", ts.URL+"/v2/things", "") }, 404, "not found"},
		{"all_projects garbage", func() response { return doJSON(t, "GET", ts.URL+"/v1/functions?all_projects=maybe", "") }, 400, "all_projects"},
		{"bad limit", func() response { return doJSON(t, "GET", ts.URL+"/v1/executions?limit=-1", "") }, 400, "limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.req()
			require.Equal(t, tc.wantStatus, r.status, string(r.body))
			require.Equal(t, "application/json", r.header.Get("Content-Type"))
			require.Contains(t, r.json(t)["faultstring"], tc.wantFault)
		})
	}
}

func TestAPI_ListPaging(t *testing.T) {
	ts, _ := newServer(t)
	rt := createRuntime(t, ts.URL)
	var ids []string
	for i := 0; i < 5; i++ {
		id, _ := createFunction(t, ts.URL, rt)
		ids = append(ids, id)
	}
	var seen []string
	marker := ""
	for page := 0; page < 5; page++ {
		url := ts.URL + "/v1/functions?limit=2"
		if marker != "" {
			url += "&marker=" + marker
		}
		fs := doJSON(t, "GET", url, "").json(t)["functions"].([]any)
		if len(fs) == 0 {
			break
		}
		for _, f := range fs {
			seen = append(seen, f.(map[string]any)["id"].(string))
		}
		marker = seen[len(seen)-1]
	}
	require.ElementsMatch(t, ids, seen)
	require.Len(t, seen, 5)
}
