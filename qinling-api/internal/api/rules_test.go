package api_test

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/db"
	"github.com/qinling-go/qinling/pkg/testutil"
)

// functionForm is a package function create with the given entry.
func functionForm(t *testing.T, runtimeID, entry string) (string, io.Reader) {
	t.Helper()
	pkg := testutil.Zip(t, map[string]string{"hello.py": "def main(**kw):\n    return 1\n"})
	sum := md5.Sum(pkg)
	fields := map[string]string{"runtime_id": runtimeID, "code": fmt.Sprintf(`{"source": "package", "md5sum": "%s"}`, hex.EncodeToString(sum[:]))}
	if entry != "-" {
		fields["entry"] = entry
	}
	return multipartBody(t, fields, pkg)
}

func TestAPI_FunctionEntry(t *testing.T) {
	t.Parallel()
	ts, _ := newServer(t)
	rt := createRuntime(t, ts.URL)
	fid, _ := createFunction(t, ts.URL, rt)
	for _, tc := range []struct {
		name, entry string
		status      int
		want        string // the stored entry, or a part of the fault
	}{
		{name: "module and function", entry: "hello.main", status: 201, want: "hello.main"},
		{name: "package module", entry: "pkg.mod.main", status: 201, want: "pkg.mod.main"},
		{name: "default", entry: "-", status: 201, want: "main.main"},
		{name: "empty is the default", entry: "", status: 201, want: "main.main"},
		{name: "no dot", entry: "main", status: 400, want: "use <module>.<function>, such as hello.main"},
		{name: "no module", entry: ".main", status: 400, want: "both the module and the function name"},
		{name: "no function", entry: "hello.", status: 400, want: "both the module and the function name"},
		{name: "empty module part", entry: "a..main", status: 400, want: "both the module and the function name"},
		{name: "space", entry: "hello. main", status: 400, want: "must not contain spaces"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ct, body := functionForm(t, rt, tc.entry)
			r := do(t, "POST", ts.URL+"/v1/functions", ct, body)
			require.Equal(t, tc.status, r.status, string(r.body))
			if tc.status == 201 {
				require.Equal(t, tc.want, r.json(t)["entry"])
				return
			}
			require.Contains(t, r.json(t)["faultstring"], tc.want)
		})
	}
	t.Run("update refuses an entry without a dot too", func(t *testing.T) {
		ct, body := multipartBody(t, map[string]string{"entry": "main"}, nil)
		r := do(t, "PUT", ts.URL+"/v1/functions/"+fid, ct, body)
		require.Equal(t, http.StatusBadRequest, r.status, string(r.body))
		require.Contains(t, r.json(t)["faultstring"], "<module>.<function>")
	})
}

// TestAPI_RuntimeNotAvailable: one answer, 409, wherever a runtime that is
// not available is asked to take work.
func TestAPI_RuntimeNotAvailable(t *testing.T) {
	t.Parallel()
	srv, ts, _ := newAPI(t)
	rt := createRuntime(t, ts.URL)
	fid, _ := createFunction(t, ts.URL, rt)
	require.NoError(t, srv.DB.UpdateRuntime(context.Background(), rt, map[string]any{"status": db.StatusError}))
	want := fmt.Sprintf("Runtime %s is not available.", rt)
	ct, body := functionForm(t, rt, "hello.main")
	for _, tc := range []struct {
		name string
		r    response
	}{
		{name: "function create", r: do(t, "POST", ts.URL+"/v1/functions", ct, body)},
		{name: "execution create", r: doJSON(t, "POST", ts.URL+"/v1/executions", fmt.Sprintf(`{"function_id": %q}`, fid))},
		{name: "runtime image update", r: doJSON(t, "PUT", ts.URL+"/v1/runtimes/"+rt, `{"image": "python3.11"}`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, http.StatusConflict, tc.r.status, string(tc.r.body))
			require.Equal(t, want, tc.r.json(t)["faultstring"])
		})
	}
}

// TestAPI_LogOfRunningExecution: the log is written when an execution ends;
// until then `openstack function execution log show` prints what the body
// says, so it says the execution is running (not JSON, which the CLI would
// try to decode).
func TestAPI_LogOfRunningExecution(t *testing.T) {
	t.Parallel()
	srv, ts, _ := newAPI(t)
	fid, _ := createFunction(t, ts.URL, createRuntime(t, ts.URL))
	ctx := context.Background()
	running := &db.Execution{Base: db.Base{ProjectID: "default"}, FunctionID: &fid, Status: db.StatusRunning}
	require.NoError(t, srv.DB.CreateExecution(ctx, running))
	r := do(t, "GET", ts.URL+"/v1/executions/"+running.ID+"/log", "", nil)
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, "text/plain; charset=utf-8", r.header.Get("Content-Type"))
	require.Equal(t, "Execution "+running.ID+" is still running: its log is complete when it has finished.\n", string(r.body))

	logs := "Start\nHello\nFinished\n"
	_, err := srv.DB.FinishExecution(ctx, running.ID, db.StatusSuccess, nil, &logs)
	require.NoError(t, err)
	r = do(t, "GET", ts.URL+"/v1/executions/"+running.ID+"/log", "", nil)
	require.Equal(t, logs, string(r.body), "a finished execution's log is only its log")

	silent := &db.Execution{Base: db.Base{ProjectID: "default"}, FunctionID: &fid, Status: db.StatusSuccess}
	require.NoError(t, srv.DB.CreateExecution(ctx, silent))
	r = do(t, "GET", ts.URL+"/v1/executions/"+silent.ID+"/log", "", nil)
	require.Equal(t, http.StatusNoContent, r.status, "an empty finished log is 204, as upstream")
}

// TestAPI_JobRules: the edge cases of count, first_execution_time and
// pattern, each a 400 naming what is wrong.
func TestAPI_JobRules(t *testing.T) {
	t.Parallel()
	ts, _ := newServer(t)
	fid, _ := createFunction(t, ts.URL, createRuntime(t, ts.URL))
	at := func(d time.Duration) string { return time.Now().UTC().Add(d).Format("2006-01-02 15:04:05") }
	for _, tc := range []struct {
		name, fields string // JSON members besides function_id
		status       int
		fault        string
	}{
		{name: "never matches", fields: `"pattern": "0 0 30 2 *"`, status: 400, fault: "never matches a date"},
		{name: "every second", fields: `"pattern": "@every 1s"`, status: 400, fault: "at least one minute apart"},
		{name: "seconds field", fields: `"pattern": "*/30 * * * * *"`, status: 400, fault: "seconds are not supported"},
		{name: "time zone", fields: `"pattern": "TZ=UTC * * * * *"`, status: 400, fault: "time zones are not supported"},
		{name: "every minute", fields: `"pattern": "@every 1m"`, status: 201},
		{name: "count zero", fields: `"pattern": "* * * * *", "count": 0`, status: 400, fault: "count must be between 1 and 2147483647"},
		{name: "count negative", fields: `"pattern": "* * * * *", "count": -3`, status: 400, fault: "count must be between 1"},
		{name: "count beyond the column", fields: `"pattern": "* * * * *", "count": 2147483648`, status: 400, fault: "count must be between 1"},
		{name: "count beyond an integer", fields: `"pattern": "* * * * *", "count": 99999999999999999999`, status: 400, fault: "is not an integer"},
		{name: "count as text", fields: `"pattern": "* * * * *", "count": "3"`, status: 201},
		{name: "largest count", fields: `"pattern": "* * * * *", "count": 2147483647`, status: 201},
		{name: "no count runs without end", fields: `"pattern": "* * * * *", "count": null`, status: 201},
		{name: "first time in the past", fields: `"first_execution_time": "2001-01-01 00:00"`, status: 400, fault: "at least 1 minute in the future"},
		{name: "first time too soon", fields: `"first_execution_time": "` + at(10*time.Second) + `"`, status: 400, fault: "at least 1 minute in the future"},
		{name: "first time malformed", fields: `"first_execution_time": "next tuesday"`, status: 400, fault: "Invalid first_execution_time"},
		{name: "first time out of the calendar", fields: `"first_execution_time": "2030-02-30 00:00"`, status: 400, fault: "Invalid first_execution_time"},
		{name: "first time far future", fields: `"first_execution_time": "9999-12-31 23:59"`, status: 400, fault: "at most 100 years in the future"},
		{name: "far future with a pattern", fields: `"first_execution_time": "9999-12-31 23:59", "pattern": "0 0 1 1 *"`, status: 400, fault: "at most 100 years"},
		{name: "one shot", fields: `"first_execution_time": "` + at(time.Hour) + `"`, status: 201},
		{name: "one shot counted twice", fields: `"first_execution_time": "` + at(time.Hour) + `", "count": 2`, status: 400, fault: "pattern must be provided if count is greater than 1."},
		{name: "first time with pattern", fields: `"first_execution_time": "` + at(time.Hour) + `", "pattern": "*/10 * * * *"`, status: 201},
		{name: "leap day from 2097 has no run for seven years", fields: `"first_execution_time": "2097-03-01 00:00", "pattern": "0 0 29 2 *"`, status: 400, fault: "no run within five years"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := doJSON(t, "POST", ts.URL+"/v1/jobs", fmt.Sprintf(`{"function_id": %q, %s}`, fid, tc.fields))
			require.Equal(t, tc.status, r.status, string(r.body))
			if tc.status != 201 {
				require.Contains(t, r.json(t)["faultstring"], tc.fault)
				return
			}
			require.Equal(t, http.StatusNoContent, do(t, "DELETE", ts.URL+"/v1/jobs/"+r.json(t)["id"].(string), "", nil).status)
		})
	}
	t.Run("update applies the pattern rules", func(t *testing.T) {
		r := doJSON(t, "POST", ts.URL+"/v1/jobs", fmt.Sprintf(`{"function_id": %q, "pattern": "@daily"}`, fid))
		require.Equal(t, http.StatusCreated, r.status, string(r.body))
		jid := r.json(t)["id"].(string)
		for _, body := range []string{`{"pattern": "@every 30s"}`, `{"pattern": "0 0 31 4 *"}`, `{"next_execution_time": "9999-01-01 00:00"}`} {
			r = doJSON(t, "PUT", ts.URL+"/v1/jobs/"+jid, body)
			require.Equal(t, http.StatusBadRequest, r.status, "%s: %s", body, r.body)
		}
	})
}
