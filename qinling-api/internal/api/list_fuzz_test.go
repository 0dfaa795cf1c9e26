package api

import (
	"context"
	"errors"
	"net/url"
	"path/filepath"
	"testing"

	"github.com/qinling-go/qinling/pkg/db"
	"github.com/qinling-go/qinling/pkg/errdefs"
)

// fuzzLists is every paged list: its query parameters and a run of one page
// of it against a database.
var fuzzLists = map[string]struct {
	params listParams
	run    func(context.Context, *db.DB, db.ListOptions) error
}{
	"runtimes":   {runtimeParams, fuzzRun[db.Runtime]},
	"functions":  {functionParams, fuzzRun[db.Function]},
	"executions": {executionParams, fuzzRun[db.Execution]},
	"jobs":       {jobParams, fuzzRun[db.Job]},
	"webhooks":   {webhookParams, fuzzRun[db.Webhook]},
	"aliases":    {aliasParams, fuzzRun[db.FunctionAlias]},
}

func fuzzRun[T any, P db.Listed[T]](ctx context.Context, d *db.DB, o db.ListOptions) error {
	_, err := db.Each[T, P](ctx, d, db.Scope{ProjectID: "default"}, o, func(P) error { return nil })
	return err
}

// FuzzListQuery feeds any query string to every list's query parser, and
// what it accepts to the database: a query is either refused with a 400 or
// runs without error. A 500 there (an SQL error such as too many variables,
// a panic) is what this looks for. Seeds: testdata/fuzz/FuzzListQuery.
func FuzzListQuery(f *testing.F) {
	for _, seed := range []string{
		"status=in:running,error", "description=has:5f1c", "function_version=gte:1&sync=false",
		"limit=2&marker=6d2b0a9e-0000-4000-8000-000000000000", "all_projects=true&project_id=p", "foo=bar",
	} {
		f.Add(seed)
	}
	d, err := db.Open("sqlite", filepath.Join(f.TempDir(), "q.sqlite"), db.Options{})
	if err != nil {
		f.Fatal(err)
	}
	defer d.Close()
	ctx := context.Background()
	if _, _, err := d.Sync(ctx); err != nil {
		f.Fatal(err)
	}
	s := &Server{Limits: Limits{DefaultPageSize: 5, MaxPageSize: 10}}
	f.Fuzz(func(t *testing.T, raw string) {
		query, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		for name, l := range fuzzLists {
			o, err := s.listOptions(query, l.params)
			if err != nil {
				if !errors.Is(err, errdefs.ErrInvalid) || errdefs.PublicMessage(err) == "" {
					t.Fatalf("%s: %q: refused without a 400 message: %v", name, raw, err)
				}
				continue
			}
			if o.Limit < 1 || o.Limit > 10 {
				t.Fatalf("%s: %q: page size %d outside 1..10", name, raw, o.Limit)
			}
			for _, flt := range o.Filters {
				if _, ok := l.params.filters[flt.Column]; !ok || len(flt.Values) == 0 || len(flt.Values) > db.MaxFilterValues {
					t.Fatalf("%s: %q: accepted filter %+v", name, raw, flt)
				}
			}
			if err := l.run(ctx, d, o); err != nil && !errors.Is(err, errdefs.ErrInvalid) {
				t.Fatalf("%s: %q: the database refused what the parser accepted: %v", name, raw, err)
			}
		}
	})
}
