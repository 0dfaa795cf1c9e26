package db

import (
	"fmt"
	"strings"

	"gorm.io/gorm"

	"github.com/qinling-go/qinling/pkg/errdefs"
)

// Filter is one upstream-style list filter: `status=in:running,error`,
// `description=has:<id>`, or a plain value meaning eq.
type Filter struct {
	Column string
	Op     string
	Values []string
}

var filterOps = map[string]bool{"eq": true, "neq": true, "in": true, "nin": true, "gt": true, "gte": true, "lt": true, "lte": true, "has": true}

// ParseFilter parses the value of a filter query parameter for column.
func ParseFilter(column, raw string) (Filter, error) {
	op, val := "eq", raw
	if i := strings.Index(raw, ":"); i > 0 && filterOps[raw[:i]] {
		op, val = raw[:i], raw[i+1:]
	}
	f := Filter{Column: column, Op: op, Values: []string{val}}
	if op == "in" || op == "nin" {
		f.Values = strings.Split(val, ",")
	}
	return f, nil
}

// apply adds the filter to q. Column names come from the API's whitelist,
// never from the request, so building the SQL text from them is safe.
func (f Filter) apply(q *gorm.DB) (*gorm.DB, error) {
	col := f.Column
	switch f.Op {
	case "eq":
		return q.Where(col+" = ?", f.Values[0]), nil
	case "neq":
		return q.Where(col+" <> ?", f.Values[0]), nil
	case "in":
		return q.Where(col+" IN ?", f.Values), nil
	case "nin":
		return q.Where(col+" NOT IN ?", f.Values), nil
	case "gt":
		return q.Where(col+" > ?", f.Values[0]), nil
	case "gte":
		return q.Where(col+" >= ?", f.Values[0]), nil
	case "lt":
		return q.Where(col+" < ?", f.Values[0]), nil
	case "lte":
		return q.Where(col+" <= ?", f.Values[0]), nil
	case "has":
		// '!' rather than backslash: MySQL reads a backslash inside a string
		// literal as an escape, SQLite does not, and '!' means the same to both.
		esc := strings.NewReplacer("!", "!!", "%", "!%", "_", "!_").Replace(f.Values[0])
		return q.Where(col+" LIKE ? ESCAPE '!'", "%"+esc+"%"), nil
	}
	return nil, errdefs.Invalid("Invalid filter operator %q for %s.", f.Op, col)
}

func applyFilters(q *gorm.DB, fs []Filter) (*gorm.DB, error) {
	var err error
	for _, f := range fs {
		if q, err = f.apply(q); err != nil {
			return nil, err
		}
	}
	return q, nil
}

// ListOptions bounds a list: an optional page size and the ID of the last
// row of the previous page (qinling-go's extension; the CLI sends neither).
type ListOptions struct {
	Filters []Filter
	Limit   int
	Marker  string
}

// page orders by (created_at, id) as upstream and applies the marker.
func page(q *gorm.DB, table string, o ListOptions) (*gorm.DB, error) {
	q, err := applyFilters(q, o.Filters)
	if err != nil {
		return nil, err
	}
	if o.Marker != "" {
		var m Base
		if err := q.Session(&gorm.Session{NewDB: true}).Table(table).Select("created_at, id").Where("id = ?", o.Marker).Take(&m).Error; err != nil {
			return nil, errdefs.Invalid("Invalid marker %q: %v", o.Marker, fmt.Sprint("no such object"))
		}
		q = q.Where("(created_at > ?) OR (created_at = ? AND id > ?)", m.CreatedAt, m.CreatedAt, m.ID)
	}
	q = q.Order("created_at ASC").Order("id ASC")
	if o.Limit > 0 {
		q = q.Limit(o.Limit)
	}
	return q, nil
}
