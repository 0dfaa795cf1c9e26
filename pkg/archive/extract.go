package archive

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
)

// File modes written by Extract. Modes stored in the zip are ignored apart
// from the owner-executable bit: setuid, world-writable or unreadable files
// from a stranger's archive serve no function and only cause trouble.
const (
	fileMode = 0o644
	execMode = 0o755
	dirMode  = 0o755
)

// Extract unpacks the zip at zipPath into dir, which must be empty or absent
// (it is created, with parents). The package is checked like Validate before
// anything is written, and again while writing: decompressed bytes are
// counted for real, so a zip bomb with lying headers stops at the limit.
// All writes go through an os.Root opened on dir, so no entry can land
// outside it even if a name check here were wrong. On failure dir is left
// empty (or removed, if Extract created it). Errors caused by the package
// wrap ErrInvalid; others (I/O, a non-empty dir) do not.
func Extract(zipPath, dir string, lim Limits) error {
	return ExtractReserving(zipPath, dir, lim, nil)
}

// Expansion is what a package's entries will take once extracted, from its
// directory alone: archive/zip refuses an entry's data beyond its declared
// size, so Bytes is exact.
type Expansion struct {
	Bytes int64 // all files' contents
	Files int
	Dirs  int // every directory that will be made, the implied ones too
}

// ExtractReserving is Extract calling reserve, when not nil, once the
// package passed every check and before anything is written: an error from
// reserve ends the extraction with it (a cache reserves disk space there).
func ExtractReserving(zipPath, dir string, lim Limits, reserve func(Expansion) error) error {
	f, err := os.Open(zipPath)
	if err != nil {
		return fmt.Errorf("extract package: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("extract package: %w", err)
	}
	return extract(f, st.Size(), dir, lim, reserve)
}

// ExtractReader is Extract for a stream. Zip needs random access (its
// directory is at the end), so r is first spooled to a temporary file in
// tmpDir ("" means os.TempDir()), which is removed afterwards. The spool is
// capped so that an endless stream cannot fill the disk.
func ExtractReader(r io.Reader, tmpDir, dir string, lim Limits) error {
	return ExtractReaderReserving(r, tmpDir, dir, lim, nil)
}

// ExtractReaderReserving is ExtractReader calling reserve as
// ExtractReserving does.
func ExtractReaderReserving(r io.Reader, tmpDir, dir string, lim Limits, reserve func(Expansion) error) error {
	lim = lim.withDefaults()
	tmp, err := os.CreateTemp(tmpDir, "qinling-package-*.zip")
	if err != nil {
		return fmt.Errorf("extract package: spool: %w", err)
	}
	defer func() {
		tmp.Close()
		os.Remove(tmp.Name())
	}()
	max := spoolLimit(lim)
	n, err := io.Copy(tmp, io.LimitReader(r, max+1))
	if err != nil {
		return fmt.Errorf("extract package: spool: %w", err)
	}
	if n > max {
		return errTooBig(lim)
	}
	return extract(tmp, n, dir, lim, reserve)
}

// spoolLimit is the largest archive that can still expand within lim: a
// file's compressed data is at most its size plus deflate's few bytes of
// framing (zip stores incompressible data as is), and each entry adds headers
// with a name; 4 KiB per entry and 1 MiB overall leave ample room for both.
func spoolLimit(lim Limits) int64 {
	return lim.MaxUncompressed + int64(lim.MaxFiles)*4096 + 1<<20
}

func extract(r io.ReaderAt, size int64, dir string, lim Limits, reserve func(Expansion) error) (err error) {
	lim = lim.withDefaults()
	zr, err := openZip(r, size)
	if err != nil {
		return err
	}
	entries, err := plan(zr, lim)
	if err != nil {
		return err
	}
	if reserve != nil {
		if err := reserve(expansion(entries)); err != nil {
			return err
		}
	}

	created, err := prepareDir(dir)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			cleanup(dir, created)
		}
	}()

	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("extract package: %w", err)
	}
	defer root.Close()

	// Directories are chmod-ed at the end: MkdirAll is subject to the umask
	// and does not say which directories it created.
	dirs := map[string]bool{}
	ensureDir := func(name string) error {
		if name == "." || dirs[name] {
			return nil
		}
		if err := root.MkdirAll(name, dirMode); err != nil {
			return fmt.Errorf("extract package: %w", err)
		}
		for p := name; p != "." && !dirs[p]; p = path.Dir(p) {
			dirs[p] = true
		}
		return nil
	}

	budget := lim.MaxUncompressed
	for _, e := range entries {
		if e.dir {
			if err := ensureDir(e.name); err != nil {
				return err
			}
			continue
		}
		if err := ensureDir(path.Dir(e.name)); err != nil {
			return err
		}
		if err := writeFile(root, e, &budget, lim); err != nil {
			return err
		}
	}
	for d := range dirs {
		if err := root.Chmod(d, dirMode); err != nil {
			return fmt.Errorf("extract package: %w", err)
		}
	}
	return nil
}

// writeFile creates one file exclusively (plan refused duplicates, so an
// existing file means something is wrong) and fills it from the entry.
func writeFile(root *os.Root, e entry, budget *int64, lim Limits) error {
	perm := os.FileMode(fileMode)
	if e.f.Mode()&0o100 != 0 {
		perm = execMode
	}
	out, err := root.OpenFile(e.name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return fmt.Errorf("extract package: %w", err)
	}
	// Chmod on the open file: the umask may have narrowed perm.
	if err := out.Chmod(perm); err != nil {
		out.Close()
		return fmt.Errorf("extract package: %w", err)
	}
	if err := copyLimited(markWrites{out}, e, budget, lim); err != nil {
		out.Close()
		if !errors.Is(err, ErrInvalid) {
			err = fmt.Errorf("extract package: write %s: %w", e.name, err)
		}
		return err
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("extract package: write %s: %w", e.name, err)
	}
	return nil
}

// prepareDir makes sure dir exists and is empty, reporting whether it had to
// create it (then a failed extraction removes it again).
func prepareDir(dir string) (created bool, err error) {
	names, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := os.MkdirAll(dir, dirMode); err != nil {
			return false, fmt.Errorf("extract package: %w", err)
		}
		if err := os.Chmod(dir, dirMode); err != nil {
			os.Remove(dir)
			return false, fmt.Errorf("extract package: %w", err)
		}
		return true, nil
	case err != nil:
		return false, fmt.Errorf("extract package: %w", err)
	case len(names) > 0:
		return false, fmt.Errorf("extract package: directory %s is not empty", dir)
	}
	return false, nil
}

// cleanup undoes a partial extraction. Only direct children of dir are
// removed, by the names ReadDir returns; RemoveAll does not follow symlinks.
func cleanup(dir string, created bool) {
	if created {
		os.RemoveAll(dir)
		return
	}
	names, _ := os.ReadDir(dir)
	for _, n := range names {
		os.RemoveAll(filepath.Join(dir, n.Name()))
	}
}

// expansion sums what checked entries will take.
func expansion(entries []entry) Expansion {
	var exp Expansion
	dirs := map[string]bool{}
	for _, e := range entries {
		p := e.name
		if !e.dir {
			exp.Files++
			exp.Bytes += int64(e.f.UncompressedSize64)
			p = path.Dir(p)
		}
		for ; p != "." && !dirs[p]; p = path.Dir(p) {
			dirs[p] = true
		}
	}
	exp.Dirs = len(dirs)
	return exp
}
