package testutil

import (
	"archive/zip"
	"bytes"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

// Zip returns a zip archive of files (name → content), entries in name order,
// so the same files always give the same bytes and the same md5.
func Zip(t testing.TB, files map[string]string) []byte {
	t.Helper()
	var b bytes.Buffer
	w := zip.NewWriter(&b)
	for _, name := range sortedKeys(files) {
		h := &zip.FileHeader{Name: name, Method: zip.Deflate}
		h.SetMode(0o644)
		f, err := w.CreateHeader(h)
		require.NoError(t, err)
		_, err = f.Write([]byte(files[name]))
		require.NoError(t, err)
	}
	require.NoError(t, w.Close())
	return b.Bytes()
}

// WriteZip writes Zip(files) to a new file in dir and returns its path.
func WriteZip(t testing.TB, dir string, files map[string]string) string {
	t.Helper()
	f, err := os.CreateTemp(dir, "package-*.zip")
	require.NoError(t, err)
	defer f.Close()
	_, err = f.Write(Zip(t, files))
	require.NoError(t, err)
	return f.Name()
}
