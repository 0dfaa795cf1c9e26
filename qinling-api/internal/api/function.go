package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"strconv"
	"strings"
	"unicode"

	"github.com/qinling-go/qinling/pkg/db"
	"github.com/qinling-go/qinling/pkg/errdefs"
	"github.com/qinling-go/qinling/pkg/policy"
	"github.com/qinling-go/qinling/pkg/reqctx"
	"github.com/qinling-go/qinling/storage"
)

// parseCode reads the code field: a JSON object with a known source.
func parseCode(raw string) (db.Code, error) {
	var c db.Code
	dec := json.NewDecoder(strings.NewReader(raw))
	if err := dec.Decode(&c); err != nil {
		return c, errdefs.Invalid("Invalid input, code must be a JSON object such as {\"source\": \"package\"}: %v", err)
	}
	switch c.Source {
	case db.SourcePackage, db.SourceSwift, db.SourceImage:
	default:
		return c, errdefs.Invalid("Invalid code source specified, available sources: %s, %s, %s", db.SourcePackage, db.SourceSwift, db.SourceImage)
	}
	return c, nil
}

// resources are the validated cpu, memory_size and timeout of a request;
// zero means not given.
type resources struct {
	cpu     int64
	memory  int64
	timeout int64
	given   map[string]bool
}

// parseResources applies upstream's checks and messages.
func (s *Server) parseResources(form *functionForm) (resources, error) {
	res := resources{given: map[string]bool{}}
	l := s.Limits
	checks := []struct {
		field, name, unit string
		min, max          int64
		dst               *int64
	}{
		{"timeout", "timeout", "seconds", int64(l.MinTimeout), int64(l.MaxTimeout), &res.timeout},
		{"cpu", "cpu", "millicpu", int64(l.MinCPU), int64(l.MaxCPU), &res.cpu},
		{"memory_size", "memory", "bytes", l.MinMemory, l.MaxMemory, &res.memory},
	}
	for _, c := range checks {
		v, _ := form.get(c.field)
		n, ok, err := formInt(c.name, v)
		if err != nil {
			return res, err
		}
		if !ok {
			continue
		}
		if n < c.min || n > c.max {
			return res, errdefs.Invalid("%s resource limitation not within the allowable range: %d ~ %d(%s).", c.name, c.min, c.max, c.unit)
		}
		*c.dst, res.given[c.field] = n, true
	}
	return res, nil
}

func optValue(form *functionForm, k string, maxLen int) (*string, error) {
	v, ok := form.get(k)
	if !ok {
		return nil, nil
	}
	if len(v) > maxLen {
		return nil, errdefs.Invalid("%s is longer than %d characters.", k, maxLen)
	}
	return &v, nil
}

func (s *Server) createFunction(w http.ResponseWriter, r *http.Request) (any, int, error) {
	ctx := r.Context()
	form, err := s.parseFunctionForm(w, r)
	if err != nil {
		return nil, 0, err
	}
	defer form.close()
	rawCode, ok := form.get("code")
	if !ok || strings.TrimSpace(rawCode) == "" {
		return nil, 0, errdefs.Invalid("Required param is missing. Required: {'code'}")
	}
	code, err := parseCode(rawCode)
	if err != nil {
		return nil, 0, err
	}
	res, err := s.parseResources(form)
	if err != nil {
		return nil, 0, err
	}
	limits, err := s.parseWorkerLimits(ctx, form, nil)
	if err != nil {
		return nil, 0, err
	}
	name, err := optValue(form, "name", 255)
	if err != nil {
		return nil, 0, err
	}
	desc, err := optValue(form, "description", 255)
	if err != nil {
		return nil, 0, err
	}
	entry, err := optValue(form, "entry", 80)
	if err != nil {
		return nil, 0, err
	}
	switch code.Source {
	case db.SourceImage:
		if !s.ImageFunctions {
			return nil, 0, errdefs.Invalid("Image type functions are not supported by this deployment's orchestrator.")
		}
		return s.createImageFunction(ctx, code, res, limits, name, desc)
	}
	runtimeID, _ := form.get("runtime_id")
	if runtimeID == "" {
		return nil, 0, errdefs.Invalid(`"runtime_id" must be specified.`)
	}
	_, scope := caller(ctx)
	rt, err := s.DB.Runtime(ctx, scope, runtimeID)
	if err != nil {
		return nil, 0, err
	}
	if err := rt.CheckAvailable(); err != nil {
		return nil, 0, err
	}
	if form.pkg == nil && code.Source == db.SourcePackage {
		return nil, 0, errdefs.Invalid("Package is missing: upload the zip file as the multipart form part 'package'.")
	}
	if entry == nil || *entry == "" {
		e := db.DefaultEntry
		entry = &e
	}
	if err := checkEntry(*entry); err != nil {
		return nil, 0, err
	}
	id := reqctx.From(ctx)
	f := &db.Function{
		Base: db.Base{ID: db.NewID(), ProjectID: id.ProjectID},
		Name: name, Description: desc, RuntimeID: &rt.ID, Entry: entry,
		CPU: int(orDefault(res.cpu, int64(s.Limits.DefaultCPU))), MemorySize: orDefault(res.memory, s.Limits.DefaultMemory),
		Timeout:    int(orDefault(res.timeout, int64(s.Limits.DefaultTimeout))),
		MinWorkers: limits.min, MaxWorkers: limits.max,
	}
	if code.Source == db.SourceSwift {
		return s.createSwiftFunction(ctx, f, code)
	}
	md5, _, err := s.Storage.Store(ctx, f.ProjectID, f.ID, form.pkg, code.MD5Sum)
	if err != nil {
		return nil, 0, storageError(err)
	}
	f.SetCode(db.Code{Source: db.SourcePackage, MD5Sum: md5})
	if err := s.DB.CreateFunction(ctx, f); err != nil {
		_ = s.Storage.Delete(context.WithoutCancel(ctx), f.ProjectID, f.ID, md5, 0)
		return nil, 0, err
	}
	return renderFunction(f, false), http.StatusCreated, nil
}

// createImageFunction stores an image function (docs/kubernetes.md, "Image functions"): no
// runtime, no package, no entry; each execution runs the image.
func (s *Server) createImageFunction(ctx context.Context, code db.Code, res resources, limits workerLimits, name, desc *string) (any, int, error) {
	image := strings.TrimSpace(code.Image)
	switch {
	case image == "":
		return nil, 0, errdefs.Invalid("The image of an image type function is missing: code must be {\"source\": \"image\", \"image\": \"<image reference>\"}.")
	case len(image) > 255 || strings.ContainsAny(image, " \t\n"):
		return nil, 0, errdefs.Invalid("Invalid image reference %q.", image)
	}
	id := reqctx.From(ctx)
	f := &db.Function{
		Base: db.Base{ID: db.NewID(), ProjectID: id.ProjectID},
		Name: name, Description: desc,
		CPU: int(orDefault(res.cpu, int64(s.Limits.DefaultCPU))), MemorySize: orDefault(res.memory, s.Limits.DefaultMemory),
		Timeout:    int(orDefault(res.timeout, int64(s.Limits.DefaultTimeout))),
		MinWorkers: limits.min, MaxWorkers: limits.max,
	}
	f.SetCode(db.Code{Source: db.SourceImage, Image: image})
	if err := s.DB.CreateFunction(ctx, f); err != nil {
		return nil, 0, err
	}
	return renderFunction(f, false), http.StatusCreated, nil
}

// checkEntry applies the runtimes' reading of an entry: split at the last
// dot into a module path and a function name (hello.main is main in
// hello.py; pkg.mod.main is main in pkg/mod.py), both of which must be there.
// Upstream took any text and failed only when the function ran.
func checkEntry(entry string) error {
	i := strings.LastIndexByte(entry, '.')
	switch {
	case strings.ContainsFunc(entry, unicode.IsSpace):
		return errdefs.Invalid("Invalid entry %q: it must not contain spaces.", entry)
	case i < 0:
		return errdefs.Invalid("Invalid entry %q: use <module>.<function>, such as hello.main for function main in hello.py (the default is %s).", entry, db.DefaultEntry)
	case i == 0 || i == len(entry)-1 || strings.Contains(entry, ".."):
		return errdefs.Invalid("Invalid entry %q: both the module and the function name are needed, as in hello.main.", entry)
	}
	return nil
}

func orDefault(v, def int64) int64 {
	if v == 0 {
		return def
	}
	return v
}

// storageError gives storage failures upstream's user-facing answers.
// Backends already return kinded errors with those messages; bare sentinels
// (from a backend that does not) are mapped here.
func storageError(err error) error {
	if errdefs.KindOf(err) != errdefs.KindInternal {
		return err
	}
	switch {
	case errors.Is(err, storage.ErrChecksumMismatch):
		return errdefs.Wrap(errdefs.KindInvalid, err, "Package md5 mismatch.")
	case errors.Is(err, storage.ErrInvalidPackage):
		return errdefs.Wrap(errdefs.KindInvalid, err, "Package is not a valid ZIP package.")
	case errors.Is(err, storage.ErrTooLarge):
		return errdefs.Wrap(errdefs.KindTooLarge, err, "Package is too large.")
	case errors.Is(err, storage.ErrNotFound):
		return errdefs.Wrap(errdefs.KindNotFound, err, "Package of the function not found.")
	}
	return errdefs.Wrap(errdefs.KindInternal, err, "package storage")
}

func (s *Server) listFunctions(w http.ResponseWriter, r *http.Request) (any, int, error) {
	return listOf[db.Function](s, w, r, "functions", functionParams, policy.FunctionGetAllAllProjects, func(f *db.Function) functionView { return renderFunction(f, true) })
}

// function returns the function named by the path, as the caller may read it.
func (s *Server) function(r *http.Request) (*db.Function, error) {
	return readable(r, s.DB.Function)
}

func (s *Server) getFunction(w http.ResponseWriter, r *http.Request) (any, int, error) {
	f, err := s.function(r)
	if err != nil {
		return nil, 0, err
	}
	if v := r.URL.Query().Get("download"); v != "" {
		download, ok := parseBool(v)
		if !ok {
			return nil, 0, errdefs.Invalid("Invalid value for download: %q.", v)
		}
		if download {
			return s.download(w, r, f, 0)
		}
	}
	return renderFunction(f, false), http.StatusOK, nil
}

// download streams a package as upstream: application/zip, uncompressed on
// the wire (the CLI copies the raw body to the file).
func (s *Server) download(w http.ResponseWriter, r *http.Request, f *db.Function, version int) (any, int, error) {
	code := f.ParsedCode()
	switch code.Source {
	case db.SourceImage:
		return nil, 0, errdefs.New(errdefs.KindMethodNotAllowed, "Download image function is not allowed.")
	case db.SourceSwift:
		if version > 0 {
			return nil, 0, errdefs.NotFound("Function version %d not found.", version)
		}
		return s.downloadSwift(w, r, f)
	}
	rc, err := s.Storage.Retrieve(r.Context(), f.ProjectID, f.ID, code.MD5Sum, version)
	if err != nil {
		return nil, 0, storageError(err)
	}
	defer rc.Close()
	name := f.ID
	if version > 0 {
		name = fmt.Sprintf("%s_%d", f.ID, version)
	}
	w.Header().Set("Content-Type", "application/zip")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s"`, name))
	if st, ok := rc.(interface{ Stat() (os.FileInfo, error) }); ok {
		if fi, err := st.Stat(); err == nil {
			w.Header().Set("Content-Length", strconv.FormatInt(fi.Size(), 10))
		}
	}
	w.WriteHeader(http.StatusOK)
	if _, err := io.Copy(w, rc); err != nil {
		reqctx.Logger(r.Context(), s.Log).Warn("package download interrupted", "function_id", f.ID, "error", err)
	}
	return nil, 0, nil
}

// trivialUpdate are the keys whose change needs no worker restart.
var trivialUpdate = map[string]bool{"name": true, "description": true, "timeout": true, "min_workers": true, "max_workers": true}

func (s *Server) updateFunction(w http.ResponseWriter, r *http.Request) (any, int, error) {
	ctx := r.Context()
	id, err := pathID(r)
	if err != nil {
		return nil, 0, err
	}
	form, err := s.parseFunctionForm(w, r)
	if err != nil {
		return nil, 0, err
	}
	defer form.close()
	f, err := s.DB.Function(ctx, readScope(ctx), id)
	if err != nil {
		return nil, 0, err
	}
	res, err := s.parseResources(form)
	if err != nil {
		return nil, 0, err
	}
	values := map[string]any{}
	for _, k := range []string{"name", "description"} {
		v, err := optValue(form, k, 255)
		if err != nil {
			return nil, 0, err
		}
		if v != nil {
			values[k] = *v
		}
	}
	if v, err := optValue(form, "entry", 80); err != nil {
		return nil, 0, err
	} else if v != nil {
		if *v == "" {
			return nil, 0, errdefs.Invalid("entry must not be empty.")
		}
		if err := checkEntry(*v); err != nil {
			return nil, 0, err
		}
		values["entry"] = *v
	}
	if res.given["timeout"] {
		values["timeout"] = res.timeout
	}
	if res.given["cpu"] {
		values["cpu"] = res.cpu
	}
	if res.given["memory_size"] {
		values["memory_size"] = res.memory
	}
	limits, err := s.parseWorkerLimits(ctx, form, f)
	if err != nil {
		return nil, 0, err
	}
	maps.Copy(values, limits.values())

	current := f.ParsedCode()
	var requested *db.Code
	if raw, ok := form.get("code"); ok && strings.TrimSpace(raw) != "" {
		c, err := parseCode(raw)
		if err != nil {
			return nil, 0, err
		}
		requested = &c
	} else if src, ok := form.get("source"); ok {
		requested = &db.Code{Source: src}
	}
	if requested != nil && requested.Source != current.Source {
		return nil, 0, errdefs.Invalid("The function code type can not be changed.")
	}
	if form.pkg != nil && current.Source != db.SourcePackage {
		return nil, 0, errdefs.Invalid("A package can only be uploaded to a package type function.")
	}

	var swift *db.SwiftCode
	if current.Source == db.SourceSwift {
		if swift, err = requestedSwift(requested, form); err != nil {
			return nil, 0, err
		}
	}
	// Naming a swift function's object (even as the CLI does, without the
	// names) means: read it again and run what it holds now.
	trivial := form.pkg == nil && !(current.Source == db.SourceSwift && requested != nil)
	for k := range values {
		trivial = trivial && trivialUpdate[k]
	}
	if trivial {
		if len(values) > 0 {
			if err := s.DB.UpdateFunction(ctx, id, values); err != nil {
				return nil, 0, err
			}
		}
		return s.reloadFunction(ctx, id)
	}

	if current.Source == db.SourceImage {
		return nil, 0, errdefs.Invalid("The image type function code can not be changed.")
	}
	if err := s.checkNoRunningJobs(ctx, id); err != nil {
		return nil, 0, err
	}
	var newMD5 string
	if form.pkg != nil {
		if requested != nil && requested.MD5Sum != "" && requested.MD5Sum == current.MD5Sum {
			return nil, 0, errdefs.Invalid("The function code checksum is not changed.")
		}
		md5sum := ""
		if requested != nil {
			md5sum = requested.MD5Sum
		}
		newMD5, _, err = s.Storage.Store(ctx, f.ProjectID, f.ID, form.pkg, md5sum)
		if err != nil {
			return nil, 0, storageError(err)
		}
		values["code"] = mustJSON(db.Code{Source: db.SourcePackage, MD5Sum: newMD5})
	}
	if current.Source == db.SourceSwift {
		c, err := s.updatedSwiftCode(ctx, current, swift)
		if err != nil {
			return nil, 0, err
		}
		values["code"] = mustJSON(c)
	}
	// Workers were specialised with the old code, entry or limits: gone
	// before the answer, so that no execution after it runs the old code.
	if err := s.Engine.DeleteFunctionNow(ctx, id, 0); err != nil {
		return nil, 0, err
	}
	if err := s.DB.UpdateFunction(ctx, id, values); err != nil {
		return nil, 0, err
	}
	// An execution that arrived between the two may have specialised a
	// worker from the old record. Also before the answer: done later, it
	// could kill a worker that an execution after the answer is using.
	if err := s.Engine.DeleteFunctionNow(ctx, id, 0); err != nil {
		return nil, 0, err
	}
	if newMD5 != "" && newMD5 != current.MD5Sum {
		if err := s.Storage.Delete(ctx, f.ProjectID, f.ID, current.MD5Sum, 0); err != nil {
			reqctx.Logger(ctx, s.Log).Warn("delete replaced package", "function_id", id, "error", err)
		}
	}
	return s.reloadFunction(ctx, id)
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func (s *Server) reloadFunction(ctx context.Context, id string) (any, int, error) {
	f, err := s.DB.Function(ctx, db.Internal, id)
	if err != nil {
		return nil, 0, err
	}
	return renderFunction(f, false), http.StatusOK, nil
}

func (s *Server) checkNoRunningJobs(ctx context.Context, functionID string) error {
	n, err := s.DB.ActiveJobs(ctx, functionID, -1)
	if err != nil {
		return err
	}
	if n > 0 {
		return errdefs.Forbidden("The function is still associated with running job(s).")
	}
	return nil
}

func (s *Server) deleteFunction(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	ctx := r.Context()
	f, err := s.function(r)
	if err != nil {
		return nil, 0, err
	}
	id := f.ID
	if err := s.checkNoRunningJobs(ctx, id); err != nil {
		return nil, 0, err
	}
	refs, err := s.DB.FunctionReferences(ctx, id)
	if err != nil {
		return nil, 0, err
	}
	if refs.Webhooks > 0 {
		return nil, 0, errdefs.Forbidden("The function is still associated with webhook(s).")
	}
	if refs.Aliases > 0 {
		return nil, 0, errdefs.Forbidden("The function is still associated with function alias(es).")
	}
	if f.ProjectID != reqctx.From(ctx).ProjectID {
		return nil, 0, errdefs.Forbidden("Function can only be deleted by its owner.")
	}
	versions, err := s.DB.FunctionVersions(ctx, db.Internal, id)
	if err != nil {
		return nil, 0, err
	}
	code := f.ParsedCode()
	for _, v := range append(versions, db.FunctionVersion{VersionNumber: 0}) {
		if err := s.Engine.DeleteFunction(ctx, id, v.VersionNumber); err != nil {
			return nil, 0, err
		}
		if code.Source == db.SourcePackage {
			if err := s.Storage.Delete(ctx, f.ProjectID, id, code.MD5Sum, v.VersionNumber); err != nil {
				reqctx.Logger(ctx, s.Log).Warn("delete package", "function_id", id, "version", v.VersionNumber, "error", err)
			}
		}
	}
	if err := s.DB.DeleteFunction(ctx, id); err != nil {
		return nil, 0, err
	}
	s.deleteTrust(ctx, f)
	return nil, http.StatusNoContent, nil
}
