package memory_test

import (
	"bytes"
	"context"
	"sort"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/errdefs"
	"github.com/qinling-go/qinling/pkg/testutil"
	"github.com/qinling-go/qinling/storage"
	"github.com/qinling-go/qinling/storage/memory"
	"github.com/qinling-go/qinling/storage/storagetest"
)

func TestMemory(t *testing.T) {
	t.Parallel()
	storagetest.Run(t, func(t *testing.T, maxSize int64) storage.PackageStorage {
		return memory.New(memory.Config{MaxSize: maxSize})
	})
}

func TestMemory_Names(t *testing.T) {
	t.Parallel()
	s := memory.New(memory.Config{})
	pkg := testutil.Zip(t, map[string]string{"main.py": "x"})
	sum, _, err := s.Store(context.Background(), "p", "f", bytes.NewReader(pkg), "")
	require.NoError(t, err)
	require.NoError(t, s.Copy(context.Background(), "p", "f", sum, 0))
	want := []string{"p/f_1_" + sum + ".zip", "p/f_" + sum + ".zip"}
	sort.Strings(want) // Names is sorted, so the order depends on the md5
	require.Equal(t, want, s.Names())
}

// The errors carry the kind and message the API answers with, so a handler
// can return them as they are.
func TestMemory_ErrorsMapToHTTP(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pkg := testutil.Zip(t, map[string]string{"main.py": "x"})
	for _, tc := range []struct {
		name       string
		run        func(s *memory.Storage) error
		wantStatus int
		wantMsg    string
	}{
		{
			name: "md5 mismatch is 400",
			run: func(s *memory.Storage) error {
				_, _, err := s.Store(ctx, "p", "f", bytes.NewReader(pkg), "00000000000000000000000000000000")
				return err
			},
			wantStatus: 400, wantMsg: "Package md5 mismatch.",
		},
		{
			name: "not a zip is 400",
			run: func(s *memory.Storage) error {
				_, _, err := s.Store(ctx, "p", "f", bytes.NewReader([]byte("nope")), "")
				return err
			},
			wantStatus: 400, wantMsg: "Package is not a valid ZIP package.",
		},
		{
			name: "too large is 413",
			run: func(s *memory.Storage) error {
				_, _, err := s.Store(ctx, "p", "f", bytes.NewReader(make([]byte, 11)), "")
				return err
			},
			wantStatus: 413, wantMsg: "Package is larger than the limit of 10 bytes.",
		},
		{
			name: "missing is 404",
			run: func(s *memory.Storage) error {
				_, err := s.Retrieve(ctx, "p", "f", testutil.MD5(pkg), 0)
				return err
			},
			wantStatus: 404, wantMsg: "Package of function f for project p not found.",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			maxSize := int64(0)
			if tc.wantStatus == 413 {
				maxSize = 10
			}
			err := tc.run(memory.New(memory.Config{MaxSize: maxSize}))
			require.Equal(t, tc.wantStatus, errdefs.HTTPStatus(err))
			require.Equal(t, tc.wantMsg, errdefs.PublicMessage(err))
		})
	}
}
