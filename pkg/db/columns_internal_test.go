package db

import (
	"context"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm/schema"
)

// TestColumnLists: the statements written without gorm (RunnableFunction's
// read, the per-execution insert in hotwrite.go) name every column of their
// model, each scanned into or written from its own field: a field added to
// the model but not to the list would read as zero, or be stored as NULL, on
// every execution.
func TestColumnLists(t *testing.T) {
	for _, tc := range []struct {
		name    string
		columns string
		// model returns a fresh row and the list's fields in it.
		model func() (any, []any)
	}{
		{name: "functions, RunnableFunction", columns: functionColumns, model: func() (any, []any) {
			var f Function
			return &f, functionFields(&f)
		}},
		{name: "executions, createExecution", columns: executionColumns, model: func() (any, []any) {
			var e Execution
			return &e, executionFields(&e)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			row, fields := tc.model()
			s, err := schema.Parse(row, &sync.Map{}, schema.NamingStrategy{})
			require.NoError(t, err)
			var cols []string
			for _, c := range strings.Split(tc.columns, ",") {
				c = strings.TrimSpace(c)
				cols = append(cols, strings.Trim(c[strings.IndexByte(c, '.')+1:], "`"))
			}
			require.ElementsMatch(t, s.DBNames, cols, "every column, once")
			require.Len(t, fields, len(cols))
			v := reflect.ValueOf(row).Elem()
			for i, c := range cols {
				want := s.LookUpField(c).ReflectValueOf(context.Background(), v).Addr().Interface()
				require.Equal(t, reflect.ValueOf(want).Pointer(), reflect.ValueOf(fields[i]).Pointer(), "column %s is another field's", c)
			}
		})
	}
	require.Equal(t, strings.Count(executionColumns, ",")+1, strings.Count(insertExecution, "?"), "a placeholder per column")
}
