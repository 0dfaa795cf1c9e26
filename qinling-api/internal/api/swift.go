package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/qinling-go/qinling/pkg/db"
	"github.com/qinling-go/qinling/pkg/errdefs"
	"github.com/qinling-go/qinling/pkg/reqctx"
	"github.com/qinling-go/qinling/storage/swiftcode"
)

// Functions whose code is an object in the caller's own Swift account
// (docs/storage.md, "Functions from a Swift object"). The object is checked
// with the caller's token and its ETag recorded; the engine later fetches
// those bytes through the Keystone trust made here.

// checkSwift reads container/object as the caller: upstream's answers when
// authentication is off (there is no token to read it with) or the object
// cannot be used.
func (s *Server) checkSwift(ctx context.Context, container, object string) (swiftcode.Object, error) {
	id := reqctx.From(ctx)
	if s.Swift == nil || !id.AuthEnabled {
		return swiftcode.Object{}, errdefs.Invalid("Swift object not supported.")
	}
	o, err := s.Swift.Check(ctx, id, container, object)
	if err != nil {
		// The answer is upstream's one sentence; the log says why.
		reqctx.Logger(ctx, s.Log).Warn("swift object refused", "container", container, "object", object, "error", err)
	}
	return o, err
}

func swiftCodeOf(o swiftcode.Object) db.Code {
	return db.Code{Source: db.SourceSwift, Swift: &db.SwiftCode{Container: o.Container, Object: o.Object, ETag: o.ETag}}
}

func recordedObject(c db.Code) swiftcode.Object {
	if c.Swift == nil {
		return swiftcode.Object{}
	}
	return swiftcode.Object{Container: c.Swift.Container, Object: c.Swift.Object, ETag: c.Swift.ETag}
}

// createSwiftFunction stores f with code from the object code names, and
// the trust the engine reads it with.
func (s *Server) createSwiftFunction(ctx context.Context, f *db.Function, code db.Code) (any, int, error) {
	if code.Swift == nil || code.Swift.Container == "" || code.Swift.Object == "" {
		return nil, 0, errdefs.Invalid("Both container and object must be provided for swift type function.")
	}
	obj, err := s.checkSwift(ctx, code.Swift.Container, code.Swift.Object)
	if err != nil {
		return nil, 0, err
	}
	id := reqctx.From(ctx)
	trust, err := s.Swift.CreateTrust(ctx, id)
	if err != nil {
		return nil, 0, err
	}
	f.TrustID = &trust
	f.SetCode(swiftCodeOf(obj))
	if err := s.DB.CreateFunction(ctx, f); err != nil {
		s.deleteTrust(context.WithoutCancel(ctx), f)
		return nil, 0, err
	}
	return renderFunction(f, false), http.StatusCreated, nil
}

// deleteTrust removes f's trust; a failure is logged only (Keystone lets
// only the trustor or an admin delete it, upstream's behaviour too).
func (s *Server) deleteTrust(ctx context.Context, f *db.Function) {
	if f.TrustID == nil || *f.TrustID == "" || s.Swift == nil {
		return
	}
	if err := s.Swift.DeleteTrust(ctx, reqctx.From(ctx), *f.TrustID); err != nil {
		reqctx.Logger(ctx, s.Log).Warn("delete the function's trust", "function_id", f.ID, "trust_id", *f.TrustID, "error", err)
	}
}

// requestedSwift reads what an update asks of a swift function's object:
// code = {"source": "swift", "swift": {...}} (a JSON code), or the
// python-qinlingclient's flattened form, which sends the dict's keys only
// (swift=container&swift=object): nothing to change, read the object again.
// A swift value holding a JSON object is read as the dict.
func requestedSwift(requested *db.Code, form *functionForm) (*db.SwiftCode, error) {
	sw := (*db.SwiftCode)(nil)
	if requested != nil {
		sw = requested.Swift
	}
	if v, ok := form.get("swift"); ok && sw == nil && strings.HasPrefix(strings.TrimSpace(v), "{") {
		sw = &db.SwiftCode{}
		if err := json.Unmarshal([]byte(v), sw); err != nil {
			return nil, errdefs.Invalid("Invalid input, swift must be a JSON object such as {\"container\": \"c\", \"object\": \"o\"}: %v", err)
		}
	}
	if sw != nil && sw.Container == "" && sw.Object == "" {
		return nil, errdefs.Invalid("Either container or object must be provided for swift type function update.")
	}
	return sw, nil
}

// updatedSwiftCode is a swift function's code after an update: the
// requested container and object merged into the current ones, checked
// again as the caller, with the ETag the object has now. Every update that
// restarts workers records it, so the next execution runs what is in Swift.
func (s *Server) updatedSwiftCode(ctx context.Context, current db.Code, sw *db.SwiftCode) (db.Code, error) {
	obj := recordedObject(current)
	if sw != nil {
		if sw.Container != "" {
			obj.Container = sw.Container
		}
		if sw.Object != "" {
			obj.Object = sw.Object
		}
	}
	checked, err := s.checkSwift(ctx, obj.Container, obj.Object)
	if err != nil {
		return db.Code{}, err
	}
	return swiftCodeOf(checked), nil
}

// downloadSwift streams the recorded bytes of f's object, read as the caller.
func (s *Server) downloadSwift(w http.ResponseWriter, r *http.Request, f *db.Function) (any, int, error) {
	id := reqctx.From(r.Context())
	if s.Swift == nil || !id.AuthEnabled {
		return nil, 0, errdefs.Invalid("Swift object not supported.")
	}
	rc, err := s.Swift.Download(r.Context(), id, recordedObject(f.ParsedCode()))
	if err != nil {
		return nil, 0, err
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "application/zip")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s"`, f.ID))
	w.WriteHeader(http.StatusOK)
	if _, err := io.Copy(w, rc); err != nil {
		reqctx.Logger(r.Context(), s.Log).Warn("swift object download interrupted", "function_id", f.ID, "error", err)
	}
	return nil, 0, nil
}
