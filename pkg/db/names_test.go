package db_test

import (
	"context"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/db"
	"github.com/qinling-go/qinling/pkg/errdefs"
)

// TestFunctionAliasByName: a name is looked up in one project; the older
// alias of that name in another project is never the answer.
func TestFunctionAliasByName(t *testing.T) {
	each(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		d := open(t)
		for _, p := range []string{"older", "mine"} {
			f := &db.Function{Base: db.Base{ProjectID: p}, Code: `{"source": "package"}`}
			require.NoError(t, d.CreateFunction(ctx, f))
			a := &db.FunctionAlias{Base: db.Base{ProjectID: p}, Name: "prod", FunctionID: f.ID}
			require.NoError(t, d.CreateFunctionAlias(ctx, a))
			time.Sleep(time.Millisecond) // distinct created_at, so "oldest" means something
		}
		for _, tc := range []struct{ name, project, want string }{
			{name: "own project", project: "mine", want: "mine"},
			{name: "other project named", project: "older", want: "older"},
			{name: "project without it", project: "none"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				a, err := d.FunctionAlias(ctx, tc.project, "prod")
				if tc.want == "" {
					require.ErrorIs(t, err, errdefs.ErrNotFound)
					require.EqualError(t, err, "FunctionAlias not found [name=prod]")
					return
				}
				require.NoError(t, err)
				require.Equal(t, tc.want, a.ProjectID)
			})
		}
	})
}

// TestRuntimeDescription: a runtime in error keeps its whole reason, which
// names every image that can run, up to RuntimeDescriptionSize characters.
func TestRuntimeDescription(t *testing.T) {
	each(t, func(t *testing.T, open opener) {
		ctx := context.Background()
		d := open(t)
		rt := &db.Runtime{Base: db.Base{ProjectID: "p"}, Image: "busybox", Status: db.StatusCreating}
		require.NoError(t, d.CreateRuntime(ctx, rt))
		require.ErrorIs(t, rt.CheckAvailable(), errdefs.ErrConflict)
		require.EqualError(t, rt.CheckAvailable(), "Runtime "+rt.ID+" is not available.")

		// Multi-byte characters across the cut: it falls between characters.
		long := strings.Repeat("é", db.RuntimeDescriptionSize+10)
		reason := db.FitRuntimeDescription(long)
		require.True(t, utf8.ValidString(reason))
		require.Equal(t, db.RuntimeDescriptionSize, utf8.RuneCountInString(reason))
		require.NoError(t, d.UpdateRuntime(ctx, rt.ID, map[string]any{"status": db.StatusAvailable, "description": reason}))
		got, err := d.Runtime(ctx, db.Internal, rt.ID)
		require.NoError(t, err)
		require.Equal(t, reason, *got.Description)
		require.NoError(t, got.CheckAvailable())
		require.Equal(t, "short", db.FitRuntimeDescription("short"))
	})
}
