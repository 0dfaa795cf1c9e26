package app

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/config"
)

func TestWithCORS(t *testing.T) {
	c := config.Default().CORS
	c.AllowedOrigin = []string{"https://dashboard.example"}
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusUnauthorized) })
	h := withCORS(c, inner)
	for _, tc := range []struct {
		name, method, origin string
		wantAllow            string
		wantStatus           int
	}{
		{"preflight from allowed origin is answered before auth", http.MethodOptions, "https://dashboard.example", "https://dashboard.example", http.StatusNoContent},
		{"actual request from allowed origin gets the header", http.MethodGet, "https://dashboard.example", "https://dashboard.example", http.StatusUnauthorized},
		{"other origin gets no header", http.MethodGet, "https://evil.example", "", http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(tc.method, "/v1/functions", nil)
			req.Header.Set("Origin", tc.origin)
			if tc.method == http.MethodOptions {
				req.Header.Set("Access-Control-Request-Method", "GET")
				// Browsers send the header names lower-case, as the Fetch standard says.
				req.Header.Set("Access-Control-Request-Headers", "content-type,x-auth-token")
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			require.Equal(t, tc.wantStatus, rec.Code)
			require.Equal(t, tc.wantAllow, rec.Header().Get("Access-Control-Allow-Origin"))
		})
	}
	rec := httptest.NewRecorder()
	withCORS(config.Default().CORS, inner).ServeHTTP(rec, httptest.NewRequest(http.MethodOptions, "/", nil))
	require.Equal(t, http.StatusUnauthorized, rec.Code, "no origins, no CORS handling")
}
