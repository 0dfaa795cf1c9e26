// Package storage defines where function packages (zip files) live. Backends
// live in subpackages (local, memory, swift, s3); pkg/backends picks
// one by name. Every backend passes storagetest.Run.
package storage

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/qinling-go/qinling/pkg/archive"
)

// Transfer is what every object-store backend (swift, s3) takes besides
// where the store is and whom to authenticate as: how long to wait, how
// often to retry, and what a package may be.
type Transfer struct {
	// Timeout bounds connecting and waiting for each response's headers.
	Timeout time.Duration
	// Retries is how many times a transiently failing call is repeated.
	Retries int
	// Backoff is the first wait before a retry; it doubles each time.
	Backoff time.Duration
	// MaxSize is the largest package accepted, in bytes; 0 means the default.
	MaxSize int64
	// Limits bound what a package may expand to.
	Limits archive.Limits
}

// PackageStorage stores function packages per project, as upstream's
// five-method base: the current package of a function is addressed by its md5,
// a version's package by its version number.
type PackageStorage interface {
	// Store reads a zip from r, checks it (size, md5 when md5sum is not empty,
	// zip validity) before anything is kept, and stores it as the current
	// package of the function. updated is false when the same content was
	// already stored. It returns the md5 hex digest of what it read.
	Store(ctx context.Context, projectID, functionID string, r io.Reader, md5sum string) (md5 string, updated bool, err error)
	// Retrieve opens the package: version 0 is the current one (by md5),
	// version n the package of function version n.
	Retrieve(ctx context.Context, projectID, functionID, md5 string, version int) (io.ReadCloser, error)
	// Delete removes a package; a missing one is not an error.
	Delete(ctx context.Context, projectID, functionID, md5 string, version int) error
	// ChangedSince reports whether the current package (md5) differs from the
	// one saved as the given version; always true for version 0.
	ChangedSince(ctx context.Context, projectID, functionID, md5 string, version int) (bool, error)
	// Copy saves the current package (md5) as version oldVersion+1.
	Copy(ctx context.Context, projectID, functionID, md5 string, oldVersion int) error
}

// Errors returned by backends; compare with errors.Is. The API maps them to
// user-facing answers (400 for a mismatch or a bad zip, 413 for size, 404).
var (
	ErrNotFound         = errors.New("storage: package not found")
	ErrChecksumMismatch = errors.New("storage: package md5 mismatch")
	ErrInvalidPackage   = errors.New("storage: package is not a valid ZIP package")
	ErrTooLarge         = errors.New("storage: package too large")
)

// Errors of an object store's check at startup; pkg/backends names the
// option to fix.
var (
	ErrBadCredentials = errors.New("credentials refused")
	ErrNoContainer    = errors.New("no such container or bucket")
)
