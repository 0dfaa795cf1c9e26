package db

import (
	"context"
	"time"

	"gorm.io/gorm"

	"github.com/qinling-go/qinling/pkg/errdefs"
)

// ListOptions bounds a list: its filters, a page size (0: every row), the
// ID of the last row of the previous page and the direction (qinling-go's
// paging extension). Desc reads newest first, for consoles that show the
// latest rows and page back in time.
type ListOptions struct {
	Filters []Filter
	Limit   int
	Marker  string
	Desc    bool
}

// A list is read in two steps, so that neither its memory nor the database's
// work grows with the size of its rows. First the sort keys (created_at, id)
// of up to keysPerQuery rows, filtered and sorted: small records, which
// SQLite sorts without reading the large columns of each row (it would copy
// whole rows into its sorter otherwise, once per batch). Then the rows
// themselves, a few at a time by primary key, handed out in key order. No
// connection is held between queries: the all-in-one's SQLite has one, and a
// slow client reading a long list must not stall every other query. A list
// whose context ends (its client left) stops at its next query: on SQLite a
// statement once started runs to its end (uninterruptible, stmtcache.go),
// so the connection is kept at most one batch longer.
const keysPerQuery = 1000

// Listed is a model that has a list: its rows are sorted by their (created_at,
// id) key as upstream, and the caller's scope selects them.
type Listed[T any] interface {
	*T
	key() (time.Time, string)
	// rowsPerQuery is how many rows are loaded at once: one query's worth is
	// all a list holds of them.
	rowsPerQuery() int
	listQuery(q *gorm.DB, s Scope) *gorm.DB
}

func (b *Base) key() (time.Time, string) { return b.CreatedAt, b.ID }

func (b *Base) rowsPerQuery() int { return 32 }

// listQuery restricts a list to the scope; models whose lists differ
// override it.
func (b *Base) listQuery(q *gorm.DB, s Scope) *gorm.DB { return s.apply(q) }

// rowsPerQuery: an execution may hold a megabyte of input and one of result.
func (e *Execution) rowsPerQuery() int { return 4 }

// listQuery leaves out the logs: lists never show them.
func (e *Execution) listQuery(q *gorm.DB, s Scope) *gorm.DB { return s.apply(q.Omit("logs")) }

// listQuery shows public runtimes to every project.
func (rt *Runtime) listQuery(q *gorm.DB, s Scope) *gorm.DB {
	if s.All {
		return q
	}
	return q.Where("project_id = ? OR is_public = ?", s.ProjectID, true)
}

// Each calls fn with each row of one page of T's list in scope, sorted by
// (created_at, id), descending when o.Desc. It returns the marker of the next page: the page's last
// ID when the page is full and more rows follow, "" otherwise. An error from
// fn stops the list and is returned as it is.
func Each[T any, P Listed[T]](ctx context.Context, d *DB, s Scope, o ListOptions, fn func(P) error) (string, error) {
	base := func() *gorm.DB { return P(new(T)).listQuery(d.gorm.WithContext(ctx).Model(new(T)), s) }
	after, err := markerKey(ctx, base, o.Marker)
	if err != nil {
		return "", err
	}
	left := o.Limit
	for {
		n := keysPerQuery
		if o.Limit > 0 && left < n {
			n = left
		}
		// One key more than wanted tells whether more rows follow.
		keys, err := listKeys(base, o.Filters, after, o.Desc, n+1)
		if err != nil {
			return "", err
		}
		more := len(keys) > n
		if more {
			keys = keys[:n]
		}
		if err := eachRow(d.gorm.WithContext(ctx), keys, fn); err != nil {
			return "", err
		}
		if len(keys) == 0 || !more {
			return "", nil
		}
		after = &keys[len(keys)-1]
		if left -= len(keys); o.Limit > 0 && left <= 0 {
			return after.ID, nil
		}
	}
}

// List is Each into a slice, for internal callers whose lists are short.
func List[T any, P Listed[T]](ctx context.Context, d *DB, s Scope, o ListOptions) ([]T, error) {
	var out []T
	_, err := Each[T, P](ctx, d, s, o, func(v P) error {
		out = append(out, *(*T)(v))
		return nil
	})
	return out, err
}

// listKey is a row's place in a list.
type listKey struct {
	ID        string
	CreatedAt time.Time
}

// listKeys returns the keys of the first n rows after the key after (nil:
// from the start) in the list's direction that pass the filters.
func listKeys(base func() *gorm.DB, fs []Filter, after *listKey, desc bool, n int) ([]listKey, error) {
	q, err := applyFilters(base(), fs)
	if err != nil {
		return nil, err
	}
	// Column names and operators are constants, never from the request.
	dir, cmp, cmpEq := "ASC", ">", ">="
	if desc {
		dir, cmp, cmpEq = "DESC", "<", "<="
	}
	if after != nil {
		// The first term alone can use the created_at index.
		q = q.Where("created_at "+cmpEq+" ? AND (created_at "+cmp+" ? OR id "+cmp+" ?)", after.CreatedAt, after.CreatedAt, after.ID)
	}
	var keys []listKey
	err = q.Select("id", "created_at").Order("created_at " + dir).Order("id " + dir).Limit(n).Scan(&keys).Error
	return keys, translate(err, "List", "")
}

// eachRow loads the rows of keys a few at a time and calls fn with them in
// the keys' order. A row deleted since its key was read is left out.
func eachRow[T any, P Listed[T]](g *gorm.DB, keys []listKey, fn func(P) error) error {
	per := P(new(T)).rowsPerQuery()
	for len(keys) > 0 {
		group := keys[:min(per, len(keys))]
		keys = keys[len(group):]
		ids := make([]string, len(group))
		for i, k := range group {
			ids[i] = k.ID
		}
		var rows []T
		if err := rowsByID[T, P](g, ids).Find(&rows).Error; err != nil {
			return translate(err, "List", "")
		}
		byID := make(map[string]P, len(rows))
		for i := range rows {
			_, id := P(&rows[i]).key()
			byID[id] = &rows[i]
		}
		for _, id := range ids {
			if v, ok := byID[id]; ok {
				if err := fn(v); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// rowsByID selects the listed rows of ids by primary key alone. The keys
// were read in the caller's scope, and a row's ID and project never change,
// so the scope is not repeated: with it, SQLite (no statistics) reads the
// rows through the project_id index instead, every row of the project for
// each few rows listed — a 1,000-row page of a 33,000-execution project
// took 4 s of CPU and held the connection as long.
func rowsByID[T any, P Listed[T]](g *gorm.DB, ids []string) *gorm.DB {
	return P(new(T)).listQuery(g.Model(new(T)), Internal).Where("id IN ?", ids)
}

// markerKey finds the sort key of the marker row among the rows base selects:
// a marker outside the caller's list is refused like an unknown one.
func markerKey(ctx context.Context, base func() *gorm.DB, marker string) (*listKey, error) {
	if marker == "" {
		return nil, nil
	}
	var m Base
	err := base().Select("created_at, id").Where("id = ?", marker).Take(&m).Error
	switch {
	case err == nil:
		return &listKey{ID: m.ID, CreatedAt: m.CreatedAt}, nil
	case ctx.Err() != nil:
		return nil, ctx.Err()
	}
	return nil, errdefs.Invalid("Invalid marker %q: no such object", marker)
}
