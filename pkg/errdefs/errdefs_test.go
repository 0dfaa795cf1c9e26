package errdefs_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/errdefs"
)

func TestKinds_HTTPAndWire(t *testing.T) {
	want := map[errdefs.Kind]int{
		errdefs.KindInvalid: 400, errdefs.KindUnauthorized: 401, errdefs.KindForbidden: 403,
		errdefs.KindNotFound: 404, errdefs.KindMethodNotAllowed: 405, errdefs.KindConflict: 409,
		errdefs.KindTooLarge: 413, errdefs.KindTooMany: 429, errdefs.KindUnavailable: 503, errdefs.KindTimeout: 504,
		errdefs.KindInternal: 500,
	}
	require.Len(t, errdefs.Kinds(), len(want), "every kind has a status here")
	for _, k := range errdefs.Kinds() {
		t.Run(string(k), func(t *testing.T) {
			err := fmt.Errorf("op x: %w", errdefs.New(k, "message of %s", k))
			require.Equal(t, want[k], errdefs.HTTPStatus(err))
			back := errdefs.FromWire(errdefs.ToWire(err))
			require.Equal(t, k, errdefs.KindOf(back), "the kind survives the wire")
			require.Equal(t, errdefs.HTTPStatus(err), errdefs.HTTPStatus(back))
			if k != errdefs.KindInternal {
				require.Equal(t, "message of "+string(k), errdefs.PublicMessage(back))
			}
		})
	}
}

func TestPublicMessage(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want string
		code int
	}{
		{"plain error is internal and hidden", errors.New("dial tcp 10.0.0.1: password=x"), "Internal server error.", http.StatusInternalServerError},
		{"wrapped cause is not shown", errdefs.Wrap(errdefs.KindInvalid, errors.New("secret"), "Bad input."), "Bad input.", http.StatusBadRequest},
		{"deadline is a timeout", fmt.Errorf("x: %w", context.DeadlineExceeded), "The operation timed out.", http.StatusGatewayTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, errdefs.PublicMessage(tc.err))
			require.Equal(t, tc.code, errdefs.HTTPStatus(tc.err))
		})
	}
}

func TestRetryAfter(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want time.Duration
	}{
		{"too many says when", fmt.Errorf("start: %w", errdefs.TooMany(5*time.Second, "Too many.")), 5 * time.Second},
		{"across the wire", errdefs.FromWire(errdefs.ToWire(errdefs.TooMany(1500*time.Millisecond, "Too many."))), 1500 * time.Millisecond},
		{"other errors do not", errdefs.Conflict("busy"), 0},
		{"plain errors do not", errors.New("x"), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, errdefs.RetryAfter(tc.err))
		})
	}
	require.Equal(t, http.StatusTooManyRequests, errdefs.HTTPStatus(errdefs.TooMany(time.Second, "x")))
}

func TestIs(t *testing.T) {
	err := fmt.Errorf("get: %w", errdefs.NotFound("Function not found [id=1]"))
	require.ErrorIs(t, err, errdefs.ErrNotFound)
	require.NotErrorIs(t, err, errdefs.ErrInvalid)
	require.Equal(t, errdefs.KindInternal, errdefs.KindOf(errdefs.FromWire(&errdefs.Wire{Kind: "martian", Message: "m"})))
}
