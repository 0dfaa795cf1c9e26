// Package local stores function packages as files on a local (or shared)
// file system, in upstream Qinling's layout so an existing package
// directory keeps working:
//
//	<Dir>/<project_id>/<function_id>_<md5>.zip            current package
//	<Dir>/<project_id>/<function_id>_<version>_<md5>.zip  package of version n
//
// Stored files are never modified: a new package is written to a temporary
// file (".<function_id>.<random>.tmp", which no lookup matches), checked, and
// then linked or renamed into place. All file access goes through an os.Root
// on Dir, so a symlink or a name that slipped past the ID checks still cannot
// reach outside Dir.
package local

import (
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"

	"github.com/qinling-go/qinling/pkg/archive"
	"github.com/qinling-go/qinling/storage"
	"github.com/qinling-go/qinling/storage/internal/rules"
)

// DefaultMaxSize is the package size limit used when Config.MaxSize is 0:
// upstream's 51 MiB.
const DefaultMaxSize = rules.DefaultMaxSize

// Modes of what Storage creates. Packages are code that may embed secrets,
// and only the Qinling services (one user) read them.
const (
	dirMode  = 0o750
	fileMode = 0o640
)

// Config configures a Storage.
type Config struct {
	// Dir is the base directory; it is created if missing. Required.
	Dir string
	// MaxSize is the largest package accepted, in bytes; 0 means DefaultMaxSize.
	MaxSize int64
	// Limits bound what a package may expand to; zero fields mean archive's defaults.
	Limits archive.Limits
}

// Storage is a storage.PackageStorage on the local file system. It is safe
// for concurrent use, also by several processes sharing Dir.
type Storage struct {
	root    *os.Root
	maxSize int64
	limits  archive.Limits
}

var _ storage.PackageStorage = (*Storage)(nil)

// New opens (creating if needed) the package directory cfg.Dir.
func New(cfg Config) (*Storage, error) {
	if cfg.Dir == "" {
		return nil, errors.New("local storage: no directory configured")
	}
	if cfg.MaxSize < 0 {
		return nil, fmt.Errorf("local storage: max size %d is negative", cfg.MaxSize)
	}
	if cfg.MaxSize == 0 {
		cfg.MaxSize = DefaultMaxSize
	}
	if err := os.MkdirAll(cfg.Dir, dirMode); err != nil {
		return nil, fmt.Errorf("local storage: %w", err)
	}
	root, err := os.OpenRoot(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("local storage: %w", err)
	}
	return &Storage{root: root, maxSize: cfg.MaxSize, limits: cfg.Limits}, nil
}

// Close releases the directory handle. The Storage must not be used after.
func (s *Storage) Close() error { return s.root.Close() }

// currentName is the stored name of the current package.
func currentName(projectID, functionID, md5 string) string {
	return path.Join(projectID, functionID+"_"+md5+".zip")
}

// versionName is the stored name of version n's package.
func versionName(projectID, functionID string, version int, md5 string) string {
	return path.Join(projectID, functionID+"_"+strconv.Itoa(version)+"_"+md5+".zip")
}

// Store implements storage.PackageStorage. The upload is streamed to a
// temporary file while its md5 is computed; reading stops one byte past
// MaxSize, so an oversized upload is neither buffered nor read to the end.
func (s *Storage) Store(ctx context.Context, projectID, functionID string, r io.Reader, md5sum string) (string, bool, error) {
	if err := rules.CheckIDs(projectID, functionID); err != nil {
		return "", false, err
	}
	if err := ctx.Err(); err != nil {
		return "", false, err
	}
	if err := s.root.MkdirAll(projectID, dirMode); err != nil {
		return "", false, fmt.Errorf("store package of function %s: %w", functionID, err)
	}

	tmpName, tmp, err := s.createTemp(projectID, functionID)
	if err != nil {
		return "", false, fmt.Errorf("store package of function %s: %w", functionID, err)
	}
	// Until the package is linked into place, any return removes the temp file.
	defer func() {
		tmp.Close()
		s.root.Remove(tmpName)
	}()

	h := md5.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), io.LimitReader(rules.ContextReader(ctx, r), s.maxSize+1))
	if err != nil {
		return "", false, fmt.Errorf("store package of function %s: %w", functionID, err)
	}
	if n > s.maxSize {
		return "", false, rules.TooLarge(functionID, s.maxSize)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if md5sum != "" && !rules.SameMD5(md5sum, sum) {
		return "", false, rules.ChecksumMismatch(functionID, md5sum, sum)
	}

	final := currentName(projectID, functionID, sum)
	// Same bytes are already stored (and were checked then): nothing to do.
	if _, err := s.root.Stat(final); err == nil {
		return sum, false, nil
	}
	if err := archive.Validate(tmp, n, s.limits); err != nil {
		if errors.Is(err, archive.ErrInvalid) {
			return "", false, rules.InvalidPackage(functionID, err)
		}
		return "", false, fmt.Errorf("store package of function %s: %w", functionID, err)
	}
	// Durable before visible: a crash must not leave a truncated package
	// under a name that claims an md5.
	if err := tmp.Sync(); err != nil {
		return "", false, fmt.Errorf("store package of function %s: %w", functionID, err)
	}
	created, err := s.publish(tmpName, final, false)
	if err != nil {
		return "", false, fmt.Errorf("store package of function %s: %w", functionID, err)
	}
	return sum, created, nil
}

// createTemp creates a new, uniquely named file in the project directory.
// The random part keeps concurrent Stores of one function apart (upstream's
// fixed "<fid>.zip.new" let them overwrite each other); the leading dot and
// ".tmp" keep it out of every lookup.
func (s *Storage) createTemp(projectID, functionID string) (string, *os.File, error) {
	for range 5 {
		name := path.Join(projectID, "."+functionID+"."+rand.Text()+".tmp")
		f, err := s.root.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, fileMode)
		if errors.Is(err, fs.ErrExist) {
			continue // a collision of 128 random bits: try another name
		}
		return name, f, err
	}
	return "", nil, errors.New("cannot create a unique temporary file")
}

// publish makes src visible as dst without ever exposing a partial file.
// A hard link fails if dst exists, which tells exactly one of several
// concurrent Stores of the same bytes that it created the package. On file
// systems without hard links, src is renamed (keepSrc false) or copied
// (keepSrc true) instead; racing Stores may then both report created, which
// is harmless since the name fixes the content.
func (s *Storage) publish(src, dst string, keepSrc bool) (created bool, err error) {
	err = s.root.Link(src, dst)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrExist):
		return false, nil // same name means same md5: the content is there
	case !keepSrc:
		if err := s.root.Rename(src, dst); err != nil {
			return false, err
		}
		return true, nil
	}
	return true, s.copyFile(src, dst)
}

// copyFile copies src to dst through a temporary file, for publish.
func (s *Storage) copyFile(src, dst string) error {
	in, err := s.root.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	dir, base := path.Split(dst)
	tmpName, tmp, err := s.createTemp(path.Clean(dir), strings.TrimSuffix(base, ".zip"))
	if err != nil {
		return err
	}
	defer s.root.Remove(tmpName) // fails harmlessly once renamed
	_, err = io.Copy(tmp, in)
	if err == nil {
		err = tmp.Sync()
	}
	if closeErr := tmp.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		return err
	}
	return s.root.Rename(tmpName, dst)
}

// Retrieve implements storage.PackageStorage. The caller closes the file.
func (s *Storage) Retrieve(ctx context.Context, projectID, functionID, md5 string, version int) (io.ReadCloser, error) {
	name, err := s.resolve(ctx, projectID, functionID, md5, version)
	if err != nil {
		return nil, err
	}
	f, err := s.root.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, rules.NotFound(projectID, functionID, version)
	}
	if err != nil {
		return nil, fmt.Errorf("retrieve package of function %s: %w", functionID, err)
	}
	return f, nil
}

// Delete implements storage.PackageStorage. For version n it removes every
// "<fid>_<n>_*.zip", though normally there is one.
func (s *Storage) Delete(ctx context.Context, projectID, functionID, md5 string, version int) error {
	if err := rules.CheckRef(projectID, functionID, version); err != nil {
		return err
	}
	names, err := s.matching(ctx, projectID, functionID, md5, version)
	if err != nil {
		return rules.IgnoreNotFound(err)
	}
	for _, name := range names {
		if err := s.root.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("delete package of function %s: %w", functionID, err)
		}
	}
	return nil
}

// ChangedSince implements storage.PackageStorage.
func (s *Storage) ChangedSince(ctx context.Context, projectID, functionID, md5 string, version int) (bool, error) {
	if current, err := rules.CheckChangedSince(ctx, projectID, functionID, md5, version); current || err != nil {
		return current, err
	}
	_, err := s.root.Stat(versionName(projectID, functionID, version, md5))
	switch {
	case err == nil:
		return false, nil
	case errors.Is(err, fs.ErrNotExist):
		return true, nil
	}
	return false, fmt.Errorf("check package of function %s: %w", functionID, err)
}

// Copy implements storage.PackageStorage. Stored files are immutable, so
// the version is a hard link to the current package (no bytes copied);
// without hard links it falls back to a copy.
func (s *Storage) Copy(ctx context.Context, projectID, functionID, md5 string, oldVersion int) error {
	if err := rules.CheckName(ctx, projectID, functionID, md5, oldVersion); err != nil {
		return err
	}
	src := currentName(projectID, functionID, md5)
	if _, err := s.root.Stat(src); errors.Is(err, fs.ErrNotExist) {
		return rules.NotFound(projectID, functionID, 0)
	}
	if _, err := s.publish(src, versionName(projectID, functionID, oldVersion+1, md5), true); err != nil {
		return fmt.Errorf("copy package of function %s to version %d: %w", functionID, oldVersion+1, err)
	}
	return nil
}

// resolve finds the one stored name Retrieve reads.
func (s *Storage) resolve(ctx context.Context, projectID, functionID, md5 string, version int) (string, error) {
	names, err := s.matching(ctx, projectID, functionID, md5, version)
	if err != nil {
		return "", err
	}
	return names[0], nil
}

// matching returns the stored names of a package, or a not-found error.
// Version 0 is named by md5. Version n is found by listing: the md5 is that
// of the package when the version was made, which the caller may not have.
// A name matches only as "<fid>_<n>_<md5>.zip" with n exactly equal, unlike
// upstream's prefix match that let version 1 find version 10's package.
func (s *Storage) matching(ctx context.Context, projectID, functionID, md5 string, version int) ([]string, error) {
	if err := rules.CheckLookup(ctx, projectID, functionID, md5, version); err != nil {
		return nil, err
	}
	if version == 0 {
		return []string{currentName(projectID, functionID, md5)}, nil
	}

	dir, err := s.root.Open(projectID)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, rules.NotFound(projectID, functionID, version)
	}
	if err != nil {
		return nil, fmt.Errorf("find package of function %s version %d: %w", functionID, version, err)
	}
	defer dir.Close()
	entries, err := dir.ReadDir(-1)
	if err != nil {
		return nil, fmt.Errorf("find package of function %s version %d: %w", functionID, version, err)
	}
	prefix := functionID + "_" + strconv.Itoa(version) + "_"
	var names []string
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), prefix)
		if !ok {
			continue
		}
		stem, ok := strings.CutSuffix(rest, ".zip")
		if ok && rules.CheckMD5(projectID, functionID, stem) == nil {
			names = append(names, path.Join(projectID, e.Name()))
		}
	}
	if len(names) == 0 {
		return nil, rules.NotFound(projectID, functionID, version)
	}
	return names, nil
}
