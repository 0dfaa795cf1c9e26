package api_test

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestRouting_WrongMethod: a known path with a method it has no route for is
// a JSON 405 with Allow; an unknown path stays a 404.
func TestRouting_WrongMethod(t *testing.T) {
	ts, _ := newServer(t)
	for _, tc := range []struct {
		method, path string
		status       int
		allow        string
	}{
		{"PATCH", "/v1/runtimes", 405, "GET, HEAD, POST"},
		{"DELETE", "/v1/functions", 405, "GET, HEAD, POST"},
		{"POST", "/v1/functions/6d2b0a9e-0000-4000-8000-000000000000", 405, "GET, HEAD, PUT, DELETE"},
		{"PUT", "/v1/executions/6d2b0a9e-0000-4000-8000-000000000000", 405, "GET, HEAD, DELETE"},
		{"GET", "/v1/webhooks/6d2b0a9e-0000-4000-8000-000000000000/invoke", 405, "POST"},
		{"GET", "/v1/functions/6d2b0a9e-0000-4000-8000-000000000000/scale_up", 405, "POST"},
		{"PUT", "/v1/functions/6d2b0a9e-0000-4000-8000-000000000000/versions/1/detach", 405, "POST"},
		{"POST", "/v1/", 405, "GET, HEAD"},
		{"DELETE", "/", 405, "GET, HEAD"},
		{"PATCH", "/v1/nothing-here", 404, ""},
		{"GET", "/v2/functions", 404, ""},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			r := doJSON(t, tc.method, ts.URL+tc.path, "{}")
			require.Equal(t, tc.status, r.status, "%s", r.body)
			require.Equal(t, "application/json", r.header.Get("Content-Type"))
			require.Equal(t, tc.allow, r.header.Get("Allow"))
			fault := r.json(t)["faultstring"].(string)
			if tc.status == 405 {
				path := tc.path
				if len(path) > 1 {
					path = strings.TrimSuffix(path, "/") // the API drops trailing slashes
				}
				require.Equal(t, "Method "+tc.method+" is not allowed on "+path+"; allowed: "+tc.allow+".", fault)
			}
		})
	}
}

// TestRouting_TooLargeNamesOption: every 413 names the option that sets the
// limit it hit.
func TestRouting_TooLargeNamesOption(t *testing.T) {
	ts, _ := newServer(t)
	rt := createRuntime(t, ts.URL)
	ct, body := multipartBody(t, map[string]string{"runtime_id": rt, "code": `{"source": "package"}`}, bytes.Repeat([]byte("x"), 2<<20))
	r := do(t, "POST", ts.URL+"/v1/functions", ct, body)
	require.Equal(t, http.StatusRequestEntityTooLarge, r.status, "%s", r.body)
	require.Contains(t, r.json(t)["faultstring"], "set by [storage] max_package_size.")

	r = doJSON(t, "POST", ts.URL+"/v1/executions", `{"input": "`+strings.Repeat("x", 1<<20)+`"}`)
	require.Equal(t, http.StatusRequestEntityTooLarge, r.status, "%s", r.body)
	require.Equal(t, "Request body is larger than the limit of 1048576 bytes set by [api] max_body_size.", r.json(t)["faultstring"])

	r = do(t, "PUT", ts.URL+"/v1/functions/6d2b0a9e-0000-4000-8000-000000000000", "application/x-www-form-urlencoded",
		strings.NewReader("description="+strings.Repeat("x", 1<<20)))
	require.Equal(t, http.StatusRequestEntityTooLarge, r.status, "%s", r.body)
	require.Contains(t, r.json(t)["faultstring"], "set by [api] max_body_size.")
}
