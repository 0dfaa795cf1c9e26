// Package swiftcode reaches the code of swift functions: objects a user owns
// in their own Swift account (code = {"source": "swift", "swift":
// {"container", "object"}}, docs/storage.md "Functions from a Swift
// object"). The API checks and downloads an object with the caller's own
// token; the engine fetches it when it specialises a worker, on the owner's
// behalf through the Keystone trust made when the function was created.
//
// Qinling records the object's ETag when the function is created or
// updated, and the engine fetches only those bytes (If-Match): every worker
// of a function runs the same code, and an object replaced since is refused
// with a message saying so until `openstack function update` records it.
//
// This file is the Swift side, on any authenticated object-store client;
// keystone.go makes those clients from tokens and trusts.
package swiftcode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/objectstorage/v1/objects"

	"github.com/qinling-go/qinling/pkg/errdefs"
	"github.com/qinling-go/qinling/storage/internal/objstore"
)

// Object is a user's object as a swift function records it.
type Object struct {
	Container string
	Object    string
	// ETag is Swift's ETag when the function was created or last updated
	// (the MD5 hex of the body for an ordinary object).
	ETag string
	Size int64
}

func (o Object) String() string { return o.Container + "/" + o.Object }

// Errors of the Swift side; compare with errors.Is. Check wraps the first
// three in upstream's 400, Fetch gives each its own message.
var (
	ErrMissing  = errors.New("no such object or container")
	ErrDenied   = errors.New("access to the object refused")
	ErrTooLarge = errors.New("object larger than max_package_size")
	ErrChanged  = errors.New("object changed since the function recorded it")
)

// MsgInvalid is upstream's answer to an object it cannot use.
const MsgInvalid = "Failed to validate object in Swift."

// do runs op, repeating it while it fails transiently (5xx, timeouts,
// refused connections); still failing after r.Retries more tries, Swift is
// unavailable: a 503 on the API, an execution error on the engine.
func (r Retry) do(ctx context.Context, op func() error) error {
	err, exhausted := objstore.Retry(ctx, r.Retries, r.Backoff, transient, op)
	if exhausted {
		return errdefs.Wrap(errdefs.KindUnavailable, err, "Object storage (Swift) unavailable; try again later.")
	}
	return err
}

func transient(err error) bool {
	var code gophercloud.ErrUnexpectedResponseCode
	if errors.As(err, &code) {
		return objstore.StatusTransient(code.Actual)
	}
	return objstore.NetTransient(err)
}

// classify turns Swift's answers into this package's errors.
func classify(err error) error {
	switch {
	case err == nil:
		return nil
	case gophercloud.ResponseCodeIs(err, http.StatusNotFound):
		return fmt.Errorf("%w: %v", ErrMissing, err)
	case gophercloud.ResponseCodeIs(err, http.StatusUnauthorized), gophercloud.ResponseCodeIs(err, http.StatusForbidden):
		return fmt.Errorf("%w: %v", ErrDenied, err)
	case gophercloud.ResponseCodeIs(err, http.StatusPreconditionFailed):
		return fmt.Errorf("%w: %v", ErrChanged, err)
	}
	return err
}

// Head reads the size and ETag of container/object through sc, refusing an
// object larger than maxSize (ErrTooLarge).
func Head(ctx context.Context, sc *gophercloud.ServiceClient, r Retry, container, object string, maxSize int64) (Object, error) {
	if container == "" || object == "" || strings.Contains(container, "/") {
		return Object{}, fmt.Errorf("%w: container %q, object %q", ErrMissing, container, object)
	}
	var h *objects.GetHeader
	err := r.do(ctx, func() (err error) {
		h, err = objects.Get(ctx, sc, container, object, nil).Extract()
		return err
	})
	if err != nil {
		return Object{}, classify(err)
	}
	o := Object{Container: container, Object: object, ETag: strings.Trim(h.ETag, `"`), Size: h.ContentLength}
	if o.Size > maxSize {
		return o, fmt.Errorf("%w: %s is %d bytes, the limit %d", ErrTooLarge, o, o.Size, maxSize)
	}
	return o, nil
}

// Open streams container/object through sc. With an ETag it opens those
// bytes only: Swift answers 412 (ErrChanged) for any other content.
func Open(ctx context.Context, sc *gophercloud.ServiceClient, r Retry, o Object) (io.ReadCloser, error) {
	opts := objects.DownloadOpts{}
	if o.ETag != "" {
		opts.IfMatch = o.ETag
	}
	var body io.ReadCloser
	err := r.do(ctx, func() error {
		res := objects.Download(ctx, sc, o.Container, o.Object, opts)
		if res.Err != nil {
			if res.Body != nil {
				res.Body.Close()
			}
			return res.Err
		}
		body = res.Body
		return nil
	})
	if err != nil {
		return nil, classify(err)
	}
	return body, nil
}
