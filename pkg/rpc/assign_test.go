package rpc_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/rpc"
)

type outcome struct {
	Status string  `json:"status"`
	Result *string `json:"result,omitempty"`
}

// TestAssign: a value handed across in one process lands in the caller's
// reply as JSON would have put it there.
func TestAssign(t *testing.T) {
	result := "ok"
	for _, tc := range []struct {
		name string
		src  any
		want outcome
	}{
		{name: "value of the type", src: outcome{Status: "success", Result: &result}, want: outcome{Status: "success", Result: &result}},
		{name: "pointer to the type", src: &outcome{Status: "error"}, want: outcome{Status: "error"}},
		{name: "nil pointer, as null", src: (*outcome)(nil), want: outcome{}},
		{name: "another type, through JSON", src: map[string]any{"status": "success", "result": "ok"}, want: outcome{Status: "success", Result: &result}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got outcome
			require.NoError(t, rpc.Assign(tc.src, &got))
			require.Equal(t, tc.want, got)
		})
	}
	t.Run("what JSON cannot take fails", func(t *testing.T) {
		var got outcome
		require.Error(t, rpc.Assign(map[string]any{"status": 3}, &got))
	})
}
