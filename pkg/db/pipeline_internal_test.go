package db

import (
	"context"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm/schema"
)

// TestExecutionInsertColumns: the hand-written INSERT of the API's
// pipeline names every column of the Execution model with its value, so a
// column added to the model cannot be left out of it or shifted.
func TestExecutionInsertColumns(t *testing.T) {
	s, err := schema.Parse(&Execution{}, &sync.Map{}, schema.NamingStrategy{})
	require.NoError(t, err)
	var cols []string
	for _, m := range regexp.MustCompile("`([a-z_]+)`").FindAllStringSubmatch(executionInsert, -1) {
		cols = append(cols, m[1])
	}
	require.Equal(t, s.DBNames, cols)
	require.Equal(t, len(cols), strings.Count(executionInsert, "?"))

	str := func(v string) *string { return &v }
	at := time.Unix(1e9, 0)
	e := &Execution{Base: Base{ID: "id", ProjectID: "p", CreatedAt: at, UpdatedAt: &at}, FunctionID: str("f"), FunctionVersion: 3,
		FunctionAlias: str("a"), Description: str("d"), Status: "s", Sync: true, Input: str("i"), Result: str("r"), Logs: str("l"),
		Engine: str("e"), StartedAt: &at, Trigger: str("t"), UserID: str("u")}
	values := executionValues(e)
	require.Len(t, values, len(cols))
	for i, name := range cols {
		want, _ := s.FieldsByDBName[name].ValueOf(context.Background(), reflect.ValueOf(e).Elem())
		require.Equal(t, want, values[i], "column %s", name)
	}
}
