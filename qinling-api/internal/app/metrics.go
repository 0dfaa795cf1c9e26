package app

import (
	"net/http"

	"github.com/qinling-go/qinling/pkg/config"
	"github.com/qinling-go/qinling/pkg/metrics"
)

// withMetrics serves the process's Prometheus metrics at GET /metrics on
// the API's listener when [metrics] api_enabled, beside the v1 API and
// outside it: no Keystone token (Prometheus cannot get one; bearer_token
// guards it instead, as docs/operations.md explains), no request log line
// per scrape. Every other request goes to the API unchanged.
func withMetrics(c config.Metrics, m *metrics.Metrics, api http.Handler) http.Handler {
	if !c.APIEnabled || m == nil {
		return api
	}
	h := m.Handler(c.BearerToken)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/metrics" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			h.ServeHTTP(w, r)
			return
		}
		api.ServeHTTP(w, r)
	})
}
