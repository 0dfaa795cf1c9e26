package db

import (
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

// MaxFilterValues bounds the values of one in: or nin: filter. Each value is
// one SQL variable, and SQLite (32,766) and MySQL (65,535) cap the variables
// of a statement; a list with every filter at this bound stays far below both.
const MaxFilterValues = 1000

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
	if len(f.Values) == 0 || len(f.Values) > MaxFilterValues {
		return nil, errdefs.Invalid("Filter %s has %d values: between 1 and %d are accepted.", col, len(f.Values), MaxFilterValues)
	}
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
