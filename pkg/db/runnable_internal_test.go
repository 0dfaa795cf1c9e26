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

// TestFunctionColumns: RunnableFunction's column list names every column of
// Function, and each column is scanned into its own field: a field added to
// Function but not to the list (or listed in another place than its
// destination) would be read as zero on every execution's start.
func TestFunctionColumns(t *testing.T) {
	s, err := schema.Parse(&Function{}, &sync.Map{}, schema.NamingStrategy{})
	require.NoError(t, err)
	var f Function
	fields := functionFields(&f)
	var cols []string
	for _, c := range strings.Split(functionColumns, ",") {
		cols = append(cols, strings.TrimPrefix(strings.TrimSpace(c), "functions."))
	}
	require.ElementsMatch(t, s.DBNames, cols, "every column of functions, once")
	require.Len(t, fields, len(cols))
	v := reflect.ValueOf(&f).Elem()
	for i, c := range cols {
		want := s.LookUpField(c).ReflectValueOf(context.Background(), v).Addr().Interface()
		require.Equal(t, reflect.ValueOf(want).Pointer(), reflect.ValueOf(fields[i]).Pointer(), "column %s is scanned into another field", c)
	}
}
