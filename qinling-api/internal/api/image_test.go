package api_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/qinling-api/internal/api"
)

// The CLI's `function create --image`: a urlencoded form without runtime_id.
func TestAPI_ImageFunctions(t *testing.T) {
	form := func(code string) string {
		return url.Values{"code": {code}, "name": {"sleeper"}, "timeout": {"7"}}.Encode()
	}
	for _, tc := range []struct {
		name    string
		enabled bool
		code    string
		status  int
		message string
	}{
		{name: "orchestrator without image functions", code: `{"source": "image", "image": "busybox:1"}`,
			status: http.StatusBadRequest, message: "not supported by this deployment's orchestrator"},
		{name: "created", enabled: true, code: `{"source": "image", "image": "busybox:1"}`, status: http.StatusCreated},
		{name: "no image", enabled: true, code: `{"source": "image"}`, status: http.StatusBadRequest, message: "image"},
		{name: "bad image", enabled: true, code: `{"source": "image", "image": "a b"}`, status: http.StatusBadRequest, message: "Invalid image reference"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, ts, _ := newAPIWith(t, api.NoAuth{}, func(s *api.Server) { s.ImageFunctions = tc.enabled })
			r := do(t, "POST", ts.URL+"/v1/functions", "application/x-www-form-urlencoded", strings.NewReader(form(tc.code)))
			require.Equal(t, tc.status, r.status, "%s", r.body)
			body := r.json(t)
			if tc.status != http.StatusCreated {
				require.Contains(t, body["faultstring"], tc.message)
				return
			}
			require.Equal(t, map[string]any{"source": "image", "image": "busybox:1"}, body["code"])
			require.Nil(t, body["runtime_id"])
			require.Nil(t, body["entry"])
			require.EqualValues(t, 7, body["timeout"])
			// An image function has no package to download.
			dl := do(t, "GET", ts.URL+"/v1/functions/"+body["id"].(string)+"?download=true", "", nil)
			require.Equal(t, http.StatusMethodNotAllowed, dl.status)
		})
	}
}
