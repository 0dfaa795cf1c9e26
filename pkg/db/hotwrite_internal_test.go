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

// TestExecutionColumns: the per-execution insert names every column of
// Execution, each with its own field: a field added to Execution but not to
// the list would be stored as NULL by every execution's start.
func TestExecutionColumns(t *testing.T) {
	s, err := schema.Parse(&Execution{}, &sync.Map{}, schema.NamingStrategy{})
	require.NoError(t, err)
	var e Execution
	fields := executionFields(&e)
	var cols []string
	for _, c := range strings.Split(executionColumns, ",") {
		cols = append(cols, strings.Trim(strings.TrimSpace(c), "`"))
	}
	require.ElementsMatch(t, s.DBNames, cols, "every column of executions, once")
	require.Len(t, fields, len(cols))
	require.Equal(t, len(cols), strings.Count(insertExecution, "?"), "a placeholder per column")
	v := reflect.ValueOf(&e).Elem()
	for i, c := range cols {
		want := s.LookUpField(c).ReflectValueOf(context.Background(), v).Addr().Interface()
		require.Equal(t, reflect.ValueOf(want).Pointer(), reflect.ValueOf(fields[i]).Pointer(), "column %s is written from another field", c)
	}
}
