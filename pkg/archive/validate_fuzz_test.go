package archive_test

import (
	"archive/zip"
	"bytes"
	"errors"
	"io"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"

	"github.com/qinling-go/qinling/pkg/archive"
)

// fuzzLimits are small so that mutated archives cross them often.
var fuzzLimits = archive.Limits{MaxFiles: 8, MaxUncompressed: 4096}

// FuzzValidate checks Validate against an independent reading of the same
// bytes. Properties: a refusal is always the package's fault (ErrInvalid);
// an accepted archive has at most MaxFiles entries, only regular files and
// directories with safe relative names, really decompresses (not just
// declares) to at most MaxUncompressed bytes, and Extract unpacks it to
// exactly that inside the target directory.
func FuzzValidate(f *testing.F) {
	type ent struct {
		name string
		body []byte
		mode fs.FileMode
	}
	seed := func(method uint16, entries ...ent) {
		var b bytes.Buffer
		w := zip.NewWriter(&b)
		for _, e := range entries {
			h := &zip.FileHeader{Name: e.name, Method: method}
			if e.mode != 0 {
				h.SetMode(e.mode)
			}
			fw, err := w.CreateHeader(h)
			if err != nil {
				f.Fatal(err)
			}
			if _, err := fw.Write(e.body); err != nil {
				f.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			f.Fatal(err)
		}
		f.Add(b.Bytes())
	}
	hello := []byte("def main(name='World', **kwargs):\n    return 'Hello, %s' % name\n")
	// What the CLI uploads for --file hello.py: one stored entry.
	seed(zip.Store, ent{name: "hello.py", body: hello})
	seed(zip.Deflate, ent{name: "pkg/", mode: fs.ModeDir | 0o755}, ent{name: "pkg/__init__.py"}, ent{name: "pkg/main.py", body: hello})
	seed(zip.Deflate, ent{name: "bomb", body: make([]byte, 5000)})
	seed(zip.Deflate, ent{name: "../escape.py", body: hello})
	seed(zip.Store, ent{name: "/abs.py", body: hello})
	seed(zip.Store, ent{name: "a\\..\\b", body: hello})
	seed(zip.Store, ent{name: "link", body: []byte("/etc/passwd"), mode: fs.ModeSymlink | 0o777})
	seed(zip.Store, ent{name: "a", body: hello}, ent{name: "a/b", body: hello})
	seed(zip.Store, ent{name: "x"}, ent{name: "x"})
	f.Add([]byte("PK\x05\x06" + strings.Repeat("\x00", 18)))
	f.Add([]byte("not a zip"))

	f.Fuzz(func(t *testing.T, data []byte) {
		err := archive.Validate(bytes.NewReader(data), int64(len(data)), fuzzLimits)
		if err != nil {
			if !errors.Is(err, archive.ErrInvalid) {
				t.Fatalf("refusal %v does not wrap ErrInvalid", err)
			}
			return
		}
		zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
		if err != nil && !errors.Is(err, zip.ErrInsecurePath) {
			t.Fatalf("accepted, but archive/zip cannot read it: %v", err)
		}
		if len(zr.File) > fuzzLimits.MaxFiles {
			t.Fatalf("accepted %d entries (limit %d)", len(zr.File), fuzzLimits.MaxFiles)
		}
		var total int64
		for _, zf := range zr.File {
			if reason := unsafeName(zf.Name); reason != "" {
				t.Fatalf("accepted entry %q: %s", zf.Name, reason)
			}
			mode := zf.Mode()
			if !mode.IsRegular() && !mode.IsDir() {
				t.Fatalf("accepted entry %q of mode %v", zf.Name, mode)
			}
			if mode.IsDir() {
				continue
			}
			rc, err := zf.Open()
			if err != nil {
				t.Fatalf("accepted entry %q does not open: %v", zf.Name, err)
			}
			n, err := io.Copy(io.Discard, io.LimitReader(rc, fuzzLimits.MaxUncompressed+1))
			rc.Close()
			if err != nil {
				t.Fatalf("accepted entry %q is corrupt: %v", zf.Name, err)
			}
			if total += n; total > fuzzLimits.MaxUncompressed {
				t.Fatalf("accepted an archive expanding past %d bytes", fuzzLimits.MaxUncompressed)
			}
		}
		dir := filepath.Join(t.TempDir(), "out")
		if err := archive.ExtractReader(bytes.NewReader(data), t.TempDir(), dir, fuzzLimits); err != nil {
			t.Fatalf("Validate accepted, Extract refused: %v", err)
		}
		var written int64
		err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			if !info.Mode().IsRegular() && !info.IsDir() {
				t.Errorf("extracted %s of mode %v", p, info.Mode())
			}
			if info.Mode().IsRegular() {
				written += info.Size()
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if written != total {
			t.Fatalf("extracted %d bytes, the archive holds %d", written, total)
		}
	})
}

// unsafeName says why an entry name could land outside the package
// directory, or "" if it cannot.
func unsafeName(name string) string {
	switch {
	case name == "":
		return "empty name"
	case strings.ContainsAny(name, "\\\x00"):
		return "backslash or NUL"
	case strings.HasPrefix(name, "/"):
		return "absolute"
	case len(name) >= 2 && name[1] == ':' && strings.ContainsRune("abcdefghijklmnopqrstuvwxyz", rune(name[0]|0x20)):
		return "drive letter"
	}
	for part := range strings.SplitSeq(name, "/") {
		if part == ".." {
			return "parent reference"
		}
	}
	return ""
}
