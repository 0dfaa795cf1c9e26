package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/db"
	"github.com/qinling-go/qinling/qinling-api/internal/api"
)

// listPaths are the lists whose query is checked; each accepts the filter
// named with it.
var listPaths = map[string]string{
	"/v1/runtimes":   "",
	"/v1/functions":  "name",
	"/v1/executions": "status",
	"/v1/jobs":       "status",
	"/v1/webhooks":   "description",
	"/v1/aliases":    "function_id",
}

func TestListQuery_Refused(t *testing.T) {
	ts, _ := newServer(t)
	manyValues := "in:" + strings.TrimSuffix(strings.Repeat("success,", 40000), ",")
	type tc struct {
		name  string
		query string
		fault string // the faultstring contains it
	}
	common := []tc{
		{"unknown filter", "foo=bar", `Unknown argument: "foo"`},
		{"unknown filter, empty value", "colour=", `Unknown argument: "colour"`},
		{"limit not a number", "limit=ten", `Invalid limit "ten"`},
		{"limit zero", "limit=0", `Invalid limit "0"`},
		{"limit repeated", "limit=1&limit=2", "Argument limit is given 2 times"},
		{"sort_dir not a direction", "sort_dir=newest", `Invalid sort_dir "newest": asc or desc is accepted.`},
		{"sort_dir repeated", "sort_dir=asc&sort_dir=desc", "Argument sort_dir is given 2 times"},
	}
	for path, filter := range listPaths {
		cases := append([]tc{}, common...)
		if filter == "" {
			cases = append(cases, tc{"no all_projects", "all_projects=true", `Unknown argument: "all_projects"`})
		} else {
			cases = append(cases,
				tc{"40,000 values " + filter, filter + "=" + url.QueryEscape(manyValues), "Too many values for filter " + filter + ": 40000, at most 1000"},
				tc{"1,001 values " + filter, filter + "=nin:" + strings.Repeat("a,", 1000) + "a", "Too many values for filter " + filter + ": 1001"},
				tc{"repeated " + filter, filter + "=a&" + filter + "=b", "Argument " + filter + " is given 2 times"},
			)
		}
		for _, tc := range cases {
			t.Run(path+" "+tc.name, func(t *testing.T) {
				r := doJSON(t, "GET", ts.URL+path+"?"+tc.query, "")
				require.Equal(t, http.StatusBadRequest, r.status, "%s", r.body)
				require.Contains(t, r.json(t)["faultstring"], tc.fault)
			})
		}
	}
}

func TestListQuery_TypedFilters(t *testing.T) {
	ts, _ := newServer(t)
	for _, tc := range []struct {
		query string
		fault string // "" means accepted
	}{
		{"function_version=2", ""},
		{"function_version=in:0,1,2", ""},
		{"function_version=gte:1", ""},
		{"function_version=two", `Invalid value for filter function_version: "two" is not an integer.`},
		{"function_version=in:1,x", `Invalid value for filter function_version: "x" is not an integer.`},
		{"function_version=has:1", "Invalid filter function_version: has: applies to text; function_version is an integer."},
		{"sync=true", ""},
		{"sync=in:yes,no", ""},
		{"sync=maybe", `Invalid value for filter sync: "maybe" is not a boolean.`},
		{"sync=gt:false", "Invalid filter sync: gt: does not apply to a boolean."},
		// Upstream's syntax: an unknown prefix is part of an eq value.
		{"description=" + url.QueryEscape("Created by: Job x"), ""},
		{"description=has:" + url.QueryEscape("100%_"), ""},
		{"status=in:", ""},
		{"status=", ""},
	} {
		t.Run(tc.query, func(t *testing.T) {
			r := doJSON(t, "GET", ts.URL+"/v1/executions?"+tc.query, "")
			if tc.fault == "" {
				require.Equal(t, http.StatusOK, r.status, "%s", r.body)
				return
			}
			require.Equal(t, http.StatusBadRequest, r.status, "%s", r.body)
			require.Equal(t, tc.fault, r.json(t)["faultstring"])
		})
	}
}

// TestList_Pages: without a limit a list is one page of default_page_size
// with a next link; following the links gives every item once; a limit
// above max_page_size is lowered to it.
func TestList_Pages(t *testing.T) {
	srv, ts, _ := newAPIWith(t, api.NoAuth{}, func(s *api.Server) {
		s.Limits.DefaultPageSize, s.Limits.MaxPageSize = 4, 6
		s.Endpoint = "http://qinling.example:7070"
	})
	ctx := context.Background()
	var want []string
	for range 11 {
		e := &db.Execution{Base: db.Base{ProjectID: "default"}, Status: db.StatusSuccess}
		require.NoError(t, srv.DB.CreateExecution(ctx, e))
		want = append(want, e.ID)
	}
	require.NoError(t, srv.DB.CreateExecution(ctx, &db.Execution{Base: db.Base{ProjectID: "default"}, Status: db.StatusFailed}))

	type page struct {
		Executions []map[string]any `json:"executions"`
		Next       string           `json:"next"`
	}
	read := func(path string) page {
		r := doJSON(t, "GET", ts.URL+path, "")
		require.Equal(t, http.StatusOK, r.status, "%s", r.body)
		require.Equal(t, "application/json", r.header.Get("Content-Type"))
		var p page
		require.NoError(t, json.Unmarshal(r.body, &p), "%s", r.body)
		return p
	}
	newest := make([]string, len(want))
	for i, id := range want {
		newest[len(want)-1-i] = id
	}
	for _, tc := range []struct {
		name  string
		first string
		sizes []int
	}{
		{"default page size", "/v1/executions?status=success", []int{4, 4, 3}},
		{"newest first", "/v1/executions?status=success&sort_dir=desc&limit=5", []int{5, 5, 1}},
		{"oldest first, as without sort_dir", "/v1/executions?status=success&sort_dir=asc&limit=5", []int{5, 5, 1}},
		{"limit", "/v1/executions?status=success&limit=5", []int{5, 5, 1}},
		{"limit above the maximum", "/v1/executions?status=success&limit=100", []int{6, 5}},
		{"last page exactly full", "/v1/executions?status=success&limit=11", []int{6, 5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			var sizes []int
			path := tc.first
			for path != "" {
				p := read(path)
				sizes = append(sizes, len(p.Executions))
				for _, e := range p.Executions {
					got = append(got, e["id"].(string))
				}
				path = ""
				if p.Next != "" {
					u, err := url.Parse(p.Next)
					require.NoError(t, err)
					require.Equal(t, "qinling.example:7070", u.Host, "next is built on the public endpoint")
					require.Equal(t, "success", u.Query().Get("status"), "next keeps the filters")
					require.Equal(t, got[len(got)-1], u.Query().Get("marker"))
					first, err := url.Parse(tc.first)
					require.NoError(t, err)
					require.Equal(t, first.Query().Get("sort_dir"), u.Query().Get("sort_dir"), "next keeps the direction")
					path = u.RequestURI()
				}
			}
			if strings.Contains(tc.first, "sort_dir=desc") { // newest first: want reversed
				require.Equal(t, newest, got)
				return
			}
			require.Equal(t, want, got)
			require.Equal(t, tc.sizes, sizes)
		})
	}
	t.Run("an empty list is an empty array", func(t *testing.T) {
		r := doJSON(t, "GET", ts.URL+"/v1/executions?status=error", "")
		require.Equal(t, http.StatusOK, r.status)
		require.JSONEq(t, `{"executions": []}`, string(r.body))
	})
	t.Run("an unknown marker is a JSON 400", func(t *testing.T) {
		r := doJSON(t, "GET", ts.URL+"/v1/executions?marker=6d2b0a9e-0000-4000-8000-000000000000", "")
		require.Equal(t, http.StatusBadRequest, r.status)
		require.Contains(t, r.json(t)["faultstring"], "Invalid marker")
	})
}

// TestList_ErrorBeforeFirstByte: a database failure while the first rows are
// read is still a JSON error, not a cut answer.
func TestList_ErrorBeforeFirstByte(t *testing.T) {
	srv, ts, _ := newAPI(t)
	require.NoError(t, srv.DB.Close())
	r := doJSON(t, "GET", ts.URL+"/v1/executions", "")
	require.Equal(t, http.StatusInternalServerError, r.status, "%s", r.body)
	require.Equal(t, "Internal server error.", r.json(t)["faultstring"])
}
