package rpc_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/errdefs"
	"github.com/qinling-go/qinling/pkg/reqctx"
	"github.com/qinling-go/qinling/pkg/rpc"
)

type runArgs struct {
	ExecutionID string          `json:"execution_id"`
	Input       json.RawMessage `json:"input"`
}

// argsHandler records how it was handed its arguments.
type argsHandler struct {
	values, raws int
	got          runArgs
}

func (h *argsHandler) NewArgs(method string) any {
	if method == "run" {
		return new(runArgs)
	}
	return nil
}

func (h *argsHandler) Handle(_ context.Context, method string, raw json.RawMessage) (any, error) {
	h.raws++
	if method != "run" {
		return nil, errdefs.Invalid("Unknown method %q.", method)
	}
	if err := json.Unmarshal(raw, &h.got); err != nil {
		return nil, errdefs.Invalid("Malformed arguments for %s: %v", method, err)
	}
	return outcome{Status: "success"}, nil
}

func (h *argsHandler) HandleValue(_ context.Context, _ string, args any) (any, error) {
	h.values++
	if err := rpc.Assign(args, &h.got); err != nil {
		return nil, err
	}
	return outcome{Status: "success"}, nil
}

// TestWireRequest: a request's body is what the envelope always encoded
// to, and an ArgsHandler gets its arguments decoded once, as a value; any
// other body reaches the handler as JSON, with the errors it always gave.
func TestWireRequest(t *testing.T) {
	ctx := reqctx.With(context.Background(), reqctx.Identity{RequestID: "req-1", ProjectID: "p", Roles: []string{"member"}, AuthEnabled: true})
	args := runArgs{ExecutionID: "e-<1>&", Input: json.RawMessage(`{"a": [1, 2]}`)}
	body, err := rpc.EncodeRequest(ctx, "run", args)
	require.NoError(t, err)
	req, err := rpc.NewRequest(ctx, "run", args)
	require.NoError(t, err)
	old, err := json.Marshal(req)
	require.NoError(t, err)
	require.Equal(t, string(old), string(body), "the wire format is unchanged")

	for _, tc := range []struct {
		name         string
		body         string
		values, raws int
		errKind      errdefs.Kind
	}{
		{name: "method first: one pass", body: string(body), values: 1},
		{name: "keys in another case", body: `{"Method": "run", "ARGS": {"execution_id": "e"}, "context": {}}`, raws: 1},
		{name: "spaces", body: `{ "method": "run", "args": {"execution_id": "e"}, "context": {}}`, raws: 1},
		{name: "another method named again", body: `{"method":"run","args":{"execution_id": "e"},"method":"nope","context":{}}`, raws: 1, errKind: errdefs.KindInvalid},
		{name: "arguments before the method", body: `{"args": {"execution_id": "e"}, "method": "run", "context": {}}`, raws: 1},
		{name: "unknown method", body: `{"method": "nope", "args": {}, "context": {}}`, raws: 1, errKind: errdefs.KindInvalid},
		{name: "arguments of the wrong type", body: `{"method": "run", "args": {"execution_id": 3}, "context": {}}`, raws: 1, errKind: errdefs.KindInvalid},
		{name: "no arguments", body: `{"method": "run", "context": {}}`, raws: 1, errKind: errdefs.KindInvalid},
		{name: "null arguments", body: `{"method":"run","args":null,"context":{}}`, values: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &argsHandler{}
			req, err := rpc.DecodeRequest([]byte(tc.body), h)
			require.NoError(t, err)
			resp := rpc.Dispatch(context.Background(), h, req)
			require.Equal(t, tc.values, h.values, "handed as a value")
			require.Equal(t, tc.raws, h.raws, "handed as JSON")
			if tc.errKind != "" {
				require.NotNil(t, resp.Error)
				require.Equal(t, tc.errKind, resp.Error.Kind)
				return
			}
			require.Nil(t, resp.Error)
			var got outcome
			require.NoError(t, rpc.DecodeResponse(rpc.EncodeResponse(resp), &got))
			require.Equal(t, "success", got.Status)
		})
	}
	t.Run("the identity and arguments arrive", func(t *testing.T) {
		h := &argsHandler{}
		req, err := rpc.DecodeRequest(body, h)
		require.NoError(t, err)
		require.Equal(t, reqctx.From(ctx), req.Identity)
		rpc.Dispatch(context.Background(), h, req)
		require.Equal(t, args.ExecutionID, h.got.ExecutionID)
		require.JSONEq(t, string(args.Input), string(h.got.Input))
	})
	for _, bad := range []string{`{"method": "run", "args": {}`, `not json`, `{"method": "run", "args": {}} {}`} {
		t.Run("malformed "+bad, func(t *testing.T) {
			_, err := rpc.DecodeRequest([]byte(bad), &argsHandler{})
			require.Error(t, err)
		})
	}
}

// TestWireResponse: a reply's body is what the envelope always encoded to,
// and decodes into the caller's reply or its error with the kind.
func TestWireResponse(t *testing.T) {
	result := "ok"
	out := outcome{Status: "success", Result: &result}
	encoded, err := json.Marshal(out)
	require.NoError(t, err)
	for _, tc := range []struct {
		name string
		resp rpc.Response
	}{
		{name: "a value", resp: rpc.Response{Value: out}},
		{name: "JSON", resp: rpc.Response{Result: encoded}},
		{name: "nothing", resp: rpc.Response{}},
		{name: "an error", resp: rpc.Response{Error: errdefs.ToWire(errdefs.NotFound("Execution %s not found.", "x"))}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := tc.resp
			if want.Value != nil {
				want = rpc.Response{Result: encoded}
			}
			old, err := json.Marshal(want)
			require.NoError(t, err)
			body := rpc.EncodeResponse(tc.resp)
			require.Equal(t, string(old), string(body), "the wire format is unchanged")

			var got, viaOld outcome
			err = rpc.DecodeResponse(body, &got)
			var env rpc.Response
			require.NoError(t, json.Unmarshal(old, &env))
			oldErr := env.Decode(&viaOld)
			require.Equal(t, viaOld, got)
			require.Equal(t, errdefs.KindOf(oldErr), errdefs.KindOf(err))
			if oldErr != nil {
				require.EqualError(t, err, oldErr.Error())
			}
		})
	}
	t.Run("a malformed reply is an internal error", func(t *testing.T) {
		err := rpc.DecodeResponse([]byte(`{"result": `), &outcome{})
		require.Equal(t, errdefs.KindInternal, errdefs.KindOf(err))
		var syntax *json.SyntaxError
		require.True(t, errors.As(err, &syntax))
	})
	t.Run("no reply wanted", func(t *testing.T) {
		require.NoError(t, rpc.DecodeResponse([]byte(`{"result": {"status": "x"}}`), nil))
	})
}

// BenchmarkDecodeRequest compares reading a create_execution-sized request
// for an ArgsHandler (one pass) with reading the envelope and then its
// arguments (as before).
func BenchmarkDecodeRequest(b *testing.B) {
	ctx := reqctx.With(context.Background(), reqctx.Identity{RequestID: "req-0123456789", ProjectID: "0123456789abcdef0123456789abcdef", Roles: []string{"member", "reader"}, AuthEnabled: true})
	body, err := rpc.EncodeRequest(ctx, "run", runArgs{ExecutionID: "5f0c2d0e-8a0e-4f7e-9d4a-0d7a1c9b2e11", Input: json.RawMessage(`{"name": "qinling", "n": 1}`)})
	require.NoError(b, err)
	h := &argsHandler{}
	b.Run("one pass", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			req, err := rpc.DecodeRequest(body, h)
			if err != nil || req.Value == nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("envelope then arguments", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			var req rpc.Request
			var a runArgs
			if err := json.Unmarshal(body, &req); err != nil {
				b.Fatal(err)
			}
			if err := json.Unmarshal(req.Args, &a); err != nil {
				b.Fatal(err)
			}
		}
	})
}
