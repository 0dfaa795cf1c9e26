package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/qinling-go/qinling/pkg/db"
	"github.com/qinling-go/qinling/pkg/errdefs"
	"github.com/qinling-go/qinling/pkg/policy"
	"github.com/qinling-go/qinling/pkg/reqctx"
)

// fieldKind is what a filterable column holds, which decides the operators
// and values a filter on it may have.
type fieldKind int

const (
	textField fieldKind = iota
	intField
	boolField
)

// listParams are the query parameters one list accepts: its filters (query
// name → column) and, on lists scoped to a project, all_projects and
// project_id. limit, marker and sort_dir are accepted by every list.
type listParams struct {
	filters  map[string]fieldKind
	projects bool
}

var (
	runtimeParams   = listParams{}
	functionParams  = listParams{projects: true, filters: map[string]fieldKind{"name": textField, "runtime_id": textField}}
	aliasParams     = listParams{projects: true, filters: map[string]fieldKind{"function_id": textField}}
	jobParams       = listParams{projects: true, filters: map[string]fieldKind{"function_id": textField, "status": textField}}
	webhookParams   = listParams{projects: true, filters: map[string]fieldKind{"function_id": textField, "description": textField}}
	executionParams = listParams{projects: true, filters: map[string]fieldKind{
		"function_id": textField, "function_version": intField, "function_alias": textField,
		"status": textField, "description": textField, "sync": boolField,
	}}
)

// names lists every parameter p accepts, sorted, for error messages.
func (p listParams) names() []string {
	out := []string{"limit", "marker", "sort_dir"}
	if p.projects {
		out = append(out, "all_projects", "project_id")
	}
	for name := range p.filters {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// listOptions reads a list's query: limit (default_page_size when absent,
// lowered to max_page_size), marker, sort_dir (asc, the default and
// upstream's order, or desc: newest first) and the filters of p. An unknown
// parameter, a repeated filter or a malformed one is a 400 naming it.
func (s *Server) listOptions(query url.Values, p listParams) (db.ListOptions, error) {
	o := db.ListOptions{Limit: s.Limits.DefaultPageSize}
	for _, name := range slices.Sorted(maps.Keys(query)) {
		vals := query[name]
		kind, isFilter := p.filters[name]
		switch {
		case name == "limit" || name == "marker" || name == "sort_dir" || (p.projects && (name == "all_projects" || name == "project_id")):
		case !isFilter:
			return o, errdefs.Invalid("Unknown argument: %q. This list accepts %s.", name, strings.Join(p.names(), ", "))
		}
		if len(vals) > 1 {
			return o, errdefs.Invalid("Argument %s is given %d times: give it once (in: takes several values).", name, len(vals))
		}
		if !isFilter || vals[0] == "" {
			continue
		}
		f, err := parseFilter(name, kind, vals[0])
		if err != nil {
			return o, err
		}
		o.Filters = append(o.Filters, f)
	}
	if v := query.Get("limit"); v != "" {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 1 {
			return o, errdefs.Invalid("Invalid limit %q: a positive integer is required.", v)
		}
		o.Limit = n
	}
	if m := s.Limits.MaxPageSize; m > 0 && (o.Limit == 0 || o.Limit > m) {
		o.Limit = m
	}
	o.Marker = query.Get("marker")
	switch v := query.Get("sort_dir"); v {
	case "", "asc":
	case "desc":
		o.Desc = true
	default:
		return o, errdefs.Invalid("Invalid sort_dir %q: asc or desc is accepted.", v)
	}
	return o, nil
}

// parseFilter reads the value of filter name (upstream's syntax, see
// db.ParseFilter) and checks it against the column's kind.
func parseFilter(name string, kind fieldKind, raw string) (db.Filter, error) {
	f, err := db.ParseFilter(name, raw)
	if err != nil {
		return f, err
	}
	if len(f.Values) > db.MaxFilterValues {
		return f, errdefs.Invalid("Too many values for filter %s: %d, at most %d are accepted.", name, len(f.Values), db.MaxFilterValues)
	}
	switch kind {
	case intField:
		if f.Op == "has" {
			return f, errdefs.Invalid("Invalid filter %s: has: applies to text; %s is an integer.", name, name)
		}
		for _, v := range f.Values {
			if _, err := strconv.Atoi(v); err != nil {
				return f, errdefs.Invalid("Invalid value for filter %s: %q is not an integer.", name, v)
			}
		}
	case boolField:
		if f.Op != "eq" && f.Op != "neq" && f.Op != "in" && f.Op != "nin" {
			return f, errdefs.Invalid("Invalid filter %s: %s: does not apply to a boolean.", name, f.Op)
		}
		// Booleans are stored as 1 and 0; accept oslo's spellings.
		for i, v := range f.Values {
			b, ok := parseBool(v)
			if !ok {
				return f, errdefs.Invalid("Invalid value for filter %s: %q is not a boolean.", name, v)
			}
			f.Values[i] = map[bool]string{true: "1", false: "0"}[b]
		}
	}
	return f, nil
}

// listOf answers GET on a list of T: the caller's scope (widened by
// all_projects and project_id under the allProjects policy action, when the
// list has one), the query checked against params, then the rows as they are
// read, rendered by render.
func listOf[T any, P db.Listed[T], V any](s *Server, w http.ResponseWriter, r *http.Request, key string,
	params listParams, allProjects policy.Action, render func(*T) V) (any, int, error) {
	_, scope := caller(r.Context())
	if params.projects {
		var err error
		if scope, err = listScope(r, allProjects); err != nil {
			return nil, 0, err
		}
	}
	o, err := s.listOptions(r.URL.Query(), params)
	if err != nil {
		return nil, 0, err
	}
	return streamList(s, w, r, key, func(fn func([]byte) error) (string, error) {
		return db.Each[T, P](r.Context(), s.DB, scope, o, func(v P) error {
			b, err := json.Marshal(render((*T)(v)))
			if err != nil {
				return errdefs.Wrap(errdefs.KindInternal, err, "encode list item")
			}
			return fn(b)
		})
	}, o.Limit)
}

// streamList answers a list as it reads it: `{"<key>": [...]}` with the items
// read calls its fn with (each one JSON value), and a `next` link when read
// returns the marker of another page. Nothing is written until the first item
// has been read, so an error before that (a bad marker, a database failure)
// is still a JSON error; one after it can only cut the answer short, which
// the middleware does by aborting the connection.
func streamList(s *Server, w http.ResponseWriter, r *http.Request, key string,
	read func(fn func([]byte) error) (string, error), limit int) (any, int, error) {
	started := false
	write := func(b []byte) error {
		if !started {
			started = true
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusOK)
			b = append([]byte(`{"`+key+`":[`), b...)
		}
		_, err := w.Write(b)
		return err
	}
	sep := []byte{}
	next, err := read(func(item []byte) error {
		err := write(append(sep, item...))
		sep = []byte{','}
		return err
	})
	if err == nil {
		tail := "]"
		if next != "" {
			// Without HTML escaping: the link's & stays readable.
			var link bytes.Buffer
			enc := json.NewEncoder(&link)
			enc.SetEscapeHTML(false)
			_ = enc.Encode(s.nextLink(r, limit, next))
			tail += `,"next":` + strings.TrimSpace(link.String())
		}
		err = write([]byte(tail + "}"))
	}
	if err != nil {
		if !started {
			return nil, 0, err
		}
		reqctx.Logger(r.Context(), s.Log).Warn("list cut short", "error", err)
		panic(http.ErrAbortHandler)
	}
	return nil, 0, nil
}

// nextLink is the URL of the page after marker: the same path and query,
// with the page size made explicit.
func (s *Server) nextLink(r *http.Request, limit int, marker string) string {
	q := r.URL.Query()
	q.Set("limit", strconv.Itoa(limit))
	q.Set("marker", marker)
	base := s.Endpoint
	if base == "" {
		base = s.baseURL(r)
	}
	return fmt.Sprintf("%s%s?%s", strings.TrimRight(base, "/"), r.URL.Path, q.Encode())
}
