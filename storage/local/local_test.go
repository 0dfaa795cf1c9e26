package local_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/testutil"
	"github.com/qinling-go/qinling/storage"
	"github.com/qinling-go/qinling/storage/local"
	"github.com/qinling-go/qinling/storage/storagetest"
)

const (
	project  = "3f1a2b4c5d6e7f8091a2b3c4d5e6f708"
	function = "6f8b9d3e-2c41-4b8a-9e0f-1a2b3c4d5e6f"
)

func newLocal(t *testing.T, dir string, maxSize int64) *local.Storage {
	t.Helper()
	s, err := local.New(local.Config{Dir: dir, MaxSize: maxSize})
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

func TestLocal(t *testing.T) {
	t.Parallel()
	storagetest.Run(t, func(t *testing.T, maxSize int64) storage.PackageStorage {
		return newLocal(t, t.TempDir(), maxSize)
	})
}

// listDir returns the names in dir (nil if it does not exist).
func listDir(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestLocal_UpstreamLayout(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	s := newLocal(t, dir, 0)
	pkg := testutil.Zip(t, map[string]string{"main.py": "x"})
	sum, _, err := s.Store(ctx, project, function, bytes.NewReader(pkg), "")
	require.NoError(t, err)
	require.NoError(t, s.Copy(ctx, project, function, sum, 0))

	require.ElementsMatch(t, []string{
		function + "_" + sum + ".zip",
		function + "_1_" + sum + ".zip",
	}, listDir(t, filepath.Join(dir, project)), "no temporary file is left")

	// A directory written by upstream Qinling is readable as it is.
	other := testutil.Zip(t, map[string]string{"main.py": "y"})
	otherSum := testutil.MD5(other)
	require.NoError(t, os.WriteFile(filepath.Join(dir, project, function+"_7_"+otherSum+".zip"), other, 0o644))
	rc, err := s.Retrieve(ctx, project, function, "", 7)
	require.NoError(t, err)
	defer rc.Close()
	got, err := io.ReadAll(rc)
	require.NoError(t, err)
	require.Equal(t, other, got)
}

// failingReader yields some bytes, then an error (a broken upload).
type failingReader struct{ sent bool }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.sent {
		return 0, errors.New("connection reset")
	}
	r.sent = true
	return copy(p, "PK\x03\x04partial"), nil
}

// cancelAfterFirstRead cancels the request while the upload is streaming.
type cancelAfterFirstRead struct {
	cancel context.CancelFunc
	r      io.Reader
}

func (c *cancelAfterFirstRead) Read(p []byte) (int, error) {
	n, err := c.r.Read(p[:min(len(p), 100)])
	c.cancel()
	return n, err
}

func TestLocal_FailedStoreLeavesNoFile(t *testing.T) {
	t.Parallel()
	pkg := testutil.Zip(t, map[string]string{"main.py": "x"})
	for _, tc := range []struct {
		name    string
		maxSize int64
		reader  func(cancel context.CancelFunc) io.Reader
		md5sum  string
		wantErr error
	}{
		{name: "too large", maxSize: 10, reader: func(context.CancelFunc) io.Reader { return bytes.NewReader(pkg) }, wantErr: storage.ErrTooLarge},
		{name: "md5 mismatch", reader: func(context.CancelFunc) io.Reader { return bytes.NewReader(pkg) }, md5sum: testutil.MD5(nil), wantErr: storage.ErrChecksumMismatch},
		{name: "not a zip", reader: func(context.CancelFunc) io.Reader { return bytes.NewReader([]byte("hello")) }, wantErr: storage.ErrInvalidPackage},
		{name: "broken upload", reader: func(context.CancelFunc) io.Reader { return &failingReader{} }},
		{
			name: "cancelled mid-upload",
			reader: func(cancel context.CancelFunc) io.Reader {
				return &cancelAfterFirstRead{cancel: cancel, r: bytes.NewReader(pkg)}
			},
			wantErr: context.Canceled,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			s := newLocal(t, dir, tc.maxSize)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			_, _, err := s.Store(ctx, project, function, tc.reader(cancel), tc.md5sum)
			require.Error(t, err)
			if tc.wantErr != nil {
				require.ErrorIs(t, err, tc.wantErr)
			}
			require.Empty(t, listDir(t, filepath.Join(dir, project)))
		})
	}
}

func TestLocal_PathSafety(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pkg := testutil.Zip(t, map[string]string{"main.py": "x"})
	sum := testutil.MD5(pkg)

	t.Run("unsafe ids create nothing", func(t *testing.T) {
		t.Parallel()
		base := t.TempDir()
		dir := filepath.Join(base, "packages")
		s := newLocal(t, dir, 0)
		for _, ids := range [][2]string{
			{"..", function}, {"../x", function}, {project, "../../x"}, {project, "/tmp/x"}, {"a/b", function},
		} {
			_, _, err := s.Store(ctx, ids[0], ids[1], bytes.NewReader(pkg), "")
			require.ErrorIs(t, err, storage.ErrNotFound, "%q", ids)
			require.Error(t, s.Copy(ctx, ids[0], ids[1], sum, 0), "%q", ids)
		}
		require.Equal(t, []string{"packages"}, listDir(t, base))
		require.Empty(t, listDir(t, dir))
	})

	t.Run("a symlinked project directory cannot lead outside", func(t *testing.T) {
		t.Parallel()
		base := t.TempDir()
		dir := filepath.Join(base, "packages")
		outside := filepath.Join(base, "outside")
		require.NoError(t, os.Mkdir(outside, 0o755))
		s := newLocal(t, dir, 0)
		require.NoError(t, os.Symlink(outside, filepath.Join(dir, project)))

		_, _, err := s.Store(ctx, project, function, bytes.NewReader(pkg), "")
		require.Error(t, err)
		require.Empty(t, listDir(t, outside))
	})

	t.Run("a symlinked package cannot be read outside", func(t *testing.T) {
		t.Parallel()
		base := t.TempDir()
		dir := filepath.Join(base, "packages")
		secret := filepath.Join(base, "secret")
		require.NoError(t, os.WriteFile(secret, []byte("secret"), 0o600))
		s := newLocal(t, dir, 0)
		require.NoError(t, os.Mkdir(filepath.Join(dir, project), 0o750))
		require.NoError(t, os.Symlink(secret, filepath.Join(dir, project, function+"_"+sum+".zip")))

		rc, err := s.Retrieve(ctx, project, function, sum, 0)
		if err == nil {
			rc.Close()
		}
		require.Error(t, err)
	})
}

// With hard links, exactly one of several concurrent Stores of the same bytes
// reports the update; the suite only asks for at least one.
func TestLocal_ConcurrentSameContentOneUpdate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := newLocal(t, dir, 0)
	pkg := testutil.Zip(t, map[string]string{"main.py": "x"})
	const n = 16
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		updates int
	)
	for range n {
		wg.Go(func() {
			_, updated, err := s.Store(context.Background(), project, function, bytes.NewReader(pkg), "")
			require.NoError(t, err)
			if updated {
				mu.Lock()
				updates++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	require.Equal(t, 1, updates)
	require.Len(t, listDir(t, filepath.Join(dir, project)), 1, "no temporary file is left")
}

func TestLocal_New(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		cfg     func(dir string) local.Config
		wantErr string
	}{
		{name: "missing directory is created", cfg: func(dir string) local.Config { return local.Config{Dir: filepath.Join(dir, "a", "b")} }},
		{name: "no directory is an error", cfg: func(string) local.Config { return local.Config{} }, wantErr: "no directory"},
		{name: "negative max size is an error", cfg: func(dir string) local.Config { return local.Config{Dir: dir, MaxSize: -1} }, wantErr: "negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, err := local.New(tc.cfg(t.TempDir()))
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.NoError(t, s.Close())
		})
	}
}
