package metrics

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// RouteUnmatched is the route label of requests no route template matched,
// so unknown paths never become label values.
const RouteUnmatched = "unmatched"

// InstrumentHTTP counts and times every request next answers, labelled by
// the route template net/http's ServeMux matched (r.Pattern, without its
// method), never by the raw path. next must route on the request it is
// given (wrappers that copy the request must copy r.Pattern back).
func (m *Metrics) InstrumentHTTP(next http.Handler) http.Handler {
	if m == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &codeRecorder{ResponseWriter: w, code: http.StatusOK}
		defer func() {
			// A panic is answered 500 by the caller's recovery; count it so.
			p := recover()
			if p != nil {
				rec.code = http.StatusInternalServerError
			}
			route := Route(r.Pattern)
			m.httpRequests.WithLabelValues(method(r.Method), route, strconv.Itoa(rec.code)).Inc()
			m.httpDuration.WithLabelValues(method(r.Method), route).Observe(time.Since(start).Seconds())
			if p != nil {
				panic(p)
			}
		}()
		next.ServeHTTP(rec, r)
	})
}

// Route turns a ServeMux pattern ("GET /v1/functions/{id}") into the route
// label ("/v1/functions/{id}"); the catch-all "/" and no pattern are
// RouteUnmatched.
func Route(pattern string) string {
	if i := strings.IndexByte(pattern, ' '); i >= 0 {
		pattern = pattern[i+1:]
	}
	// A host-qualified pattern keeps only its path.
	if i := strings.IndexByte(pattern, '/'); i > 0 {
		pattern = pattern[i:]
	}
	if pattern == "" || pattern == "/" {
		return RouteUnmatched
	}
	return pattern
}

// method is the method label: a client's made-up method is "other", so
// clients cannot create series.
func method(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions:
		return m
	}
	return "other"
}

type codeRecorder struct {
	http.ResponseWriter
	code  int
	wrote bool
}

func (c *codeRecorder) WriteHeader(code int) {
	if !c.wrote {
		c.code, c.wrote = code, true
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *codeRecorder) Write(b []byte) (int, error) {
	c.wrote = true
	return c.ResponseWriter.Write(b)
}

// Flush keeps streamed answers (lists) streaming.
func (c *codeRecorder) Flush() {
	if f, ok := c.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection.
func (c *codeRecorder) Unwrap() http.ResponseWriter { return c.ResponseWriter }
