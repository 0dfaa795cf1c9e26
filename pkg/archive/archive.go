// Package archive checks and unpacks function packages: zip files uploaded
// by users, which must be treated as hostile. A package may not name paths
// outside its own directory, may not contain symlinks or special files, and
// may not expand beyond Limits (zip bombs). Extract additionally writes through
// an os.Root, so even a check missed here cannot write outside the target.
package archive

import (
	"archive/zip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"
)

// ErrInvalid is wrapped by every error that is the package's fault (as
// opposed to the host's, like a full disk). Callers map it to a 400; the
// error's own text is written for the user who uploaded the package.
var ErrInvalid = errors.New("archive: invalid package")

// ErrTooBig is also wrapped by the error of a package that expands beyond
// Limits.MaxUncompressed, so that a caller extracting under a tighter bound
// of its own can say which bound it was.
var ErrTooBig = errors.New("archive: package expands beyond the limit")

// Limits bound what a package may expand to. A zero or negative field means
// the value from DefaultLimits, so the zero Limits is safe to use.
type Limits struct {
	// MaxFiles is the most entries (files and directories) a package may hold.
	MaxFiles int
	// MaxUncompressed is the most bytes all files together may expand to.
	MaxUncompressed int64
}

// Defaults for Limits: generous for real functions (a Python virtualenv is a
// few thousand files), small enough that one upload cannot fill a disk.
const (
	DefaultMaxFiles        = 10000
	DefaultMaxUncompressed = 512 << 20
)

// DefaultLimits returns 10000 entries and 512 MiB.
func DefaultLimits() Limits {
	return Limits{MaxFiles: DefaultMaxFiles, MaxUncompressed: DefaultMaxUncompressed}
}

// withDefaults fills zero fields so callers can pass a partial Limits.
func (l Limits) withDefaults() Limits {
	if l.MaxFiles <= 0 {
		l.MaxFiles = DefaultMaxFiles
	}
	if l.MaxUncompressed <= 0 {
		l.MaxUncompressed = DefaultMaxUncompressed
	}
	return l
}

// invalidError carries a user-facing message; its text is exactly that
// message so callers can show err.Error() unchanged.
type invalidError struct {
	msg    string
	tooBig bool
}

func (e *invalidError) Error() string { return e.msg }
func (e *invalidError) Unwrap() error { return ErrInvalid }
func (e *invalidError) Is(target error) bool {
	return e.tooBig && target == ErrTooBig
}

func invalidf(format string, args ...any) error {
	return &invalidError{msg: fmt.Sprintf(format, args...)}
}

// errNotZip is the message upstream answers for anything zip cannot read.
func errNotZip() error { return invalidf("Package is not a valid ZIP package.") }

func errTooManyFiles(lim Limits) error {
	return invalidf("Package has more than %d entries.", lim.MaxFiles)
}

func errTooBig(lim Limits) error {
	return &invalidError{msg: fmt.Sprintf("Package expands to more than %d bytes.", lim.MaxUncompressed), tooBig: true}
}

// displayName quotes an entry name for a message, cut short because a
// hostile name can be 64 KiB long and would otherwise swamp the response.
func displayName(name string) string {
	const maxShown = 120
	if len(name) > maxShown {
		name = name[:maxShown] + "..."
	}
	return fmt.Sprintf("%q", name)
}

// entry is a checked zip entry with its cleaned, slash-separated local name.
type entry struct {
	f    *zip.File
	name string // cleaned, relative, never "." or containing ".."
	dir  bool
}

// openZip wraps zip.NewReader. archive/zip may report ErrInsecurePath
// (GODEBUG=zipinsecurepath=0) together with a usable reader; the names are
// checked here anyway, with a clearer message, so that error is not fatal.
func openZip(r io.ReaderAt, size int64) (*zip.Reader, error) {
	zr, err := zip.NewReader(r, size)
	if err != nil && !(errors.Is(err, zip.ErrInsecurePath) && zr != nil) {
		return nil, errNotZip()
	}
	return zr, nil
}

// plan checks every entry's metadata against the rules and limits without
// decompressing anything, so a bomb is refused before any work is spent on
// it. Declared sizes are only a first filter: readers of entry data must
// still count real bytes (see copyLimited).
func plan(zr *zip.Reader, lim Limits) ([]entry, error) {
	if len(zr.File) > lim.MaxFiles {
		return nil, errTooManyFiles(lim)
	}
	var (
		entries  = make([]entry, 0, len(zr.File))
		files    = make(map[string]bool, len(zr.File))
		dirs     = make(map[string]bool)
		declared uint64
	)
	for _, f := range zr.File {
		name, err := cleanName(f.Name)
		if err != nil {
			return nil, err
		}
		mode := f.Mode()
		switch {
		case mode&fs.ModeSymlink != 0:
			return nil, invalidf("Package entry %s is a symbolic link.", displayName(f.Name))
		case mode.IsDir():
			if name == "." {
				continue // "./" adds nothing: the package directory exists anyway
			}
			if files[name] {
				return nil, invalidf("Package entry %s is both a file and a directory.", displayName(f.Name))
			}
			dirs[name] = true
		case mode.IsRegular():
			if name == "." {
				return nil, invalidf("Package entry %s has no name.", displayName(f.Name))
			}
			if files[name] {
				return nil, invalidf("Package entry %s appears more than once.", displayName(f.Name))
			}
			if dirs[name] {
				return nil, invalidf("Package entry %s is both a file and a directory.", displayName(f.Name))
			}
			files[name] = true
			declared += f.UncompressedSize64
			if declared > uint64(lim.MaxUncompressed) {
				return nil, errTooBig(lim)
			}
		default:
			return nil, invalidf("Package entry %s is not a regular file or directory.", displayName(f.Name))
		}
		// Every parent of an entry is a directory; a file of that name
		// would make extraction fail half-way, so refuse it up front.
		for p := path.Dir(name); p != "."; p = path.Dir(p) {
			if files[p] {
				return nil, invalidf("Package entry %s is both a file and a directory.", displayName(p))
			}
			dirs[p] = true
		}
		entries = append(entries, entry{f: f, name: name, dir: mode.IsDir()})
	}
	return entries, nil
}

// cleanName turns a zip entry name into a clean relative slash path, or
// explains why it is unsafe. Zip names are always "/"-separated; a backslash
// is refused outright because extractors on Windows (and some tools on Linux)
// treat it as a separator, which turns "..\x" into an escape.
func cleanName(name string) (string, error) {
	switch {
	case name == "":
		return "", invalidf("Package entry %s has no name.", displayName(name))
	case strings.ContainsRune(name, '\\'):
		return "", invalidf("Package entry %s contains a backslash.", displayName(name))
	case strings.ContainsRune(name, 0):
		return "", invalidf("Package entry %s contains a NUL byte.", displayName(name))
	case strings.HasPrefix(name, "/"), hasDriveLetter(name):
		return "", invalidf("Package entry %s has an absolute path.", displayName(name))
	}
	for _, part := range strings.Split(name, "/") {
		if part == ".." {
			return "", invalidf("Package entry %s escapes the package directory.", displayName(name))
		}
	}
	return path.Clean(name), nil
}

// hasDriveLetter reports a Windows volume prefix such as "C:"; harmless on
// Linux, but such a package is meant to escape somewhere.
func hasDriveLetter(name string) bool {
	if len(name) < 2 || name[1] != ':' {
		return false
	}
	c := name[0] | 0x20 // lower-case ASCII letters
	return c >= 'a' && c <= 'z'
}

// copyLimited copies one entry's data to w, counting the bytes actually
// decompressed against *budget: headers can lie, so only real bytes count.
// archive/zip also fails an entry whose data is longer than declared or whose
// CRC differs; both are reported as a corrupt entry.
func copyLimited(w io.Writer, e entry, budget *int64, lim Limits) error {
	rc, err := e.f.Open()
	if err != nil {
		return invalidf("Package entry %s cannot be read: it is corrupt or uses an unsupported compression method.", displayName(e.f.Name))
	}
	defer rc.Close()
	// Read one byte past the budget so "exactly at the limit" passes and
	// "one more byte" is seen without reading the rest of a bomb.
	n, err := io.Copy(w, io.LimitReader(rc, *budget+1))
	*budget -= n
	if *budget < 0 {
		return errTooBig(lim)
	}
	if err != nil {
		var we *writeError
		if errors.As(err, &we) {
			return we.err
		}
		return invalidf("Package entry %s is corrupt.", displayName(e.f.Name))
	}
	return nil
}

// writeError marks a failure of the destination (disk full, permissions), so
// copyLimited does not blame the package for it.
type writeError struct{ err error }

func (e *writeError) Error() string { return e.err.Error() }
func (e *writeError) Unwrap() error { return e.err }

// markWrites wraps a writer so that its errors become *writeError.
type markWrites struct{ w io.Writer }

func (m markWrites) Write(p []byte) (int, error) {
	n, err := m.w.Write(p)
	if err != nil {
		err = &writeError{err: err}
	}
	return n, err
}

// Validate checks that r (size bytes) is a readable zip whose entries all
// have safe relative names, are regular files or directories, and stay
// within lim. It decompresses every file (discarding the output) so that a
// corrupt entry or a lying size header is caught now, at upload time, and
// not later on a worker. Errors wrap ErrInvalid and read well to a user.
func Validate(r io.ReaderAt, size int64, lim Limits) error {
	lim = lim.withDefaults()
	zr, err := openZip(r, size)
	if err != nil {
		return err
	}
	entries, err := plan(zr, lim)
	if err != nil {
		return err
	}
	budget := lim.MaxUncompressed
	for _, e := range entries {
		if e.dir {
			continue
		}
		if err := copyLimited(io.Discard, e, &budget, lim); err != nil {
			return err
		}
	}
	return nil
}
