package rpc_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/errdefs"
	"github.com/qinling-go/qinling/pkg/rpc"
)

// TestDispatchForward: a handler's Forward becomes the transport's
// ForwardTo only for a request that may be forwarded; for any other it is
// an internal error to the caller, never a silent empty answer.
func TestDispatchForward(t *testing.T) {
	forward := rpc.HandlerFunc(func(context.Context, string, json.RawMessage) (any, error) {
		return nil, &rpc.Forward{Engine: "engine-2"}
	})
	for _, tc := range []struct {
		name        string
		forwardable bool
		wantTo      string
		wantKind    errdefs.Kind
	}{
		{name: "from the shared queue", forwardable: true, wantTo: "engine-2"},
		{name: "routed already", wantKind: errdefs.KindInternal},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			if tc.forwardable {
				ctx = rpc.WithForwardable(ctx)
			}
			resp := rpc.Dispatch(ctx, forward, rpc.Request{Method: "m"})
			require.Equal(t, tc.wantTo, resp.ForwardTo)
			if tc.wantKind == "" {
				require.Nil(t, resp.Error)
				return
			}
			require.NotNil(t, resp.Error)
			require.Equal(t, tc.wantKind, errdefs.KindOf(resp.Decode(nil)))
		})
	}
}
