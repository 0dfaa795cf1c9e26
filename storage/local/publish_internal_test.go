package local

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// copyFile is the fallback for file systems without hard links, which the
// temp directories used by tests always have; exercise it directly.
func TestLocal_CopyFileFallback(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, err := New(Config{Dir: dir})
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	require.NoError(t, os.Mkdir(filepath.Join(dir, "p"), 0o750))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "p", "f_0123.zip"), []byte("package"), 0o640))

	require.NoError(t, s.copyFile("p/f_0123.zip", "p/f_1_0123.zip"))

	got, err := os.ReadFile(filepath.Join(dir, "p", "f_1_0123.zip"))
	require.NoError(t, err)
	require.Equal(t, "package", string(got))
	entries, err := os.ReadDir(filepath.Join(dir, "p"))
	require.NoError(t, err)
	require.Len(t, entries, 2, "no temporary file is left")
}
