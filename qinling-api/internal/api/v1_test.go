package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/jobs"
	"github.com/qinling-go/qinling/pkg/testutil"
)

// newPackage uploads a new package for fid so a new version can be cut.
func newPackage(t *testing.T, base, fid, body string) {
	ct, rd := multipartBody(t, map[string]string{"source": "package"}, testutil.Zip(t, map[string]string{"hello.py": body}))
	r := do(t, "PUT", base+"/v1/functions/"+fid, ct, rd)
	require.Equal(t, http.StatusOK, r.status, string(r.body))
}

func TestAPI_Versions(t *testing.T) {
	ts, orch := newServer(t)
	rt := createRuntime(t, ts.URL)
	fid, pkg := createFunction(t, ts.URL, rt)
	base := ts.URL + "/v1/functions/" + fid + "/versions"

	r := doJSON(t, "POST", base, `{"description": "v1"}`)
	require.Equal(t, http.StatusCreated, r.status, string(r.body))
	v1 := r.json(t)
	require.EqualValues(t, 1, v1["version_number"])
	for _, k := range []string{"id", "function_id", "description", "version_number", "count", "project_id", "created_at", "updated_at"} {
		require.Contains(t, v1, k)
	}
	r = doJSON(t, "POST", base, `{}`)
	require.Equal(t, http.StatusForbidden, r.status)
	require.Contains(t, r.json(t)["faultstring"], "not changed since the latest version 1")

	dl := do(t, "GET", base+"/1?download=true", "", nil)
	require.Equal(t, http.StatusOK, dl.status)
	require.Equal(t, pkg, dl.body)

	newPackage(t, ts.URL, fid, "def main(**kw):\n    return 'v2'\n")
	require.Equal(t, http.StatusCreated, doJSON(t, "POST", base, `{"description": null}`).status)
	list := doJSON(t, "GET", base, "").json(t)["function_versions"].([]any)
	require.Len(t, list, 2)

	// Execute version 1: counted on the version, run with version 1.
	r = doJSON(t, "POST", ts.URL+"/v1/executions", fmt.Sprintf(`{"function_id": %q, "function_version": 1, "input": "{\"name\": \"v\"}"}`, fid))
	require.Equal(t, http.StatusCreated, r.status, string(r.body))
	require.Equal(t, "success", r.json(t)["status"])
	require.EqualValues(t, 1, doJSON(t, "GET", base+"/1", "").json(t)["count"])
	calls := orch.Calls().Run
	require.Equal(t, 1, calls[len(calls)-1].Invocation.Version)

	// Deleting the latest version does not free its number.
	require.Equal(t, http.StatusNoContent, do(t, "DELETE", base+"/2", "", nil).status)
	newPackage(t, ts.URL, fid, "def main(**kw):\n    return 'v3'\n")
	r = doJSON(t, "POST", base, `{}`)
	require.Equal(t, http.StatusCreated, r.status, string(r.body))
	require.EqualValues(t, 3, r.json(t)["version_number"])

	for _, tc := range []struct {
		name, method, url string
		want              int
	}{
		{"non-integer version", "GET", base + "/one", 400},
		{"missing version", "GET", base + "/9", 404},
		{"delete missing version", "DELETE", base + "/9", 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, tc.method, tc.url, "", nil)
			require.Equal(t, tc.want, r.status, string(r.body))
			require.NotEmpty(t, r.json(t)["faultstring"])
		})
	}
}

func TestAPI_VersionLimit(t *testing.T) {
	ts, _ := newServer(t)
	fid, _ := createFunction(t, ts.URL, createRuntime(t, ts.URL))
	base := ts.URL + "/v1/functions/" + fid + "/versions"
	for i := 1; i <= 10; i++ {
		newPackage(t, ts.URL, fid, fmt.Sprintf("def main(**kw):\n    return %d\n", i))
		require.Equal(t, http.StatusCreated, doJSON(t, "POST", base, `{}`).status)
	}
	newPackage(t, ts.URL, fid, "def main(**kw):\n    return 11\n")
	r := doJSON(t, "POST", base, `{}`)
	require.Equal(t, http.StatusForbidden, r.status)
	require.Contains(t, r.json(t)["faultstring"], "Can not exceed maximum number(10) of versions")
}

func TestAPI_AliasesAndWebhooks(t *testing.T) {
	ts, _ := newServer(t)
	fid, _ := createFunction(t, ts.URL, createRuntime(t, ts.URL))
	require.Equal(t, http.StatusCreated, doJSON(t, "POST", ts.URL+"/v1/functions/"+fid+"/versions", `{}`).status)

	r := doJSON(t, "POST", ts.URL+"/v1/aliases", fmt.Sprintf(`{"name": "prod", "function_id": %q, "function_version": 1, "description": "d"}`, fid))
	require.Equal(t, http.StatusCreated, r.status, string(r.body))
	require.EqualValues(t, 1, r.json(t)["function_version"])
	r = doJSON(t, "POST", ts.URL+"/v1/aliases", fmt.Sprintf(`{"name": "prod", "function_id": %q}`, fid))
	require.Equal(t, http.StatusBadRequest, r.status, "names are unique per project")
	r = doJSON(t, "PUT", ts.URL+"/v1/aliases/prod", `{"function_id": null, "function_version": "0", "description": null}`)
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	require.EqualValues(t, 0, r.json(t)["function_version"], "the CLI sends the version as a string")
	require.Equal(t, "d", r.json(t)["description"])

	// An execution through the alias records it.
	r = doJSON(t, "POST", ts.URL+"/v1/executions", `{"function_id": null, "function_version": null, "function_alias": "prod", "input": "{\"name\": \"a\"}"}`)
	require.Equal(t, http.StatusCreated, r.status, string(r.body))
	require.Equal(t, "prod", r.json(t)["function_alias"])
	require.Equal(t, fid, r.json(t)["function_id"])

	// A webhook on the alias, invoked with a form body and no token.
	r = doJSON(t, "POST", ts.URL+"/v1/webhooks", `{"function_id": null, "function_version": null, "function_alias": "prod"}`)
	require.Equal(t, http.StatusCreated, r.status, string(r.body))
	hook := r.json(t)
	url := hook["webhook_url"].(string)
	require.True(t, strings.HasSuffix(url, "/v1/webhooks/"+hook["id"].(string)+"/invoke"), url)
	inv := do(t, "POST", ts.URL+"/v1/webhooks/"+hook["id"].(string)+"/invoke", "application/x-www-form-urlencoded", strings.NewReader("name=qinling"))
	require.Equal(t, http.StatusAccepted, inv.status, string(inv.body))
	eid := inv.json(t)["execution_id"].(string)
	require.Eventually(t, func() bool {
		return doJSON(t, "GET", ts.URL+"/v1/executions/"+eid, "").json(t)["status"] == "success"
	}, 5*time.Second, 10*time.Millisecond)
	ex := doJSON(t, "GET", ts.URL+"/v1/executions/"+eid, "").json(t)
	require.Equal(t, "Created by Webhook "+hook["id"].(string), ex["description"])
	require.JSONEq(t, `{"name": "qinling"}`, ex["input"].(string))
	found := doJSON(t, "GET", ts.URL+"/v1/executions?description=has:"+hook["id"].(string), "").json(t)["executions"].([]any)
	require.Len(t, found, 1)

	// The function cannot go while the alias and webhook point at it.
	r = do(t, "DELETE", ts.URL+"/v1/functions/"+fid, "", nil)
	require.Equal(t, http.StatusForbidden, r.status)
	require.Equal(t, http.StatusNoContent, do(t, "DELETE", ts.URL+"/v1/webhooks/"+hook["id"].(string), "", nil).status)
	require.Equal(t, http.StatusNoContent, do(t, "DELETE", ts.URL+"/v1/aliases/prod", "", nil).status)
	require.Equal(t, http.StatusNotFound, do(t, "GET", ts.URL+"/v1/aliases/prod", "", nil).status)

	// A webhook on the function itself, version given as null: version 0.
	r = doJSON(t, "POST", ts.URL+"/v1/webhooks", fmt.Sprintf(`{"function_id": %q, "function_version": null, "description": "x"}`, fid))
	require.Equal(t, http.StatusCreated, r.status, string(r.body))
	require.EqualValues(t, 0, r.json(t)["function_version"])
	wid := r.json(t)["id"].(string)
	r = doJSON(t, "PUT", ts.URL+"/v1/webhooks/"+wid, `{"function_id": null, "function_version": "1", "description": null}`)
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	require.EqualValues(t, 1, r.json(t)["function_version"])
	inv = do(t, "POST", ts.URL+"/v1/webhooks/"+wid+"/invoke", "application/json", bytes.NewReader([]byte(`{"name": 7}`)))
	require.Equal(t, http.StatusAccepted, inv.status, string(inv.body))
}

func TestAPI_AdminOperations(t *testing.T) {
	ts, orch := newServer(t)
	fid, _ := createFunction(t, ts.URL, createRuntime(t, ts.URL))
	base := ts.URL + "/v1/functions/" + fid
	workers := func() int {
		return len(doJSON(t, "GET", base+"/workers/?function_version=0", "").json(t)["workers"].([]any))
	}
	require.Equal(t, 0, workers())
	require.Equal(t, http.StatusAccepted, doJSON(t, "POST", base+"/scale_up", `{"count": 2}`).status)
	require.Eventually(t, func() bool { return workers() == 2 }, 5*time.Second, 10*time.Millisecond)
	require.Equal(t, http.StatusAccepted, doJSON(t, "POST", base+"/scale_down", `{}`).status, "count defaults to 1")
	require.Eventually(t, func() bool { return workers() == 1 }, 5*time.Second, 10*time.Millisecond)
	r := doJSON(t, "POST", base+"/scale_up", `{"count": 0}`)
	require.Equal(t, http.StatusBadRequest, r.status)
	require.Equal(t, http.StatusAccepted, do(t, "POST", base+"/detach", "", nil).status)
	require.Eventually(t, func() bool { return workers() == 0 }, 5*time.Second, 10*time.Millisecond)
	// The engine forgets the records before it asks the orchestrator, so
	// the empty list can be seen a moment before the orchestrator's call.
	require.Eventually(t, func() bool { return len(orch.Calls().DeletedFunctions) > 0 }, 5*time.Second, 10*time.Millisecond)
	r = doJSON(t, "GET", base+"/workers?function_version=x", "")
	require.Equal(t, http.StatusBadRequest, r.status)
}

func TestAPI_Jobs(t *testing.T) {
	ts, _ := newServer(t)
	fid, _ := createFunction(t, ts.URL, createRuntime(t, ts.URL))
	future := time.Now().UTC().Add(2 * time.Minute).Format("2006-01-02 15:04")
	for _, tc := range []struct {
		name, body string
		want       int
		fault      string
	}{
		{"neither pattern nor time", `{"function_id": %q}`, 400, "pattern or first_execution_time must be specified."},
		{"bad pattern", `{"function_id": %q, "pattern": "every minute"}`, 400, "The specified pattern is not valid"},
		{"time in the past", `{"function_id": %q, "first_execution_time": "2001-01-01 00:00"}`, 400, "at least 1 minute in the future"},
		{"unparsable time", `{"function_id": %q, "first_execution_time": "tomorrow"}`, 400, "first_execution_time"},
		{"count without pattern", `{"function_id": %q, "first_execution_time": "` + future + `", "count": 2}`, 400, "pattern must be provided if count is greater than 1."},
		{"no function", `{"function_id": null, "function_alias": null, "pattern": "* * * * *"}`, 400, "Either function_alias or function_id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := tc.body
			if strings.Contains(body, "%q") {
				body = fmt.Sprintf(body, fid)
			}
			r := doJSON(t, "POST", ts.URL+"/v1/jobs", body)
			require.Equal(t, tc.want, r.status, string(r.body))
			require.Contains(t, r.json(t)["faultstring"], tc.fault)
		})
	}
	r := doJSON(t, "POST", ts.URL+"/v1/jobs", fmt.Sprintf(`{"function_alias": null, "function_id": %q, "function_version": 0, "name": "every", "first_execution_time": null, "pattern": "* * * * *", "function_input": "{\"name\": \"job\"}", "count": 2}`, fid))
	require.Equal(t, http.StatusCreated, r.status, string(r.body))
	job := r.json(t)
	require.Equal(t, job["first_execution_time"], job["next_execution_time"])
	next, err := time.Parse("2006-01-02T15:04:05Z", job["next_execution_time"].(string))
	require.NoError(t, err)
	require.Zero(t, next.Second(), "a per-minute pattern fires on the minute")

	jid := job["id"].(string)
	r = doJSON(t, "PUT", ts.URL+"/v1/jobs/"+jid, `{"name": null, "status": "paused", "pattern": null, "next_execution_time": null, "function_input": null}`)
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	require.Equal(t, "paused", r.json(t)["status"])
	r = doJSON(t, "PUT", ts.URL+"/v1/jobs/"+jid, `{"status": "running"}`)
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	r = doJSON(t, "PUT", ts.URL+"/v1/jobs/"+jid, `{"status": "exploded"}`)
	require.Equal(t, http.StatusBadRequest, r.status)
	r = doJSON(t, "PUT", ts.URL+"/v1/jobs/"+jid, `{"pattern": ""}`)
	require.Equal(t, http.StatusBadRequest, r.status)
	require.Contains(t, r.json(t)["faultstring"], "Can not change job type.")

	r = do(t, "DELETE", ts.URL+"/v1/functions/"+fid, "", nil)
	require.Equal(t, http.StatusForbidden, r.status, "a running job keeps its function")
	list := doJSON(t, "GET", ts.URL+"/v1/jobs", "").json(t)["jobs"].([]any)
	require.Len(t, list, 1)
	var fields map[string]any
	b, _ := json.Marshal(list[0])
	require.NoError(t, json.Unmarshal(b, &fields))
	require.Len(t, fields, 14)
	require.Equal(t, http.StatusNoContent, do(t, "DELETE", ts.URL+"/v1/jobs/"+jid, "", nil).status)
}

// TestAPI_JobHandlerFiresOnce runs two job handlers on one database, as two
// API processes would, and shows each run of a job starts one execution and
// a count-2 job ends done after two runs.
func TestAPI_JobHandlerFiresOnce(t *testing.T) {
	srv, ts, orch := newAPI(t)
	fid, _ := createFunction(t, ts.URL, createRuntime(t, ts.URL))
	// Two handlers sharing the database and engine, as two API processes.
	one := &jobs.Handler{DB: srv.DB, Executions: srv.Executions, Log: srv.Log}
	other := &jobs.Handler{DB: srv.DB, Executions: srv.Executions, Log: srv.Log}
	// A yearly pattern: the run after a forced one is far away, so only the
	// forced runs are due (with "* * * * *" the next minute can fall inside
	// the handler's 3 s look-ahead and legitimately fire early).
	r := doJSON(t, "POST", ts.URL+"/v1/jobs", fmt.Sprintf(`{"function_id": %q, "pattern": "0 0 1 1 *", "count": 2, "function_input": "{\"name\": \"cron\"}"}`, fid))
	require.Equal(t, http.StatusCreated, r.status, string(r.body))
	jid := r.json(t)["id"].(string)
	makeDue := func() {
		require.NoError(t, srv.DB.UpdateJob(context.Background(), jid, map[string]any{"next_execution_time": time.Now().UTC().Add(-time.Second)}))
	}
	for run := 1; run <= 2; run++ {
		makeDue()
		var wg sync.WaitGroup
		for _, h := range []*jobs.Handler{one, other, one, other} {
			wg.Add(1)
			go func() { defer wg.Done(); h.FireDue(context.Background()) }()
		}
		wg.Wait()
		execs := doJSON(t, "GET", ts.URL+"/v1/executions?description=has:"+jid, "").json(t)["executions"].([]any)
		require.Len(t, execs, run, "run %d started exactly one execution", run)
	}
	job := doJSON(t, "GET", ts.URL+"/v1/jobs/"+jid, "").json(t)
	require.Equal(t, "done", job["status"])
	require.EqualValues(t, 0, job["count"])
	require.Eventually(t, func() bool { return len(orch.Calls().Run) == 2 }, 5*time.Second, 10*time.Millisecond)
	require.JSONEq(t, `{"name": "cron"}`, string(orch.Calls().Run[0].Invocation.Input))
}

func TestAPI_RuntimeImageUpdate(t *testing.T) {
	ts, _ := newServer(t)
	rt := createRuntime(t, ts.URL)
	r := doJSON(t, "PUT", ts.URL+"/v1/runtimes/"+rt, `{"image": "python3.11", "name": "renamed"}`)
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	require.Equal(t, "python3.11", r.json(t)["image"])
	require.Equal(t, "renamed", r.json(t)["name"])
	require.Eventually(t, func() bool {
		return doJSON(t, "GET", ts.URL+"/v1/runtimes/"+rt, "").json(t)["status"] == "available"
	}, 5*time.Second, 10*time.Millisecond)

	fid, _ := createFunction(t, ts.URL, rt)
	require.Equal(t, http.StatusCreated, doJSON(t, "POST", ts.URL+"/v1/executions", fmt.Sprintf(`{"function_id": %q}`, fid)).status)
	r = doJSON(t, "PUT", ts.URL+"/v1/runtimes/"+rt, `{"image": "python3"}`)
	require.Equal(t, http.StatusForbidden, r.status, "a function with workers holds the image")
	require.Contains(t, r.json(t)["faultstring"], "still in use by functions")
}
