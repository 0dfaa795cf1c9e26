package api_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/testutil"
)

// TestAPI_WorkerLimits: a function's min_workers and max_workers
// (docs/scaling.md) are set by admins only, on create or update, each an
// integer from 1 to 1000 or "" for the deployment's default (1 and 10
// here), the minimum in force never above the maximum; they show in the
// function only when set.
func TestAPI_WorkerLimits(t *testing.T) {
	base, _ := newAuthServer(t)
	adminRT := createRuntimeAs(t, base, adminToken)
	adminFn := createFunctionAs(t, base, adminToken, adminRT)
	aliceFn := createFunctionAs(t, base, aliceToken, adminRT)
	update := func(token, id, body string) response {
		return callJSON(t, token, "PUT", base+"/v1/functions/"+id, body)
	}

	for _, tc := range []struct {
		name       string
		token, fn  string
		body       string
		wantStatus int
		wantFault  string         // part of the faultstring
		wantShown  map[string]any // min_workers, max_workers shown afterwards (absent: not set)
	}{
		{name: "admin sets both", token: adminToken, fn: adminFn, body: `{"min_workers": 2, "max_workers": 4}`,
			wantStatus: http.StatusOK, wantShown: map[string]any{"min_workers": 2.0, "max_workers": 4.0}},
		{name: "maximum below the minimum in force", token: adminToken, fn: adminFn, body: `{"max_workers": 1}`,
			wantStatus: http.StatusBadRequest, wantFault: "min_workers (2) must not exceed max_workers (1)"},
		{name: "zero", token: adminToken, fn: adminFn, body: `{"min_workers": 0}`,
			wantStatus: http.StatusBadRequest, wantFault: "Invalid min_workers \"0\": an integer from 1 to 1000"},
		{name: "too many", token: adminToken, fn: adminFn, body: `{"max_workers": 1001}`,
			wantStatus: http.StatusBadRequest, wantFault: "Invalid max_workers \"1001\""},
		{name: "not a number", token: adminToken, fn: adminFn, body: `{"max_workers": "lots"}`,
			wantStatus: http.StatusBadRequest, wantFault: "Invalid max_workers \"lots\""},
		{name: "minimum above the deployment's maximum", token: adminToken, fn: adminFn, body: `{"min_workers": 11, "max_workers": ""}`,
			wantStatus: http.StatusBadRequest, wantFault: "min_workers (11) must not exceed max_workers (10)"},
		{name: "admin resets the minimum", token: adminToken, fn: adminFn, body: `{"min_workers": ""}`,
			wantStatus: http.StatusOK, wantShown: map[string]any{"max_workers": 4.0}},
		{name: "a member may not", token: aliceToken, fn: aliceFn, body: `{"max_workers": 3}`,
			wantStatus: http.StatusForbidden, wantFault: "Operation not allowed"},
		{name: "a member's other changes pass", token: aliceToken, fn: aliceFn, body: `{"name": "renamed"}`,
			wantStatus: http.StatusOK, wantShown: map[string]any{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := update(tc.token, tc.fn, tc.body)
			require.Equal(t, tc.wantStatus, r.status, string(r.body))
			if tc.wantFault != "" {
				require.Contains(t, r.json(t)["faultstring"], tc.wantFault)
				return
			}
			got := r.json(t)
			shown := map[string]any{}
			for _, k := range []string{"min_workers", "max_workers"} {
				if v, ok := got[k]; ok {
					shown[k] = v
				}
			}
			require.Equal(t, tc.wantShown, shown)
		})
	}

	t.Run("on create, admin only", func(t *testing.T) {
		for _, tc := range []struct {
			token      string
			wantStatus int
		}{{adminToken, http.StatusCreated}, {aliceToken, http.StatusForbidden}} {
			ct, body := multipartBody(t, map[string]string{
				"runtime_id": adminRT, "entry": "hello.main", "code": `{"source": "package"}`, "max_workers": "3",
			}, testutil.Zip(t, map[string]string{"hello.py": "def main(**kw):\n    return 'hi'\n"}))
			r := call(t, tc.token, "POST", base+"/v1/functions", ct, body)
			require.Equal(t, tc.wantStatus, r.status, string(r.body))
			if tc.wantStatus == http.StatusCreated {
				require.Equal(t, 3.0, r.json(t)["max_workers"])
			}
		}
	})
}
