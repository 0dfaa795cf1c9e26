package db_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/db"
	"github.com/qinling-go/qinling/pkg/errdefs"
)

// TestEachPages reads lists longer than one batch, in pages, with and without
// big rows, and checks every row comes once, in order, with the right marker.
func TestEachPages(t *testing.T) {
	each(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		d := open(t)
		// 70 executions, loaded four at a time; every tenth one has a 600 KB
		// result. Half share one created_at, so the id breaks ties.
		big := strings.Repeat("x", 600<<10)
		same := time.Now().UTC().Add(-time.Hour)
		var want []string
		for i := range 70 {
			e := &db.Execution{Base: db.Base{ProjectID: "p"}, Status: db.StatusSuccess}
			if i%2 == 0 {
				e.CreatedAt = same
			}
			if i%10 == 0 {
				e.Result = &big
			}
			require.NoError(t, d.CreateExecution(ctx, e))
		}
		require.NoError(t, d.CreateExecution(ctx, &db.Execution{Base: db.Base{ProjectID: "other"}, Status: db.StatusSuccess}))
		all, err := d.Executions(ctx, db.Scope{ProjectID: "p"}, db.ListOptions{})
		require.NoError(t, err)
		require.Len(t, all, 70)
		for _, e := range all {
			want = append(want, e.ID)
			require.Nil(t, e.Logs, "lists do not load logs")
		}

		newest := make([]string, len(want))
		for i, id := range want {
			newest[len(want)-1-i] = id
		}

		for _, tc := range []struct {
			name  string
			limit int
			desc  bool
			pages int
		}{
			{"no limit is one page", 0, false, 1},
			{"pages of 7", 7, false, 10},
			{"pages of 33", 33, false, 3},
			{"pages of 70 (exactly the list)", 70, false, 1},
			{"pages of 100", 100, false, 1},
			{"newest first, no limit", 0, true, 1},
			{"newest first, pages of 7", 7, true, 10},
			{"newest first, pages of 33", 33, true, 3},
		} {
			t.Run(tc.name, func(t *testing.T) {
				var got []string
				marker, pages := "", 0
				for {
					next, err := db.Each[db.Execution](ctx, d, db.Scope{ProjectID: "p"}, db.ListOptions{Limit: tc.limit, Marker: marker, Desc: tc.desc},
						func(e *db.Execution) error {
							got = append(got, e.ID)
							return nil
						})
					require.NoError(t, err)
					pages++
					if next == "" {
						break
					}
					require.Equal(t, got[len(got)-1], next, "the marker is the page's last id")
					marker = next
				}
				if tc.desc {
					require.Equal(t, newest, got)
				} else {
					require.Equal(t, want, got)
				}
				require.Equal(t, tc.pages, pages)
			})
		}

		t.Run("an error from fn stops the list", func(t *testing.T) {
			stop := fmt.Errorf("enough")
			n := 0
			_, err := db.Each[db.Execution](ctx, d, db.Scope{ProjectID: "p"}, db.ListOptions{}, func(*db.Execution) error {
				n++
				if n == 3 {
					return stop
				}
				return nil
			})
			require.ErrorIs(t, err, stop)
			require.Equal(t, 3, n)
		})
		t.Run("a list whose context ends stops at its next batch", func(t *testing.T) {
			// Executions are loaded four at a time: the rows of the batch
			// being handed out come, and no more.
			lctx, cancel := context.WithCancel(ctx)
			defer cancel()
			n := 0
			_, err := db.Each[db.Execution](lctx, d, db.Scope{ProjectID: "p"}, db.ListOptions{}, func(*db.Execution) error {
				n++
				if n == 2 {
					cancel()
				}
				return nil
			})
			require.ErrorIs(t, err, context.Canceled)
			require.Equal(t, 4, n)
		})
		t.Run("a marker of another project is refused", func(t *testing.T) {
			other, err := d.Executions(ctx, db.Scope{ProjectID: "other"}, db.ListOptions{})
			require.NoError(t, err)
			_, err = d.Executions(ctx, db.Scope{ProjectID: "p"}, db.ListOptions{Marker: other[0].ID})
			require.ErrorIs(t, err, errdefs.ErrInvalid)
		})
		t.Run("too many filter values are refused, not sent to SQL", func(t *testing.T) {
			vals := make([]string, db.MaxFilterValues+1)
			for i := range vals {
				vals[i] = fmt.Sprint(i)
			}
			_, err := d.Executions(ctx, db.Scope{ProjectID: "p"}, db.ListOptions{Filters: []db.Filter{{Column: "status", Op: "in", Values: vals}}})
			require.ErrorIs(t, err, errdefs.ErrInvalid)
			es, err := d.Executions(ctx, db.Scope{ProjectID: "p"}, db.ListOptions{Filters: []db.Filter{{Column: "status", Op: "nin", Values: vals[:db.MaxFilterValues]}}})
			require.NoError(t, err, "the bound itself is accepted")
			require.Len(t, es, 70)
		})
	})
}

// TestListRowsPlan: a list loads its rows by primary key, not through the
// project_id index (every row of the project, for each few rows listed).
func TestListRowsPlan(t *testing.T) {
	each(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		d := open(t)
		var ids []string
		for range 50 {
			e := &db.Execution{Base: db.Base{ProjectID: "p"}, Status: db.StatusSuccess}
			require.NoError(t, d.CreateExecution(ctx, e))
			ids = append(ids, e.ID)
		}
		for _, tc := range []struct {
			name string
			ids  []string
		}{
			{name: "one row", ids: ids[:1]},
			{name: "a batch", ids: ids[:4]},
		} {
			t.Run(tc.name, func(t *testing.T) {
				plan, err := db.PlanOfListRows(ctx, d, tc.ids)
				require.NoError(t, err)
				t.Logf("plan:\n%s", plan)
				require.NotContains(t, plan, "project_id")
				require.True(t, strings.Contains(plan, "sqlite_autoindex_executions_1") || strings.Contains(plan, "PRIMARY"), "by primary key: %s", plan)
			})
		}
	})
}
