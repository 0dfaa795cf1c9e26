package api

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strings"

	"github.com/qinling-go/qinling/pkg/errdefs"
)

// functionForm is a function create/update request in whichever encoding the
// client chose: multipart (with a package), urlencoded, or a JSON object.
// Every value is kept as the string the form would have carried.
type functionForm struct {
	values  map[string]string
	pkg     multipart.File
	pkgSize int64
}

func (f *functionForm) get(k string) (string, bool) {
	v, ok := f.values[k]
	return v, ok
}

func (f *functionForm) close() {
	if f.pkg != nil {
		f.pkg.Close()
	}
}

// functionFields are the keys function create/update understand; others are
// refused so typos do not pass silently.
var functionFields = map[string]bool{
	"code": true, "name": true, "description": true, "runtime_id": true, "entry": true,
	"cpu": true, "memory_size": true, "timeout": true, "package": true,
	// qinling-go's, admin only (workerlimits.go).
	"min_workers": true, "max_workers": true,
	// The CLI flattens the code dict on update: source=package, swift=...
	"source": true, "swift": true, "image": true,
	// Read-only fields some clients echo back; ignored as upstream did.
	"count": true, "id": true, "project_id": true, "created_at": true, "updated_at": true, "latest_version": true,
}

// parseFunctionForm reads the request body. Bodies are bounded: a package
// upload by the package size limit plus room for the other fields.
func (s *Server) parseFunctionForm(w http.ResponseWriter, r *http.Request) (*functionForm, error) {
	ct := r.Header.Get("Content-Type")
	mt, _, _ := mime.ParseMediaType(ct)
	form := &functionForm{values: map[string]string{}}
	switch mt {
	case "multipart/form-data":
		r.Body = http.MaxBytesReader(w, r.Body, s.Limits.MaxPackageSize+s.Limits.MaxBodySize)
		if err := r.ParseMultipartForm(8 << 20); err != nil {
			return nil, formErrorFor(err, s.Limits.MaxPackageSize, packageSizeOption)
		}
		for k, vs := range r.MultipartForm.Value {
			form.values[k] = strings.Join(vs, ",")
		}
		if fhs := r.MultipartForm.File["package"]; len(fhs) > 0 {
			if fhs[0].Size > s.Limits.MaxPackageSize {
				return nil, tooLarge("Package", s.Limits.MaxPackageSize, packageSizeOption)
			}
			f, err := fhs[0].Open()
			if err != nil {
				return nil, errdefs.Invalid("Could not read the package: %v", err)
			}
			form.pkg, form.pkgSize = f, fhs[0].Size
			form.values["package"] = fhs[0].Filename
		}
	case "application/x-www-form-urlencoded":
		r.Body = http.MaxBytesReader(w, r.Body, s.Limits.MaxBodySize)
		if err := r.ParseForm(); err != nil {
			return nil, formError(err, s.Limits.MaxBodySize)
		}
		for k, vs := range r.PostForm {
			form.values[k] = strings.Join(vs, ",")
		}
	case "application/json":
		var obj map[string]json.RawMessage
		if err := s.decodeJSON(r, &obj); err != nil {
			return nil, err
		}
		for k, raw := range obj {
			v, err := jsonFormValue(k, raw)
			if err != nil {
				return nil, err
			}
			if v != nil {
				form.values[k] = *v
			}
		}
	case "":
		// No body type: accept an empty body (PUT with nothing to change).
		b, _ := io.ReadAll(io.LimitReader(r.Body, 1))
		if len(b) > 0 {
			return nil, errdefs.Invalid("Content-Type is required: use multipart/form-data, application/x-www-form-urlencoded or application/json.")
		}
	default:
		return nil, errdefs.Invalid("Unsupported Content-Type %q: use multipart/form-data, application/x-www-form-urlencoded or application/json.", mt)
	}
	for k := range form.values {
		if !functionFields[k] {
			form.close()
			return nil, errdefs.Invalid("Unknown attribute for argument: %s", k)
		}
	}
	return form, nil
}

// jsonFormValue turns one member of a JSON body into its form string. code
// must be a JSON string holding JSON, as upstream (and the clients) send it.
func jsonFormValue(k string, raw json.RawMessage) (*string, error) {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, errdefs.Invalid("Request is not in valid JSON format.")
	}
	switch t := v.(type) {
	case nil:
		return nil, nil
	case string:
		return &t, nil
	case float64, bool:
		s := string(raw)
		return &s, nil
	}
	if k == "code" {
		return nil, errdefs.Invalid("Invalid input for field/attribute code: it must be a string holding a JSON object, e.g. \"{\\\"source\\\": \\\"package\\\"}\".")
	}
	return nil, errdefs.Invalid("Invalid input for field/attribute %s: a string or a number is required.", k)
}

// The options that set the size limits, named in every 413 so the operator
// knows what to raise.
const (
	packageSizeOption = "[storage] max_package_size"
	bodySizeOption    = "[api] max_body_size"
)

// tooLarge is the 413 for what exceeds limit, which option sets.
func tooLarge(what string, limit int64, option string) error {
	return errdefs.New(errdefs.KindTooLarge, "%s is larger than the limit of %d bytes set by %s.", what, limit, option)
}

// formError is the error of a form body bounded by [api] max_body_size.
func formError(err error, limit int64) error { return formErrorFor(err, limit, bodySizeOption) }

func formErrorFor(err error, limit int64, option string) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) || strings.Contains(err.Error(), "request body too large") {
		return tooLarge("Request body", limit, option)
	}
	return errdefs.Invalid("Malformed form data: %v", err)
}
