package metrics_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/qinling-go/qinling/pkg/metrics"
)

// BenchmarkPerExecution is what metrics add to one execution: the engine's
// in-flight gauge and outcome counters, and the API's request counter and
// histogram (docs/operations.md, "Cost").
func BenchmarkPerExecution(b *testing.B) {
	m := metrics.New()
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/executions", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusCreated) })
	h := m.InstrumentHTTP(mux)
	req := httptest.NewRequest(http.MethodPost, "/v1/executions", nil)
	w := httptest.NewRecorder()
	f := metrics.Finished{ProjectID: "p", FunctionID: "f", Status: "success", Duration: 10 * time.Millisecond, Wait: time.Millisecond, MemorySize: 1 << 25}
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, req)
		done := m.ExecutionRunning()
		m.ExecutionFinished(f)
		done()
	}
}

// BenchmarkHandlerOnly is the same request without metrics, for comparison.
func BenchmarkHandlerOnly(b *testing.B) {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/executions", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusCreated) })
	req := httptest.NewRequest(http.MethodPost, "/v1/executions", nil)
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		mux.ServeHTTP(w, req)
	}
}
