package rpc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"

	"github.com/qinling-go/qinling/pkg/errdefs"
	"github.com/qinling-go/qinling/pkg/reqctx"
)

// The wire transports' message bodies: a request is {"method", "args",
// "context"} and a reply {"result"} or {"error"}, the fields of Request and
// Response. The functions here write and read exactly those bodies, in one
// pass over the JSON each: reading a request's envelope and then its
// arguments again took twice the time and bytes (docs/benchmarks.md, "The
// engine's and the API's share").

// ArgsHandler is a ValueHandler that names the Go type of each method's
// arguments, so that a wire transport decodes them straight from the
// message and hands them over as a value (HandleValue).
type ArgsHandler interface {
	ValueHandler
	// NewArgs returns a pointer to a fresh value of method's argument
	// type, or nil for a method it does not know.
	NewArgs(method string) any
}

// wireRequest is Request as it is encoded: the arguments in place.
type wireRequest struct {
	Method   string          `json:"method"`
	Args     any             `json:"args"`
	Identity reqctx.Identity `json:"context"`
}

// EncodeRequest is the body of a request for method with args, the
// identity taken from ctx: what json.Marshal of NewRequest's envelope
// gives, with args encoded once.
func EncodeRequest(ctx context.Context, method string, args any) ([]byte, error) {
	b, err := json.Marshal(wireRequest{Method: method, Args: args, Identity: reqctx.From(ctx)})
	if err != nil {
		return nil, errdefs.Wrap(errdefs.KindInternal, err, "encode arguments of %s", method)
	}
	return b, nil
}

// DecodeRequest reads a request's body for h. When h is an ArgsHandler
// that knows the method and the body begins as every encoder of this tree
// begins it (EncodeRequest: the method, then the arguments), the body is
// read in one json.Unmarshal, the arguments straight into the handler's
// type (Request.Value). Any other body, and one whose arguments do not fit
// that type, is read as before, the arguments left as JSON for the handler
// to decode and to report errors as it always did.
func DecodeRequest(body []byte, h Handler) (Request, error) {
	if ah, ok := h.(ArgsHandler); ok {
		if req, ok := decodeTyped(body, ah); ok {
			return req, nil
		}
	}
	var req Request
	err := json.Unmarshal(body, &req)
	return req, err
}

// decodeTyped is DecodeRequest's one pass; false when it cannot be used.
func decodeTyped(body []byte, h ArgsHandler) (Request, bool) {
	rest, ok := bytes.CutPrefix(body, []byte(`{"method":"`))
	end := bytes.IndexByte(rest, '"')
	if !ok || end < 0 || bytes.IndexByte(rest[:end], '\\') >= 0 || !bytes.HasPrefix(rest[end+1:], []byte(`,"args":`)) {
		return Request{}, false
	}
	args := h.NewArgs(string(rest[:end]))
	if args == nil {
		return Request{}, false
	}
	// encoding/json decodes into the pointer an interface holds.
	w := wireRequest{Args: args}
	if err := json.Unmarshal(body, &w); err != nil || w.Method != string(rest[:end]) {
		return Request{}, false
	}
	return Request{Method: w.Method, Value: args, Identity: w.Identity}, true
}

// wireResponse is Response as it is encoded: a value's result in place.
type wireResponse struct {
	Result any           `json:"result,omitempty"`
	Error  *errdefs.Wire `json:"error,omitempty"`
}

// EncodeResponse is the body of a reply: what json.Marshal of resp gives,
// a Value encoded as its result once.
func EncodeResponse(resp Response) []byte {
	w := wireResponse{Error: resp.Error}
	switch {
	case resp.Value != nil:
		w.Result = resp.Value
	case len(resp.Result) > 0:
		w.Result = resp.Result
	}
	b, err := json.Marshal(w)
	if err != nil {
		b, _ = json.Marshal(wireResponse{Error: errdefs.ToWire(err)})
	}
	return b
}

// DecodeResponse reads a reply's body into reply (when not nil) in one
// pass, or returns its error with its kind, as Response.Decode does for a
// decoded envelope. A body that is not JSON is an internal error.
func DecodeResponse(body []byte, reply any) error {
	w := wireResponse{Result: reply}
	if reply == nil {
		w.Result = &json.RawMessage{}
	}
	err := json.Unmarshal(body, &w)
	if w.Error != nil {
		return errdefs.FromWire(w.Error)
	}
	var syntax *json.SyntaxError
	if errors.As(err, &syntax) {
		return errdefs.Wrap(errdefs.KindInternal, err, "Malformed reply from the engine.")
	}
	return err
}
