// Package metrics is qinling-go's Prometheus instrumentation: one registry
// per process (the all-in-one's API and engine share it), the Go runtime and
// process collectors, and the service's own collectors, named by
// Prometheus's rules (base units, counters end in _total) and never
// labelled per execution, request or user (docs/operations.md lists them).
//
// Call sites stay one line where the event happens: the methods below take
// what the caller already has, are safe for concurrent use, and do nothing
// on a nil *Metrics (unit tests that do not look at metrics pass none).
package metrics

import (
	"crypto/subtle"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// namespace prefixes every metric of the service.
const namespace = "qinling"

// Label values of executions_total's status are the execution statuses
// (success, failed, error); these are the reasons of executions_failed_total
// that are not an error kind.
const (
	// ReasonFunction: the function ran and failed (an exception, a result
	// that is not JSON, its timeout, or a resource limit).
	ReasonFunction = "function"
	// ReasonWorkerLost: the worker died during the execution.
	ReasonWorkerLost = "worker_lost"
	// ReasonEngineStopped: the engine stopped during the execution.
	ReasonEngineStopped = "engine_stopped"
)

// Buckets of the execution histograms, in seconds: from a warm call
// (milliseconds) to upstream's longest timeout (300 s).
var (
	durationBuckets  = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}
	coldStartBuckets = []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}
	httpBuckets      = []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300}
)

// Metrics holds a process's registry and collectors.
type Metrics struct {
	reg *prometheus.Registry

	executions    *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	wait          prometheus.Histogram
	coldStart     prometheus.Histogram
	coldStarts    *prometheus.CounterVec
	inFlight      prometheus.Gauge
	rejected      *prometheus.CounterVec
	failed        *prometheus.CounterVec
	memorySeconds *prometheus.CounterVec
	httpRequests  *prometheus.CounterVec
	httpDuration  *prometheus.HistogramVec
	scaling       scaling
}

// New returns a process's metrics on a registry of their own, with the Go
// runtime and process collectors.
func New() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help}, labels)
	}
	histogram := func(name, help string, buckets []float64) prometheus.HistogramOpts {
		return prometheus.HistogramOpts{Namespace: namespace, Name: name, Help: help, Buckets: buckets}
	}
	m.executions = counter("executions_total",
		"Executions finished, by project, function and final status (success, failed, error).",
		"project_id", "function_id", "status")
	m.duration = prometheus.NewHistogramVec(histogram("execution_duration_seconds",
		"The function's own run time, as its worker measured it, by final status.", durationBuckets), []string{"status"})
	m.wait = prometheus.NewHistogram(histogram("execution_wait_seconds",
		"Time from the API recording an execution until a worker received it: queueing for an engine and getting a worker, cold start included.", durationBuckets))
	m.coldStart = prometheus.NewHistogram(histogram("cold_start_seconds",
		"Time to specialise workers for a function (one observation per scale-up).", coldStartBuckets))
	m.coldStarts = counter("cold_starts_total",
		"Workers specialised for a function (cold starts), by project and function.", "project_id", "function_id")
	m.inFlight = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: "executions_in_flight",
		Help: "Executions this engine is running now."})
	m.rejected = counter("executions_rejected_total",
		"Execution requests refused before an execution was recorded, by reason (the error kind: not_found, conflict for a runtime that is not available, forbidden, invalid, unavailable, ...).", "reason")
	m.failed = counter("executions_failed_total",
		"Executions that ended failed or error, by reason: function (the function failed), worker_lost, engine_stopped, or the error kind that kept it from running.", "reason")
	m.memorySeconds = counter("execution_memory_byte_seconds_total",
		"Memory reserved by executions times their duration (memory_size x duration), by project; divided by 2^30 it is Lambda's GB-seconds.", "project_id")
	m.httpRequests = counter("http_requests_total",
		"HTTP requests answered, by method, route template and status code.", "method", "route", "code")
	m.httpDuration = prometheus.NewHistogramVec(histogram("http_request_duration_seconds",
		"Time to answer HTTP requests, by method and route template.", httpBuckets), []string{"method", "route"})

	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.executions, m.duration, m.wait, m.coldStart, m.coldStarts, m.inFlight,
		m.rejected, m.failed, m.memorySeconds, m.httpRequests, m.httpDuration,
	)
	m.scaling = newScaling()
	m.reg.MustRegister(m.scaling.collectors()...)
	return m
}

// Registry is the process's registry, for collectors of other packages.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in Prometheus's text format (a collector that
// fails leaves out only its own metrics). With a token,
// only requests bearing it (Authorization: Bearer <token>, as Prometheus's
// scrape authorization sends) are answered; others get 401.
func (m *Metrics) Handler(token string) http.Handler {
	h := promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg, ErrorHandling: promhttp.ContinueOnError})
	if token == "" {
		return h
	}
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="qinling metrics"`)
			http.Error(w, "metrics need the configured bearer token", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}
