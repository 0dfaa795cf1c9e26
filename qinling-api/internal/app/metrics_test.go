package app

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/config"
	"github.com/qinling-go/qinling/pkg/metrics"
)

func TestWithMetrics(t *testing.T) {
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	on := config.Default().Metrics
	off := on
	off.APIEnabled = false
	guarded := on
	guarded.BearerToken = "s3cret"
	for _, tc := range []struct {
		name, method, path, auth string
		cfg                      config.Metrics
		want                     int
	}{
		{"metrics served", http.MethodGet, "/metrics", "", on, http.StatusOK},
		{"metrics disabled go to the API", http.MethodGet, "/metrics", "", off, http.StatusTeapot},
		{"other method goes to the API", http.MethodPost, "/metrics", "", on, http.StatusTeapot},
		{"other path goes to the API", http.MethodGet, "/v1/functions", "", on, http.StatusTeapot},
		{"token required", http.MethodGet, "/metrics", "", guarded, http.StatusUnauthorized},
		{"token given", http.MethodGet, "/metrics", "Bearer s3cret", guarded, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(tc.method, tc.path, nil)
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			rec := httptest.NewRecorder()
			withMetrics(tc.cfg, metrics.New(), api).ServeHTTP(rec, req)
			require.Equal(t, tc.want, rec.Code)
			if tc.want == http.StatusOK {
				require.True(t, strings.HasPrefix(rec.Header().Get("Content-Type"), "text/plain"))
				require.Contains(t, rec.Body.String(), "# TYPE qinling_executions_in_flight gauge")
			}
		})
	}
}
