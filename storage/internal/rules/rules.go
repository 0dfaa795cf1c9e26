// Package rules holds what every storage backend must agree on: which IDs
// are acceptable, how big a package may be, and the errors (with their
// user-facing messages) that the conformance suite checks for. Keeping them
// in one place is what lets the fake and the real backends behave alike.
package rules

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"

	"github.com/qinling-go/qinling/pkg/errdefs"
	"github.com/qinling-go/qinling/storage"
)

// DefaultMaxSize is upstream's MAX_PACKAGE_SIZE (51 MiB), used when a
// backend is configured without a size limit.
const DefaultMaxSize = 51 << 20

// Function IDs may not contain "_": it separates the parts of a stored name
// (<fid>_<version>_<md5>.zip), and function "a_1" would otherwise collide
// with version 1 of function "a". Both IDs become path components, so "/",
// "\" and leading dots are out too. Real IDs are UUIDs and keystone hex IDs
// ("default" with auth off), far inside these rules.
var (
	projectIDRe  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,254}$`)
	functionIDRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9-]{0,254}$`)
	md5Re        = regexp.MustCompile(`^[0-9a-f]{32}$`)
)

// CheckIDs refuses IDs that are not safe path components. No package can
// exist under such an ID, so the error is a not-found one: it maps to a
// harmless 404 and no backend ever builds a path from the ID.
func CheckIDs(projectID, functionID string) error {
	if !projectIDRe.MatchString(projectID) {
		return notFound(projectID, functionID, fmt.Errorf("invalid project id %q: %w", projectID, storage.ErrNotFound))
	}
	if !functionIDRe.MatchString(functionID) {
		return notFound(projectID, functionID, fmt.Errorf("invalid function id %q: %w", functionID, storage.ErrNotFound))
	}
	return nil
}

// CheckMD5 refuses anything but a lower-case md5 hex digest where one is used
// to name a stored package.
func CheckMD5(projectID, functionID, md5 string) error {
	if !md5Re.MatchString(md5) {
		return notFound(projectID, functionID, fmt.Errorf("invalid md5 %q: %w", md5, storage.ErrNotFound))
	}
	return nil
}

// CheckVersion refuses negative versions.
func CheckVersion(projectID, functionID string, version int) error {
	if version < 0 {
		return notFound(projectID, functionID, fmt.Errorf("invalid version %d: %w", version, storage.ErrNotFound))
	}
	return nil
}

// CheckRef refuses IDs or a version that cannot refer to any package.
// Delete calls it before its lookup, which turns not-found into success:
// bad arguments must still be an error there.
func CheckRef(projectID, functionID string, version int) error {
	if err := CheckIDs(projectID, functionID); err != nil {
		return err
	}
	return CheckVersion(projectID, functionID, version)
}

// IgnoreNotFound returns err unless it is a not-found error: deleting a
// package that is not there is not an error.
func IgnoreNotFound(err error) error {
	if errors.Is(err, storage.ErrNotFound) {
		return nil
	}
	return err
}

// CheckLookup checks what a lookup of stored packages (Retrieve, Delete)
// needs: the IDs, the version and, for version 0, which is found by it
// alone, the md5. It also stops a cancelled request before any look.
func CheckLookup(ctx context.Context, projectID, functionID, md5 string, version int) error {
	if err := CheckRef(projectID, functionID, version); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if version == 0 {
		return CheckMD5(projectID, functionID, md5)
	}
	return nil
}

// CheckName checks every argument that becomes part of a stored name
// ("<fid>_<version>_<md5>.zip"), as Copy and ChangedSince build one
// instead of looking it up, and stops a cancelled request.
func CheckName(ctx context.Context, projectID, functionID, md5 string, version int) error {
	if err := CheckIDs(projectID, functionID); err != nil {
		return err
	}
	if err := CheckMD5(projectID, functionID, md5); err != nil {
		return err
	}
	if err := CheckVersion(projectID, functionID, version); err != nil {
		return err
	}
	return ctx.Err()
}

// CheckChangedSince checks ChangedSince's arguments. Version 0 is the
// current package itself, which by upstream's rule has always changed:
// with good IDs, current is true, the md5 is not checked and the backend
// answers true without looking. Otherwise it is CheckName.
func CheckChangedSince(ctx context.Context, projectID, functionID, md5 string, version int) (current bool, err error) {
	if err := CheckIDs(projectID, functionID); err != nil {
		return false, err
	}
	if version == 0 {
		return true, nil
	}
	return false, CheckName(ctx, projectID, functionID, md5, version)
}

// SameMD5 compares a caller's md5sum with the computed digest. Hex case is
// not significant; a caller computing it with another tool may use capitals.
func SameMD5(given, computed string) bool { return strings.EqualFold(given, computed) }

// NotFound reports a missing package with upstream's message.
func NotFound(projectID, functionID string, version int) error {
	return notFound(projectID, functionID, fmt.Errorf("function %s version %d: %w", functionID, version, storage.ErrNotFound))
}

func notFound(projectID, functionID string, cause error) error {
	return errdefs.Wrap(errdefs.KindNotFound, cause, "Package of function %s for project %s not found.", functionID, projectID)
}

// TooLarge reports an upload over the size limit, naming the limit so the
// user knows what to aim for.
func TooLarge(functionID string, maxSize int64) error {
	return errdefs.Wrap(errdefs.KindTooLarge,
		fmt.Errorf("function %s: %w", functionID, storage.ErrTooLarge),
		"Package is larger than the limit of %d bytes.", maxSize)
}

// ChecksumMismatch reports a caller md5sum that does not match the upload.
func ChecksumMismatch(functionID, given, computed string) error {
	return errdefs.Wrap(errdefs.KindInvalid,
		fmt.Errorf("function %s: given %q, computed %q: %w", functionID, given, computed, storage.ErrChecksumMismatch),
		"Package md5 mismatch.")
}

// InvalidPackage reports a package archive.Validate refused; the user sees
// archive's message (it says which entry is wrong and why). Errors that are
// not the package's fault must not be passed here: they are internal.
func InvalidPackage(functionID string, err error) error {
	return errdefs.Wrap(errdefs.KindInvalid,
		fmt.Errorf("function %s: %w", functionID, storage.ErrInvalidPackage),
		"%s", err.Error())
}

// ContextReader returns r, failing with ctx's error once ctx is done, so
// that a cancelled request stops a long upload between reads.
func ContextReader(ctx context.Context, r io.Reader) io.Reader {
	return ctxReader{ctx: ctx, r: r}
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
