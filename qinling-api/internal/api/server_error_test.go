package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/errdefs"
)

// TestWriteError_RetryAfter: an error that says when to retry answers with
// its status and a Retry-After in whole seconds, rounded up; others have none.
func TestWriteError_RetryAfter(t *testing.T) {
	for _, tc := range []struct {
		name       string
		err        error
		status     int
		retryAfter string
	}{
		{name: "queue full", err: errdefs.TooMany(1500*time.Millisecond, "Too many executions."), status: http.StatusTooManyRequests, retryAfter: "2"},
		{name: "conflict has none", err: errdefs.Conflict("Busy."), status: http.StatusConflict},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			writeError(rec, tc.err)
			require.Equal(t, tc.status, rec.Code)
			require.Equal(t, tc.retryAfter, rec.Header().Get("Retry-After"))
			var body map[string]any
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
			require.Equal(t, errdefs.PublicMessage(tc.err), body["faultstring"])
		})
	}
}
