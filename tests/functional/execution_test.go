//go:build functional

package functional

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/testutil"
)

// TestExecutionLifecycle: sync and async runs, show, list filters, log, delete.
func TestExecutionLifecycle(t *testing.T) {
	t.Parallel()
	fid := newFunction(t, "exec-lifecycle", "hello.main", map[string]string{"hello.py": helloPy})

	syncEx := execute(t, srv, fid, `{"name": "x"}`, true)
	syncID := syncEx["id"].(string)
	require.Equal(t, "success", syncEx["status"], "%v", syncEx)
	out, duration := result(t, syncEx)
	assert.Equal(t, "Hello, x", out)
	assert.GreaterOrEqual(t, duration, 0.0)
	assert.Nil(t, syncEx["function_alias"])
	assert.Equal(t, 0.0, syncEx["function_version"])
	assert.Equal(t, srv.ProjectID(t), syncEx["project_id"])

	asyncEx := execute(t, srv, fid, `{"name": "async"}`, false)
	asyncID := asyncEx["id"].(string)
	assert.Equal(t, "running", asyncEx["status"], "an async execution answers before it runs")
	assert.Nil(t, asyncEx["result"])
	asyncEx = waitExecution(t, srv, asyncID)
	require.Equal(t, "success", asyncEx["status"], "%v", asyncEx)
	out, _ = result(t, asyncEx)
	assert.Equal(t, "Hello, async", out)

	t.Run("show", func(t *testing.T) {
		r := call(t, srv, http.MethodGet, "/v1/executions/"+syncID, nil)
		expect(t, r, http.StatusOK)
		got := r.Object(t)
		requireShape(t, got, executionFields)
		for _, f := range []string{"id", "function_id", "status", "sync", "input", "result", "created_at"} {
			assert.Equal(t, syncEx[f], got[f], f)
		}
	})

	t.Run("list", func(t *testing.T) {
		for _, tc := range []struct {
			name  string
			query string
			want  []string // ids that must be listed
			check func(t *testing.T, ex map[string]any)
		}{
			{name: "all", query: "", want: []string{syncID, asyncID}},
			{
				name: "by function", query: "?function_id=" + fid, want: []string{syncID, asyncID},
				check: func(t *testing.T, ex map[string]any) { assert.Equal(t, fid, ex["function_id"]) },
			},
			{
				name: "by status with in:", query: "?status=" + url.QueryEscape("in:success,failed"), want: []string{syncID, asyncID},
				check: func(t *testing.T, ex map[string]any) { assert.Contains(t, []any{"success", "failed"}, ex["status"]) },
			},
			{
				// The client sends --filter values without URL-encoding them.
				name: "by function and raw in: status", query: "?function_id=" + fid + "&status=in:running,failed", want: nil,
				check: func(t *testing.T, ex map[string]any) { t.Errorf("nothing should match, got %v", ex) },
			},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := call(t, srv, http.MethodGet, "/v1/executions"+tc.query, nil)
				expect(t, r, http.StatusOK)
				var body struct {
					Executions []map[string]any `json:"executions"`
				}
				r.Decode(t, &body)
				require.NotNil(t, body.Executions, "%s: want {\"executions\": [...]}", r)
				ids := map[any]bool{}
				for _, ex := range body.Executions {
					requireShape(t, ex, executionFields)
					ids[ex["id"]] = true
					if tc.check != nil {
						tc.check(t, ex)
					}
				}
				for _, id := range tc.want {
					assert.True(t, ids[id], "execution %s not listed by GET /v1/executions%s", id, tc.query)
				}
			})
		}
	})

	t.Run("log", func(t *testing.T) {
		r := call(t, srv, http.MethodGet, "/v1/executions/"+syncID+"/log", nil, "Accept", "text/plain")
		expect(t, r, http.StatusOK)
		assert.True(t, strings.HasPrefix(r.Header.Get("Content-Type"), "text/plain"), "%s", r)
		assert.Contains(t, string(r.Body), "Hello, x")
		// The client json.loads any log first; a log that is valid JSON
		// would crash `execution log show` (docs/api.md, GET /v1/executions/{id}/log).
		assert.False(t, json.Valid(r.Body), "log must not be a JSON document: %q", r.Body)
	})

	t.Run("delete", func(t *testing.T) {
		r := call(t, srv, http.MethodDelete, "/v1/executions/"+asyncID, nil)
		expect(t, r, http.StatusNoContent)
		assert.Empty(t, r.Body, "204 must have an empty body")
		r = call(t, srv, http.MethodGet, "/v1/executions/"+asyncID, nil)
		expect(t, r, http.StatusNotFound)
		r.Fault(t)
	})
}

// TestExecutionInputs: how `--input` reaches the function (docs/api.md, POST /v1/executions):
// a JSON object becomes keyword arguments; anything else is one positional
// argument, echoed back exactly as sent.
func TestExecutionInputs(t *testing.T) {
	t.Parallel()
	fid := helloFunction(t)
	for _, tc := range []struct {
		name      string
		input     any
		want      string
		wantInput any // how the execution shows its input
	}{
		{name: "object is kwargs", input: `{"name": "x"}`, want: "Hello, x", wantInput: map[string]any{"name": "x"}},
		{name: "raw string is positional", input: "Qinling", want: "Hello, Qinling", wantInput: "Qinling"},
		{name: "integer is positional", input: "42", want: "Hello, 42", wantInput: "42"},
		{name: "no input", input: nil, want: "Hello, World", wantInput: nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ex := succeeds(t, srv, fid, tc.input, tc.want)
			if obj, ok := tc.wantInput.(map[string]any); ok {
				s, isString := ex["input"].(string)
				require.True(t, isString, "input is rendered as a JSON string, got %T", ex["input"])
				var got map[string]any
				require.NoError(t, json.Unmarshal([]byte(s), &got), "input %q", s)
				assert.Equal(t, obj, got)
			} else {
				assert.Equal(t, tc.wantInput, ex["input"])
			}
			r := call(t, srv, http.MethodGet, "/v1/executions/"+ex["id"].(string)+"/log", nil)
			expect(t, r, http.StatusOK)
			assert.Contains(t, string(r.Body), tc.want, "the function's print goes to the log")
		})
	}
}

// TestExecutionFailures: a function that fails in any way ends `failed` with
// a clear output, and the service keeps running other functions.
func TestExecutionFailures(t *testing.T) {
	t.Parallel()
	good := helloFunction(t)
	for _, tc := range []struct {
		name    string
		files   map[string]string
		entry   string
		timeout string
		outHas  []string // the output contains one of these (case-insensitive)
		logHas  []string // the log contains all of these
	}{
		{
			name:   "raises",
			files:  map[string]string{"bad.py": "def main(**kwargs):\n    raise ValueError('boom from function')\n"},
			entry:  "bad.main",
			outHas: []string{"boom from function"},
			logHas: []string{"Traceback", "ValueError", "boom from function"},
		},
		{
			name:   "returns what JSON cannot encode",
			files:  map[string]string{"bad.py": "def main(**kwargs):\n    return {1, 2}\n"},
			entry:  "bad.main",
			outHas: []string{"json", "serializ"},
		},
		{
			name:    "runs past its timeout",
			files:   map[string]string{"bad.py": "import time\n\ndef main(**kwargs):\n    time.sleep(5)\n    return 'too late'\n"},
			entry:   "bad.main",
			timeout: "1",
			outHas:  []string{"timeout"},
		},
		{
			name:   "entry function missing",
			files:  map[string]string{"bad.py": "def main(**kwargs):\n    return 1\n"},
			entry:  "bad.nope",
			outHas: []string{"nope"},
		},
		{
			name:   "entry module missing",
			files:  map[string]string{"bad.py": "def main(**kwargs):\n    return 1\n"},
			entry:  "missing.main",
			outHas: []string{"missing"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			timeout := tc.timeout
			if timeout == "" {
				timeout = "5"
			}
			fid := newFunction(t, "failing", tc.entry, tc.files, "timeout", timeout)
			ex := execute(t, srv, fid, nil, true)
			require.Equal(t, "failed", ex["status"], "%v", ex)
			out, duration := result(t, ex)
			msg, _ := out.(string)
			require.NotEmpty(t, msg, "a failed execution's output explains why, got %v", out)
			matched := false
			for _, s := range tc.outHas {
				matched = matched || strings.Contains(strings.ToLower(msg), strings.ToLower(s))
			}
			assert.True(t, matched, "output %q should mention one of %q", msg, tc.outHas)
			if tc.timeout != "" {
				assert.Less(t, duration, 5.0, "the function must be stopped at its timeout")
			}
			if len(tc.logHas) > 0 {
				r := call(t, srv, http.MethodGet, "/v1/executions/"+ex["id"].(string)+"/log", nil)
				expect(t, r, http.StatusOK)
				for _, s := range tc.logHas {
					assert.Contains(t, string(r.Body), s)
				}
			}
			// The failure stays with that function.
			succeeds(t, srv, good, `{"name": "after `+tc.name+`"}`, "Hello, after "+tc.name)
		})
	}
}

// TestExecutionPackageWithTwoModules: the package directory is importable, so
// modules of one package can import each other (even circularly).
func TestExecutionPackageWithTwoModules(t *testing.T) {
	t.Parallel()
	fid := newFunction(t, "two-modules", "a.main", map[string]string{
		"a.py": "import b\n\nSUFFIX = '!'\n\ndef main(**kwargs):\n    return b.greet('pkg')\n",
		"b.py": "import a\n\ndef greet(name):\n    return 'hi %s%s' % (name, a.SUFFIX)\n",
	})
	succeeds(t, srv, fid, nil, "hi pkg!")
}

// TestExecutionAfterPackageUpdate: a new package replaces the code that runs
// (the engine must drop workers specialised for the old one).
func TestExecutionAfterPackageUpdate(t *testing.T) {
	t.Parallel()
	fid := newFunction(t, "versioned", "m.main", map[string]string{"m.py": "def main(**kwargs):\n    return 'v1'\n"})
	succeeds(t, srv, fid, nil, "v1")

	pkg := testutil.Zip(t, map[string]string{"m.py": "def main(**kwargs):\n    return 'v2'\n"})
	r := call(t, srv, http.MethodPut, "/v1/functions/"+fid, &testutil.Form{
		Fields: map[string]string{"source": "package"},
		Files:  map[string]testutil.File{"package": {Name: "versioned.zip", Data: pkg}},
	})
	expect(t, r, http.StatusOK)
	succeeds(t, srv, fid, nil, "v2")

	fn := call(t, srv, http.MethodGet, "/v1/functions/"+fid, nil).Object(t)
	assert.Equal(t, 2.0, fn["count"], "count is the number of executions of version 0")
}
