package db

import (
	"context"
	"time"

	"gorm.io/gorm"

	"github.com/qinling-go/qinling/pkg/errdefs"
)

// ListOptions bounds a list: its filters, a page size (0: every row) and the
// ID of the last row of the previous page (qinling-go's paging extension).
type ListOptions struct {
	Filters []Filter
	Limit   int
	Marker  string
}

// A list is read in batches of at most batchRows rows, and a batch ends early
// once its rows hold batchBytes of text, so a list's memory does not grow
// with its length or with its rows' size beyond one batch. Between batches
// no connection is held: the all-in-one's SQLite has one connection, and a
// slow client reading a long list must not stall every other query.
const (
	batchRows  = 32
	batchBytes = 1 << 20
)

// Listed is a model that has a list: its rows are sorted by their (created_at,
// id) key as upstream, and the caller's scope selects them.
type Listed[T any] interface {
	*T
	key() (time.Time, string)
	size() int
	listQuery(q *gorm.DB, s Scope) *gorm.DB
}

func (b *Base) key() (time.Time, string) { return b.CreatedAt, b.ID }

// size is the memory a row holds beyond its fixed columns; models with large
// text columns override it.
func (b *Base) size() int { return 0 }

// listQuery restricts a list to the scope; models whose lists differ
// override it.
func (b *Base) listQuery(q *gorm.DB, s Scope) *gorm.DB { return s.apply(q) }

func (e *Execution) size() int { return lenOf(e.Input) + lenOf(e.Result) + lenOf(e.Description) }

// listQuery leaves out the logs: lists never show them.
func (e *Execution) listQuery(q *gorm.DB, s Scope) *gorm.DB { return s.apply(q.Omit("logs")) }

func (f *Function) size() int { return len(f.Code) }

// listQuery shows public runtimes to every project.
func (rt *Runtime) listQuery(q *gorm.DB, s Scope) *gorm.DB {
	if s.All {
		return q
	}
	return q.Where("project_id = ? OR is_public = ?", s.ProjectID, true)
}

func lenOf(s *string) int {
	if s == nil {
		return 0
	}
	return len(*s)
}

// Each calls fn with each row of one page of T's list in scope, sorted by
// (created_at, id), reading the rows in batches. It returns the marker of the
// next page: the page's last ID when the page is full and more rows follow,
// "" otherwise. An error from fn stops the list and is returned as it is.
func Each[T any, P Listed[T]](ctx context.Context, d *DB, s Scope, o ListOptions, fn func(P) error) (string, error) {
	base := func() *gorm.DB { return P(new(T)).listQuery(d.gorm.WithContext(ctx).Model(new(T)), s) }
	after, err := markerKey(ctx, base, o.Marker)
	if err != nil {
		return "", err
	}
	query := func(after *listKey) (*gorm.DB, error) {
		q, err := applyFilters(base(), o.Filters)
		if err != nil {
			return nil, err
		}
		if after != nil {
			q = q.Where("(created_at > ?) OR (created_at = ? AND id > ?)", after.createdAt, after.createdAt, after.id)
		}
		return q.Order("created_at ASC").Order("id ASC"), nil
	}
	left := o.Limit
	for {
		n := batchRows
		if o.Limit > 0 && left < n {
			n = left
		}
		q, err := query(after)
		if err != nil {
			return "", err
		}
		batch, more, err := readBatch[T, P](q.Limit(n), n)
		if err != nil {
			return "", translate(err, "List", "")
		}
		for _, v := range batch {
			if err := fn(P(v)); err != nil {
				return "", err
			}
		}
		if len(batch) == 0 {
			return "", nil
		}
		t, id := P(batch[len(batch)-1]).key()
		after = &listKey{createdAt: t, id: id}
		left -= len(batch)
		switch {
		case o.Limit > 0 && left <= 0:
			// The page is full: a next page exists if one more row does.
			q, err := query(after)
			if err != nil {
				return "", err
			}
			var ids []string
			if err := q.Limit(1).Pluck("id", &ids).Error; err != nil {
				return "", translate(err, "List", "")
			}
			if len(ids) == 0 {
				return "", nil
			}
			return id, nil
		case !more:
			return "", nil
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

// readBatch reads at most n rows of q, stopping early after batchBytes.
// more reports whether q may have rows beyond those returned.
func readBatch[T any, P Listed[T]](q *gorm.DB, n int) (batch []*T, more bool, err error) {
	rows, err := q.Rows()
	if err != nil {
		return nil, false, err
	}
	defer rows.Close()
	size := 0
	for rows.Next() {
		v := new(T)
		if err := q.ScanRows(rows, v); err != nil {
			return nil, false, err
		}
		batch = append(batch, v)
		if size += P(v).size(); size >= batchBytes {
			return batch, true, nil
		}
	}
	return batch, len(batch) == n, rows.Err()
}

type listKey struct {
	createdAt time.Time
	id        string
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
		return &listKey{createdAt: m.CreatedAt, id: m.ID}, nil
	case ctx.Err() != nil:
		return nil, ctx.Err()
	}
	return nil, errdefs.Invalid("Invalid marker %q: no such object", marker)
}
