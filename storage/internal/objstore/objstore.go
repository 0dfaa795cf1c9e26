// Package objstore is the storage.PackageStorage that the object-store
// backends (storage/swift, storage/s3) share: the key layout, the checks
// before anything is kept, retries of transient failures and the
// "unavailable" answer when the store stays down. Each backend supplies a
// Bucket, a handful of plain object operations on one container or bucket.
//
// Keys follow upstream's layout, as local storage's file names do:
//
//	<project_id>/<function_id>_<md5>.zip            current package
//	<project_id>/<function_id>_<version>_<md5>.zip  package of version n
package objstore

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/qinling-go/qinling/pkg/archive"
	"github.com/qinling-go/qinling/pkg/errdefs"
	"github.com/qinling-go/qinling/storage"
	"github.com/qinling-go/qinling/storage/internal/rules"
)

// ErrObjectNotFound is what a Bucket returns for a missing object.
var ErrObjectNotFound = errors.New("object not found")

// Bucket is one container (Swift) or bucket (S3) holding every package.
// Errors other than ErrObjectNotFound are passed to Transient to decide
// whether the call is worth repeating.
type Bucket interface {
	// Put writes body (size bytes, md5 hex digest given) as key, whole.
	Put(ctx context.Context, key string, body io.ReadSeeker, size int64, md5 string) error
	// Get opens key for reading.
	Get(ctx context.Context, key string) (io.ReadCloser, error)
	// Exists reports whether key is stored.
	Exists(ctx context.Context, key string) (bool, error)
	// Delete removes key; a missing key is not an error.
	Delete(ctx context.Context, key string) error
	// Copy copies src to dst inside the store (no bytes through us).
	Copy(ctx context.Context, src, dst string) error
	// List returns the keys that start with prefix.
	List(ctx context.Context, prefix string) ([]string, error)
	// Transient reports whether err is worth a retry: a 5xx, a timeout, a
	// refused connection.
	Transient(err error) bool
}

// Config configures a Storage.
type Config struct {
	// Bucket is the store; required.
	Bucket Bucket
	// Name says which store it is in messages ("swift", "s3").
	Name string
	// Transfer's Timeout is the backend's (see HTTPClient); the rest is ours.
	storage.Transfer
	// TempDir holds an upload while it is checked; empty means os.TempDir().
	TempDir string
}

// Storage implements storage.PackageStorage on a Bucket.
type Storage struct {
	cfg Config
}

var _ storage.PackageStorage = (*Storage)(nil)

// New returns a Storage on cfg.Bucket.
func New(cfg Config) (*Storage, error) {
	if cfg.Bucket == nil {
		return nil, errors.New("objstore: no bucket")
	}
	if cfg.MaxSize < 0 || cfg.Retries < 0 || cfg.Backoff < 0 {
		return nil, fmt.Errorf("%s storage: negative max size, retries or backoff", cfg.Name)
	}
	if cfg.MaxSize == 0 {
		cfg.MaxSize = rules.DefaultMaxSize
	}
	return &Storage{cfg: cfg}, nil
}

func currentKey(projectID, functionID, md5 string) string {
	return projectID + "/" + functionID + "_" + md5 + ".zip"
}

func versionPrefix(projectID, functionID string, version int) string {
	return projectID + "/" + functionID + "_" + strconv.Itoa(version) + "_"
}

// Unavailable is the error of a store that stayed down through every retry:
// 503 on the API, a clear execution error on the engine.
func Unavailable(name string, err error) error {
	return errdefs.Wrap(errdefs.KindUnavailable, fmt.Errorf("%s: %w", name, err),
		"Package storage unavailable (%s); try again later.", name)
}

// do runs op, repeating it while it fails transiently, up to Retries more
// times with doubling waits. A store still failing transiently after that is
// Unavailable; other errors are returned as they are.
func (s *Storage) do(ctx context.Context, op func() error) error {
	transient := func(err error) bool { return !errors.Is(err, ErrObjectNotFound) && s.cfg.Bucket.Transient(err) }
	err, exhausted := Retry(ctx, s.cfg.Retries, s.cfg.Backoff, transient, op)
	switch {
	case exhausted:
		return Unavailable(s.cfg.Name, err)
	case err == nil || errors.Is(err, ErrObjectNotFound) || ctx.Err() != nil:
		return err
	}
	return fmt.Errorf("%s storage: %w", s.cfg.Name, err)
}

// Retry runs op until it succeeds, fails in a way transient does not
// excuse, or has been repeated retries times, waiting backoff before the
// first repeat and twice as long before each next one. exhausted says that
// the last failure was still transient: the store counts as unavailable.
// When ctx ends first, its error is returned. storage/swiftcode shares it.
func Retry(ctx context.Context, retries int, backoff time.Duration, transient func(error) bool, op func() error) (err error, exhausted bool) {
	wait := backoff
	for attempt := 0; ; attempt++ {
		if err = op(); err == nil {
			return nil, false
		}
		if ctx.Err() != nil {
			return ctx.Err(), false
		}
		if !transient(err) {
			return err, false
		}
		if attempt >= retries {
			return err, true
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err(), false
		case <-t.C:
		}
		wait *= 2
	}
}

// Store implements storage.PackageStorage. The upload goes to a temporary
// file first (read one byte past MaxSize at most), is checked there, and is
// then written to the store in one request, so the store never holds a
// partial or unchecked package under a name that claims an md5.
func (s *Storage) Store(ctx context.Context, projectID, functionID string, r io.Reader, md5sum string) (string, bool, error) {
	if err := rules.CheckIDs(projectID, functionID); err != nil {
		return "", false, err
	}
	if err := ctx.Err(); err != nil {
		return "", false, err
	}
	tmp, err := os.CreateTemp(s.cfg.TempDir, "qinling-upload-*.zip")
	if err != nil {
		return "", false, fmt.Errorf("store package of function %s: %w", functionID, err)
	}
	defer func() {
		tmp.Close()
		os.Remove(tmp.Name())
	}()
	h := md5.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), io.LimitReader(rules.ContextReader(ctx, r), s.cfg.MaxSize+1))
	if err != nil {
		return "", false, fmt.Errorf("store package of function %s: %w", functionID, err)
	}
	if n > s.cfg.MaxSize {
		return "", false, rules.TooLarge(functionID, s.cfg.MaxSize)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if md5sum != "" && !rules.SameMD5(md5sum, sum) {
		return "", false, rules.ChecksumMismatch(functionID, md5sum, sum)
	}
	key := currentKey(projectID, functionID, sum)
	var exists bool
	if err := s.do(ctx, func() (err error) { exists, err = s.cfg.Bucket.Exists(ctx, key); return err }); err != nil {
		return "", false, err
	}
	if exists {
		return sum, false, nil
	}
	if err := archive.Validate(tmp, n, s.cfg.Limits); err != nil {
		if errors.Is(err, archive.ErrInvalid) {
			return "", false, rules.InvalidPackage(functionID, err)
		}
		return "", false, fmt.Errorf("store package of function %s: %w", functionID, err)
	}
	err = s.do(ctx, func() error {
		if _, err := tmp.Seek(0, io.SeekStart); err != nil {
			return err
		}
		return s.cfg.Bucket.Put(ctx, key, tmp, n, sum)
	})
	if err != nil {
		return "", false, err
	}
	return sum, true, nil
}

// Retrieve implements storage.PackageStorage. Only opening the object is
// retried; a failure while reading it reaches the reader.
func (s *Storage) Retrieve(ctx context.Context, projectID, functionID, md5 string, version int) (io.ReadCloser, error) {
	keys, err := s.matching(ctx, projectID, functionID, md5, version)
	if err != nil {
		return nil, err
	}
	var rc io.ReadCloser
	err = s.do(ctx, func() (err error) { rc, err = s.cfg.Bucket.Get(ctx, keys[0]); return err })
	if errors.Is(err, ErrObjectNotFound) {
		return nil, rules.NotFound(projectID, functionID, version)
	}
	return rc, err
}

// Delete implements storage.PackageStorage.
func (s *Storage) Delete(ctx context.Context, projectID, functionID, md5 string, version int) error {
	if err := rules.CheckRef(projectID, functionID, version); err != nil {
		return err
	}
	keys, err := s.matching(ctx, projectID, functionID, md5, version)
	if err != nil {
		return rules.IgnoreNotFound(err)
	}
	for _, k := range keys {
		if err := s.do(ctx, func() error { return s.cfg.Bucket.Delete(ctx, k) }); err != nil && !errors.Is(err, ErrObjectNotFound) {
			return err
		}
	}
	return nil
}

// ChangedSince implements storage.PackageStorage.
func (s *Storage) ChangedSince(ctx context.Context, projectID, functionID, md5 string, version int) (bool, error) {
	if current, err := rules.CheckChangedSince(ctx, projectID, functionID, md5, version); current || err != nil {
		return current, err
	}
	var exists bool
	key := versionPrefix(projectID, functionID, version) + md5 + ".zip"
	err := s.do(ctx, func() (err error) { exists, err = s.cfg.Bucket.Exists(ctx, key); return err })
	return !exists, err
}

// Copy implements storage.PackageStorage with a server-side copy.
func (s *Storage) Copy(ctx context.Context, projectID, functionID, md5 string, oldVersion int) error {
	if err := rules.CheckName(ctx, projectID, functionID, md5, oldVersion); err != nil {
		return err
	}
	src := currentKey(projectID, functionID, md5)
	dst := versionPrefix(projectID, functionID, oldVersion+1) + md5 + ".zip"
	err := s.do(ctx, func() error { return s.cfg.Bucket.Copy(ctx, src, dst) })
	if errors.Is(err, ErrObjectNotFound) {
		return rules.NotFound(projectID, functionID, 0)
	}
	return err
}

// matching returns the keys of a package, or a not-found error: version 0
// by md5 (not looked up: the Get or Delete that follows tells), version n by
// listing exactly "<fid>_<n>_<md5>.zip", since the caller may not know the
// md5 the version was made with.
func (s *Storage) matching(ctx context.Context, projectID, functionID, md5 string, version int) ([]string, error) {
	if err := rules.CheckLookup(ctx, projectID, functionID, md5, version); err != nil {
		return nil, err
	}
	if version == 0 {
		return []string{currentKey(projectID, functionID, md5)}, nil
	}
	prefix := versionPrefix(projectID, functionID, version)
	var listed []string
	if err := s.do(ctx, func() (err error) { listed, err = s.cfg.Bucket.List(ctx, prefix); return err }); err != nil {
		return nil, err
	}
	var keys []string
	for _, k := range listed {
		if stem, ok := strings.CutSuffix(strings.TrimPrefix(k, prefix), ".zip"); ok && rules.CheckMD5(projectID, functionID, stem) == nil {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil, rules.NotFound(projectID, functionID, version)
	}
	sort.Strings(keys)
	return keys, nil
}

// HTTPClient is the client both backends use: connecting and waiting for a
// response's headers are bounded by timeout, so a store that hangs is a
// transient error, never a hung request; reading a body is not, since a
// large package may take long.
func HTTPClient(timeout time.Duration) *http.Client {
	d := &net.Dialer{Timeout: timeout}
	return &http.Client{Transport: &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           d.DialContext,
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: timeout,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
	}}
}

// NetTransient reports the failures below HTTP that are worth a retry:
// timeouts, refused or reset connections, a response cut short.
func NetTransient(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, context.DeadlineExceeded)
}

// StatusTransient reports the HTTP statuses worth a retry: not 501, which
// says the server never does what was asked.
func StatusTransient(code int) bool {
	return (code >= 500 && code != http.StatusNotImplemented) || code == http.StatusRequestTimeout || code == http.StatusTooManyRequests
}
