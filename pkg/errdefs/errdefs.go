// Package errdefs gives every error in qinling-go a kind. The kind decides the
// HTTP status (in exactly one place, HTTPStatus) and travels across the RPC
// transport, so an engine's "not found" is still a 404 when the API answers.
package errdefs

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Kind classifies an error by what the caller should do about it.
type Kind string

// The kinds, with the HTTP status each one maps to.
const (
	KindInvalid          Kind = "invalid"            // 400: the request itself is wrong
	KindUnauthorized     Kind = "unauthorized"       // 401: no or bad credentials
	KindForbidden        Kind = "forbidden"          // 403: policy or ownership forbids it
	KindNotFound         Kind = "not_found"          // 404
	KindMethodNotAllowed Kind = "method_not_allowed" // 405
	KindConflict         Kind = "conflict"           // 409: state does not allow it now
	KindTooLarge         Kind = "too_large"          // 413
	KindTooMany          Kind = "too_many_requests"  // 429: a bound on waiting work is reached; retry later
	KindUnavailable      Kind = "unavailable"        // 503: a dependency is down; retry later
	KindTimeout          Kind = "timeout"            // 504
	KindInternal         Kind = "internal"           // 500: a bug or an unexpected failure
)

var statusByKind = map[Kind]int{
	KindInvalid:          http.StatusBadRequest,
	KindUnauthorized:     http.StatusUnauthorized,
	KindForbidden:        http.StatusForbidden,
	KindNotFound:         http.StatusNotFound,
	KindMethodNotAllowed: http.StatusMethodNotAllowed,
	KindConflict:         http.StatusConflict,
	KindTooLarge:         http.StatusRequestEntityTooLarge,
	KindTooMany:          http.StatusTooManyRequests,
	KindUnavailable:      http.StatusServiceUnavailable,
	KindTimeout:          http.StatusGatewayTimeout,
	KindInternal:         http.StatusInternalServerError,
}

// Kinds lists every kind; tests use it to check the tables stay complete.
func Kinds() []Kind {
	out := make([]Kind, 0, len(statusByKind))
	for k := range statusByKind {
		out = append(out, k)
	}
	return out
}

// Error is an error with a kind and a message that is safe to show to users.
type Error struct {
	Kind Kind
	Msg  string
	Err  error // optional cause, never shown to users
	// RetryAfter, when set, tells the caller when to try again (the API's
	// Retry-After header).
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Msg + ": " + e.Err.Error()
	}
	return e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

// Is makes errors.Is(err, errdefs.ErrNotFound) true for any not-found error.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Msg == "" && t.Kind == e.Kind
}

// Sentinels to compare with errors.Is; they match any error of their kind.
var (
	ErrInvalid      = &Error{Kind: KindInvalid}
	ErrUnauthorized = &Error{Kind: KindUnauthorized}
	ErrForbidden    = &Error{Kind: KindForbidden}
	ErrNotFound     = &Error{Kind: KindNotFound}
	ErrConflict     = &Error{Kind: KindConflict}
	ErrTooLarge     = &Error{Kind: KindTooLarge}
	ErrTooMany      = &Error{Kind: KindTooMany}
	ErrUnavailable  = &Error{Kind: KindUnavailable}
	ErrTimeout      = &Error{Kind: KindTimeout}
	ErrInternal     = &Error{Kind: KindInternal}
)

// New returns an error of the given kind with a formatted, user-visible message.
func New(kind Kind, format string, args ...any) error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

// Wrap gives cause a kind and a user-visible message; the cause stays for logs.
func Wrap(kind Kind, cause error, format string, args ...any) error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...), Err: cause}
}

// Invalid is shorthand for New(KindInvalid, ...).
func Invalid(format string, args ...any) error { return New(KindInvalid, format, args...) }

// NotFound is shorthand for New(KindNotFound, ...).
func NotFound(format string, args ...any) error { return New(KindNotFound, format, args...) }

// Forbidden is shorthand for New(KindForbidden, ...).
func Forbidden(format string, args ...any) error { return New(KindForbidden, format, args...) }

// Conflict is shorthand for New(KindConflict, ...).
func Conflict(format string, args ...any) error { return New(KindConflict, format, args...) }

// Unavailable is shorthand for New(KindUnavailable, ...).
func Unavailable(format string, args ...any) error { return New(KindUnavailable, format, args...) }

// TooMany is a KindTooMany error asking the caller to retry after retry.
func TooMany(retry time.Duration, format string, args ...any) error {
	return &Error{Kind: KindTooMany, Msg: fmt.Sprintf(format, args...), RetryAfter: retry}
}

// RetryAfter is when the caller may try again after err; 0 when err does not
// say.
func RetryAfter(err error) time.Duration {
	var e *Error
	if errors.As(err, &e) {
		return e.RetryAfter
	}
	return 0
}

// KindOf returns the kind of err: the outermost *Error's kind, timeout for a
// context deadline, and internal for everything else.
func KindOf(err error) Kind {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return KindTimeout
	}
	return KindInternal
}

// HTTPStatus maps an error to the status the API answers with.
func HTTPStatus(err error) int {
	if s, ok := statusByKind[KindOf(err)]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// PublicMessage is the text a user may see. Internal errors never leak their
// cause (it may hold paths, SQL or credentials); the request ID in the response
// header ties the answer to the log line that has the detail.
func PublicMessage(err error) string {
	var e *Error
	if errors.As(err, &e) && e.Kind != KindInternal && e.Msg != "" {
		return e.Msg
	}
	switch KindOf(err) {
	case KindTimeout:
		return "The operation timed out."
	case KindInternal:
		return "Internal server error."
	}
	return err.Error()
}

// Wire is an error as it crosses the RPC transport.
type Wire struct {
	Kind       Kind    `json:"kind"`
	Message    string  `json:"message"`
	RetryAfter float64 `json:"retry_after,omitempty"` // seconds
}

// ToWire converts err for the transport; nil stays nil.
func ToWire(err error) *Wire {
	if err == nil {
		return nil
	}
	return &Wire{Kind: KindOf(err), Message: PublicMessage(err), RetryAfter: RetryAfter(err).Seconds()}
}

// FromWire rebuilds an error with the same kind and message on the caller's side.
func FromWire(w *Wire) error {
	if w == nil {
		return nil
	}
	kind := w.Kind
	if _, ok := statusByKind[kind]; !ok {
		kind = KindInternal
	}
	return &Error{Kind: kind, Msg: w.Message, RetryAfter: time.Duration(w.RetryAfter * float64(time.Second))}
}
