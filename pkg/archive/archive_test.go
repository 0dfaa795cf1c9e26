package archive_test

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"errors"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/archive"
)

// zent describes one entry of a test zip. zeros, when set, replaces body with
// that many zero bytes (highly compressible: the bomb cases).
type zent struct {
	name  string
	body  string
	zeros int
	mode  fs.FileMode // 0 means a regular 0644 file, or a directory for names ending in "/"
}

// buildZip writes entries with archive/zip exactly as named, unchecked:
// the point is to produce the hostile archives a stranger could upload.
func buildZip(t *testing.T, entries ...zent) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range entries {
		h := &zip.FileHeader{Name: e.name, Method: zip.Deflate}
		switch {
		case e.mode != 0:
			h.SetMode(e.mode)
		case strings.HasSuffix(e.name, "/"):
			h.SetMode(fs.ModeDir | 0o755)
		default:
			h.SetMode(0o644)
		}
		w, err := zw.CreateHeader(h)
		require.NoError(t, err)
		if e.zeros > 0 {
			_, err = w.Write(make([]byte, e.zeros))
		} else {
			_, err = w.Write([]byte(e.body))
		}
		require.NoError(t, err)
	}
	require.NoError(t, zw.Close())
	return buf.Bytes()
}

// lyingBomb is a zip whose single entry claims 10 bytes but inflates to n:
// only counting real bytes (or archive/zip's own length check) catches it.
func lyingBomb(t *testing.T, n int) []byte {
	t.Helper()
	data := make([]byte, n)
	var comp bytes.Buffer
	fw, err := flate.NewWriter(&comp, flate.BestCompression)
	require.NoError(t, err)
	_, err = fw.Write(data)
	require.NoError(t, err)
	require.NoError(t, fw.Close())

	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	h := &zip.FileHeader{
		Name:               "bomb.bin",
		Method:             zip.Deflate,
		CRC32:              crc32.ChecksumIEEE(data),
		CompressedSize64:   uint64(comp.Len()),
		UncompressedSize64: 10,
	}
	h.SetMode(0o644)
	w, err := zw.CreateRaw(h)
	require.NoError(t, err)
	_, err = w.Write(comp.Bytes())
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	return buf.Bytes()
}

// smallLimits keeps the bomb cases fast: 1 MiB and 5 entries.
var smallLimits = archive.Limits{MaxFiles: 5, MaxUncompressed: 1 << 20}

type archiveCase struct {
	name    string
	zip     func(t *testing.T) []byte
	wantErr string // substring of the user-facing message; "" means valid
	// files the extraction must produce (path → content), for valid cases
	files map[string]string
}

func archiveCases() []archiveCase {
	z := func(entries ...zent) func(t *testing.T) []byte {
		return func(t *testing.T) []byte { return buildZip(t, entries...) }
	}
	return []archiveCase{
		{
			name:  "single module is valid",
			zip:   z(zent{name: "main.py", body: "def main():\n    return 'hi'\n"}),
			files: map[string]string{"main.py": "def main():\n    return 'hi'\n"},
		},
		{
			name:  "two modules are valid",
			zip:   z(zent{name: "main.py", body: "import helper\n"}, zent{name: "helper.py", body: "X = 1\n"}),
			files: map[string]string{"main.py": "import helper\n", "helper.py": "X = 1\n"},
		},
		{
			name: "nested directories are valid",
			zip: z(
				zent{name: "pkg/"},
				zent{name: "pkg/sub/mod.py", body: "Y = 2\n"},
				zent{name: "./top.py", body: "Z\n"},
				zent{name: "./"},
			),
			files: map[string]string{"pkg/sub/mod.py": "Y = 2\n", "top.py": "Z\n"},
		},
		{
			name:  "exactly at the size limit is valid",
			zip:   z(zent{name: "big.bin", zeros: 1 << 20}),
			files: map[string]string{"big.bin": string(make([]byte, 1<<20))},
		},
		{
			name:  "empty zip archive is valid",
			zip:   z(),
			files: map[string]string{},
		},
		{name: "parent escape", zip: z(zent{name: "../evil", body: "x"}), wantErr: `Package entry "../evil" escapes the package directory.`},
		{name: "nested parent escape", zip: z(zent{name: "a/../../evil", body: "x"}), wantErr: "escapes the package directory"},
		{name: "absolute path", zip: z(zent{name: "/etc/passwd", body: "x"}), wantErr: `Package entry "/etc/passwd" has an absolute path.`},
		{name: "drive letter", zip: z(zent{name: "C:/evil", body: "x"}), wantErr: "has an absolute path"},
		{name: "backslash escape", zip: z(zent{name: `..\evil`, body: "x"}), wantErr: "contains a backslash"},
		{name: "symlink entry", zip: z(zent{name: "link", body: "/etc/passwd", mode: fs.ModeSymlink | 0o777}), wantErr: `Package entry "link" is a symbolic link.`},
		{name: "device entry", zip: z(zent{name: "dev", mode: fs.ModeDevice | 0o600}), wantErr: "is not a regular file or directory"},
		{name: "duplicate entry", zip: z(zent{name: "a.py", body: "1"}, zent{name: "a.py", body: "2"}), wantErr: "appears more than once"},
		{name: "file then directory of same name", zip: z(zent{name: "a", body: "1"}, zent{name: "a/b", body: "2"}), wantErr: "is both a file and a directory"},
		{name: "directory then file of same name", zip: z(zent{name: "a/b", body: "1"}, zent{name: "a", body: "2"}), wantErr: "is both a file and a directory"},
		{
			name:    "too many files",
			zip:     z(zent{name: "1"}, zent{name: "2"}, zent{name: "3"}, zent{name: "4"}, zent{name: "5"}, zent{name: "6"}),
			wantErr: "Package has more than 5 entries.",
		},
		{name: "zip bomb", zip: z(zent{name: "bomb.bin", zeros: 1<<20 + 1}), wantErr: "Package expands to more than 1048576 bytes."},
		{
			name:    "zip bomb spread over files",
			zip:     z(zent{name: "a", zeros: 600 << 10}, zent{name: "b", zeros: 600 << 10}),
			wantErr: "Package expands to more than 1048576 bytes.",
		},
		{name: "zip bomb with lying header", zip: func(t *testing.T) []byte { return lyingBomb(t, 4<<20) }, wantErr: `Package entry "bomb.bin" is corrupt.`},
		{name: "corrupt bytes", zip: func(*testing.T) []byte { return []byte("PK\x03\x04 this is not really a zip") }, wantErr: "Package is not a valid ZIP package."},
		{
			name: "corrupt entry data",
			zip: func(t *testing.T) []byte {
				b := buildZip(t, zent{name: "main.py", body: strings.Repeat("print('hello')\n", 100)})
				b[40] ^= 0xff // inside the first entry's compressed data
				return b
			},
			wantErr: `Package entry "main.py"`,
		},
		{name: "empty file", zip: func(*testing.T) []byte { return nil }, wantErr: "Package is not a valid ZIP package."},
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range archiveCases() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := tc.zip(t)
			err := archive.Validate(bytes.NewReader(b), int64(len(b)), smallLimits)
			if tc.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, archive.ErrInvalid)
			require.Contains(t, err.Error(), tc.wantErr)
		})
	}
}

func TestExtract(t *testing.T) {
	t.Parallel()
	for _, tc := range archiveCases() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tmp := t.TempDir()
			zipPath := filepath.Join(tmp, "pkg.zip")
			require.NoError(t, os.WriteFile(zipPath, tc.zip(t), 0o600))
			dir := filepath.Join(tmp, "out", "fn")

			err := archive.Extract(zipPath, dir, smallLimits)
			if tc.wantErr != "" {
				require.ErrorIs(t, err, archive.ErrInvalid)
				require.Contains(t, err.Error(), tc.wantErr)
				tooBig := strings.HasPrefix(tc.wantErr, "Package expands to more than")
				require.Equal(t, tooBig, errors.Is(err, archive.ErrTooBig), "ErrTooBig exactly when the limit is the reason")
				_, statErr := os.Stat(dir)
				require.ErrorIs(t, statErr, fs.ErrNotExist, "a refused package leaves nothing behind")
				require.NoFileExists(t, filepath.Join(tmp, "evil"))
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.files, readTree(t, dir))
		})
	}
}

func TestExtractReader(t *testing.T) {
	t.Parallel()
	for _, tc := range archiveCases() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tmp := t.TempDir()
			spool := filepath.Join(tmp, "spool")
			require.NoError(t, os.Mkdir(spool, 0o700))
			dir := filepath.Join(tmp, "out")

			err := archive.ExtractReader(bytes.NewReader(tc.zip(t)), spool, dir, smallLimits)
			if tc.wantErr != "" {
				require.ErrorIs(t, err, archive.ErrInvalid)
				require.Contains(t, err.Error(), tc.wantErr)
			} else {
				require.NoError(t, err)
				require.Equal(t, tc.files, readTree(t, dir))
			}
			left, err := os.ReadDir(spool)
			require.NoError(t, err)
			require.Empty(t, left, "the spooled copy is removed")
		})
	}
}

func TestExtractReader_EndlessStreamIsCut(t *testing.T) {
	t.Parallel()
	lim := archive.Limits{MaxFiles: 1, MaxUncompressed: 1024}
	r := bytes.NewReader(make([]byte, 4<<20)) // far beyond what 1 KiB could be zipped into
	err := archive.ExtractReader(r, t.TempDir(), filepath.Join(t.TempDir(), "out"), lim)
	require.ErrorIs(t, err, archive.ErrInvalid)
	require.ErrorIs(t, err, archive.ErrTooBig)
	require.Contains(t, err.Error(), "Package expands to more than 1024 bytes.")
}

// TestExtract_Modes is not parallel: the umask it sets is process-wide.
func TestExtract_Modes(t *testing.T) {
	old := umask(0o077) // a strict umask must not leave the runtime unable to read the code
	t.Cleanup(func() { umask(old) })

	b := buildZip(t,
		zent{name: "bin/run", body: "#!/bin/sh\n", mode: 0o4777}, // setuid, world-writable: both dropped
		zent{name: "data.txt", body: "x", mode: 0o600},
		zent{name: "lib/", mode: fs.ModeDir | 0o700},
	)
	zipPath := filepath.Join(t.TempDir(), "p.zip")
	require.NoError(t, os.WriteFile(zipPath, b, 0o600))
	dir := filepath.Join(t.TempDir(), "out")
	require.NoError(t, archive.Extract(zipPath, dir, archive.Limits{}))

	for name, want := range map[string]fs.FileMode{
		".":        fs.ModeDir | 0o755,
		"bin":      fs.ModeDir | 0o755,
		"lib":      fs.ModeDir | 0o755,
		"bin/run":  0o755,
		"data.txt": 0o644,
	} {
		st, err := os.Lstat(filepath.Join(dir, name))
		require.NoError(t, err, name)
		require.Equal(t, want, st.Mode(), name)
	}
}

func TestExtract_Destination(t *testing.T) {
	t.Parallel()
	good := buildZip(t, zent{name: "main.py", body: "x"})
	for _, tc := range []struct {
		name    string
		prepare func(t *testing.T, dir string)
		wantErr string
	}{
		{name: "absent directory is created", prepare: func(*testing.T, string) {}},
		{name: "empty directory is used", prepare: func(t *testing.T, dir string) { require.NoError(t, os.Mkdir(dir, 0o755)) }},
		{
			name: "non-empty directory is refused",
			prepare: func(t *testing.T, dir string) {
				require.NoError(t, os.Mkdir(dir, 0o755))
				require.NoError(t, os.WriteFile(filepath.Join(dir, "old"), nil, 0o644))
			},
			wantErr: "is not empty",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tmp := t.TempDir()
			zipPath := filepath.Join(tmp, "p.zip")
			require.NoError(t, os.WriteFile(zipPath, good, 0o600))
			dir := filepath.Join(tmp, "out")
			tc.prepare(t, dir)
			err := archive.Extract(zipPath, dir, archive.DefaultLimits())
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				require.NotErrorIs(t, err, archive.ErrInvalid, "not the package's fault")
				return
			}
			require.NoError(t, err)
			require.Equal(t, map[string]string{"main.py": "x"}, readTree(t, dir))
		})
	}
}

func TestExtract_RefusedIntoExistingDirLeavesItEmpty(t *testing.T) {
	t.Parallel()
	// The first entry is fine and gets written; the bomb after it fails the
	// extraction part-way, which must not leave "ok.py" behind.
	lim := archive.Limits{MaxUncompressed: 100}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, src := range [][]byte{buildZip(t, zent{name: "ok.py", body: "x"}), lyingBomb(t, 1000)} {
		zr, err := zip.NewReader(bytes.NewReader(src), int64(len(src)))
		require.NoError(t, err)
		for _, f := range zr.File {
			require.NoError(t, zw.Copy(f))
		}
	}
	require.NoError(t, zw.Close())

	tmp := t.TempDir()
	zipPath := filepath.Join(tmp, "p.zip")
	require.NoError(t, os.WriteFile(zipPath, buf.Bytes(), 0o600))
	dir := filepath.Join(tmp, "out")
	require.NoError(t, os.Mkdir(dir, 0o755))

	err := archive.Extract(zipPath, dir, lim)
	require.ErrorIs(t, err, archive.ErrInvalid)
	left, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Empty(t, left)
}

func TestDefaultLimits(t *testing.T) {
	t.Parallel()
	require.Equal(t, archive.Limits{MaxFiles: 10000, MaxUncompressed: 512 << 20}, archive.DefaultLimits())
}

// readTree returns every regular file under dir with its content, and fails
// on anything else (a symlink must never appear).
func readTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		require.NoError(t, err)
		if d.IsDir() {
			return nil
		}
		require.True(t, d.Type().IsRegular(), "%s is not a regular file", p)
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		rel, err := filepath.Rel(dir, p)
		require.NoError(t, err)
		out[filepath.ToSlash(rel)] = string(b)
		return nil
	})
	require.NoError(t, err)
	return out
}

// TestExtractReserving: reserve is told what the package's entries will
// take before anything is written, from a file or a stream; its refusal
// ends the extraction with nothing written.
func TestExtractReserving(t *testing.T) {
	t.Parallel()
	zipped := buildZip(t, zent{name: "a/b/c.txt", body: "abc"}, zent{name: "d.txt", body: "de"}, zent{name: "e/"})
	want := archive.Expansion{Bytes: 5, Files: 2, Dirs: 3}
	refused := errors.New("no room")
	for _, tc := range []struct {
		name    string
		stream  bool
		refuse  bool
		wantErr error
	}{
		{name: "file"},
		{name: "stream", stream: true},
		{name: "file refused", refuse: true, wantErr: refused},
		{name: "stream refused", stream: true, refuse: true, wantErr: refused},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tmp := t.TempDir()
			dir := filepath.Join(tmp, "out")
			var got archive.Expansion
			reserve := func(exp archive.Expansion) error {
				got = exp
				if _, err := os.Stat(dir); err == nil {
					t.Errorf("%s exists before the reservation", dir)
				}
				if tc.refuse {
					return refused
				}
				return nil
			}
			var err error
			if tc.stream {
				err = archive.ExtractReaderReserving(bytes.NewReader(zipped), tmp, dir, smallLimits, reserve)
			} else {
				path := filepath.Join(tmp, "p.zip")
				require.NoError(t, os.WriteFile(path, zipped, 0o600))
				err = archive.ExtractReserving(path, dir, smallLimits, reserve)
			}
			require.Equal(t, want, got)
			if tc.wantErr != nil {
				require.ErrorIs(t, err, tc.wantErr)
				require.NoDirExists(t, dir)
				return
			}
			require.NoError(t, err)
			require.Equal(t, map[string]string{"a/b/c.txt": "abc", "d.txt": "de"}, readTree(t, dir))
		})
	}
}
