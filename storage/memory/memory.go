// Package memory is an in-memory storage.PackageStorage for unit tests of
// the packages that use storage. It follows the same rules as the real
// backends (ID checks, size limit, md5, archive.Validate, exact version
// lookup) and passes the same conformance suite, so a test that passes
// against it means something for local storage too.
package memory

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/qinling-go/qinling/pkg/archive"
	"github.com/qinling-go/qinling/storage"
	"github.com/qinling-go/qinling/storage/internal/rules"
)

// DefaultMaxSize is the package size limit used when Config.MaxSize is 0.
const DefaultMaxSize = rules.DefaultMaxSize

// Config configures a Storage. The zero Config is ready to use.
type Config struct {
	// MaxSize is the largest package accepted, in bytes; 0 means DefaultMaxSize.
	MaxSize int64
	// Limits bound what a package may expand to; zero fields mean archive's defaults.
	Limits archive.Limits
}

// Storage keeps packages in a map. It is safe for concurrent use.
type Storage struct {
	maxSize int64
	limits  archive.Limits

	mu sync.Mutex
	// files maps the name local storage would use ("<project>/<fid>_<md5>.zip",
	// "<project>/<fid>_<n>_<md5>.zip") to the package bytes, which are never
	// modified once stored.
	files map[string][]byte
}

var _ storage.PackageStorage = (*Storage)(nil)

// New returns an empty Storage.
func New(cfg Config) *Storage {
	if cfg.MaxSize <= 0 {
		cfg.MaxSize = DefaultMaxSize
	}
	return &Storage{maxSize: cfg.MaxSize, limits: cfg.Limits, files: map[string][]byte{}}
}

// Names lists what is stored, sorted, in local storage's layout
// ("<project>/<fid>_<md5>.zip"); tests use it to see what an operation kept.
func (s *Storage) Names() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Sorted(maps.Keys(s.files))
}

func currentName(projectID, functionID, md5 string) string {
	return projectID + "/" + functionID + "_" + md5 + ".zip"
}

func versionPrefix(projectID, functionID string, version int) string {
	return projectID + "/" + functionID + "_" + strconv.Itoa(version) + "_"
}

// Store implements storage.PackageStorage. Like local storage it stops
// reading one byte past MaxSize.
func (s *Storage) Store(ctx context.Context, projectID, functionID string, r io.Reader, md5sum string) (string, bool, error) {
	if err := rules.CheckIDs(projectID, functionID); err != nil {
		return "", false, err
	}
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, io.LimitReader(rules.ContextReader(ctx, r), s.maxSize+1)); err != nil {
		return "", false, fmt.Errorf("store package of function %s: %w", functionID, err)
	}
	if int64(buf.Len()) > s.maxSize {
		return "", false, rules.TooLarge(functionID, s.maxSize)
	}
	data := buf.Bytes()
	h := md5.Sum(data)
	sum := hex.EncodeToString(h[:])
	if md5sum != "" && !rules.SameMD5(md5sum, sum) {
		return "", false, rules.ChecksumMismatch(functionID, md5sum, sum)
	}
	name := currentName(projectID, functionID, sum)
	if s.has(name) {
		return sum, false, nil
	}
	// Validate outside the lock: it decompresses everything and may be slow.
	if err := archive.Validate(bytes.NewReader(data), int64(len(data)), s.limits); err != nil {
		if errors.Is(err, archive.ErrInvalid) {
			return "", false, rules.InvalidPackage(functionID, err)
		}
		return "", false, fmt.Errorf("store package of function %s: %w", functionID, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.files[name]; ok {
		return sum, false, nil // a concurrent Store of the same bytes won
	}
	s.files[name] = data
	return sum, true, nil
}

func (s *Storage) has(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.files[name]
	return ok
}

// Retrieve implements storage.PackageStorage.
func (s *Storage) Retrieve(ctx context.Context, projectID, functionID, md5 string, version int) (io.ReadCloser, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	names, err := s.matching(ctx, projectID, functionID, md5, version)
	if err != nil {
		return nil, err
	}
	// The slice is never written again, so readers can share it.
	return io.NopCloser(bytes.NewReader(s.files[names[0]])), nil
}

// Delete implements storage.PackageStorage.
func (s *Storage) Delete(ctx context.Context, projectID, functionID, md5 string, version int) error {
	if err := rules.CheckRef(projectID, functionID, version); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	names, err := s.matching(ctx, projectID, functionID, md5, version)
	if err != nil {
		return rules.IgnoreNotFound(err)
	}
	for _, n := range names {
		delete(s.files, n)
	}
	return nil
}

// ChangedSince implements storage.PackageStorage.
func (s *Storage) ChangedSince(ctx context.Context, projectID, functionID, md5 string, version int) (bool, error) {
	if current, err := rules.CheckChangedSince(ctx, projectID, functionID, md5, version); current || err != nil {
		return current, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.files[versionPrefix(projectID, functionID, version)+md5+".zip"]
	return !ok, nil
}

// Copy implements storage.PackageStorage.
func (s *Storage) Copy(ctx context.Context, projectID, functionID, md5 string, oldVersion int) error {
	if err := rules.CheckName(ctx, projectID, functionID, md5, oldVersion); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	data, ok := s.files[currentName(projectID, functionID, md5)]
	if !ok {
		return rules.NotFound(projectID, functionID, 0)
	}
	s.files[versionPrefix(projectID, functionID, oldVersion+1)+md5+".zip"] = data
	return nil
}

// matching finds the stored names of a package, as local storage does:
// version 0 by md5, version n as exactly "<fid>_<n>_<md5>.zip". The caller
// holds s.mu.
func (s *Storage) matching(ctx context.Context, projectID, functionID, md5 string, version int) ([]string, error) {
	if err := rules.CheckLookup(ctx, projectID, functionID, md5, version); err != nil {
		return nil, err
	}
	if version == 0 {
		name := currentName(projectID, functionID, md5)
		if _, ok := s.files[name]; !ok {
			return nil, rules.NotFound(projectID, functionID, version)
		}
		return []string{name}, nil
	}
	prefix := versionPrefix(projectID, functionID, version)
	var names []string
	for n := range s.files {
		rest, ok := strings.CutPrefix(n, prefix)
		if !ok {
			continue
		}
		if stem, ok := strings.CutSuffix(rest, ".zip"); ok && rules.CheckMD5(projectID, functionID, stem) == nil {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return nil, rules.NotFound(projectID, functionID, version)
	}
	sort.Strings(names) // the same pick as local storage's sorted listing
	return names, nil
}
