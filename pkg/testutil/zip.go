package testutil

import (
	"archive/zip"
	"bytes"
	"crypto/md5"
	"encoding/hex"
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

// MD5 returns the lower-case hex md5 of b, the form of a package's md5sum.
func MD5(b []byte) string {
	sum := md5.Sum(b)
	return hex.EncodeToString(sum[:])
}
