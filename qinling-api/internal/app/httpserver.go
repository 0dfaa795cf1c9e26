package app

import (
	"net/http"

	"github.com/qinling-go/qinling/pkg/config"
)

// newHTTPServer is the API's http.Server, with [api]'s timeouts against slow
// clients: headers must arrive within read_header_timeout and the whole
// request within read_timeout, an idle keep-alive connection is closed after
// idle_timeout, and write_timeout (config.APIWriteTimeout) bounds the time to
// the end of the answer. Only the last can cut a request the client sent in
// time: net/http lifts the read deadline once a body has been read, so a
// synchronous execution runs past read_timeout with its context intact, and
// write_timeout is at least as long as the longest one.
func newHTTPServer(cfg *config.Config, h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: cfg.API.ReadHeaderTimeout,
		ReadTimeout:       cfg.API.ReadTimeout,
		IdleTimeout:       cfg.API.IdleTimeout,
		WriteTimeout:      cfg.APIWriteTimeout(),
	}
}
