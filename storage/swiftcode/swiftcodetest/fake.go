// Package swiftcodetest is an in-memory swiftcode.Source for unit tests of
// the API and the engine: users' objects by container/object, the trusts
// made and deleted. The real Source is tested against a real Swift
// (storage/swiftcode's integration test) and on the devstack stack.
package swiftcodetest

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"sync"

	"github.com/qinling-go/qinling/pkg/errdefs"
	"github.com/qinling-go/qinling/pkg/reqctx"
	"github.com/qinling-go/qinling/storage/swiftcode"
)

// Fake is a swiftcode.Source over objects in memory. Objects are visible
// to every caller that has a token; MaxSize is max_package_size.
type Fake struct {
	MaxSize int64

	mu      sync.Mutex
	objects map[string][]byte
	trusts  map[string]string // trust ID → trustor user ID
	made    int
}

var _ swiftcode.Source = (*Fake)(nil)

// New returns a Fake with no objects.
func New(maxSize int64) *Fake {
	return &Fake{MaxSize: maxSize, objects: map[string][]byte{}, trusts: map[string]string{}}
}

// Put stores (or replaces) container/object and returns its ETag.
func (f *Fake) Put(container, object string, body []byte) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.objects[container+"/"+object] = bytes.Clone(body)
	return ETag(body)
}

// Remove deletes container/object.
func (f *Fake) Remove(container, object string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.objects, container+"/"+object)
}

// Trusts returns the trusts that exist, by ID, with their trustors.
func (f *Fake) Trusts() map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.trusts)
}

// ETag is Swift's ETag of an ordinary object: its MD5.
func ETag(body []byte) string {
	sum := md5.Sum(body)
	return hex.EncodeToString(sum[:])
}

func (f *Fake) lookup(o swiftcode.Object) ([]byte, error) {
	body, ok := f.objects[o.String()]
	switch {
	case !ok:
		return nil, errdefs.Wrap(errdefs.KindNotFound, swiftcode.ErrMissing, "The Swift object %s of the function no longer exists.", o)
	case o.ETag != "" && ETag(body) != o.ETag:
		return nil, errdefs.Wrap(errdefs.KindConflict, swiftcode.ErrChanged, "The Swift object %s changed after the function recorded it (ETag %s).", o, o.ETag)
	}
	return body, nil
}

// Check implements swiftcode.Source.
func (f *Fake) Check(_ context.Context, caller reqctx.Identity, container, object string) (swiftcode.Object, error) {
	if caller.AuthToken == "" {
		return swiftcode.Object{}, errdefs.Invalid("Swift object not supported.")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	body, ok := f.objects[container+"/"+object]
	if !ok {
		return swiftcode.Object{}, errdefs.Wrap(errdefs.KindInvalid, swiftcode.ErrMissing, swiftcode.MsgInvalid)
	}
	if int64(len(body)) > f.MaxSize {
		return swiftcode.Object{}, errdefs.Wrap(errdefs.KindInvalid, swiftcode.ErrTooLarge, swiftcode.MsgInvalid)
	}
	return swiftcode.Object{Container: container, Object: object, ETag: ETag(body), Size: int64(len(body))}, nil
}

// Download implements swiftcode.Source.
func (f *Fake) Download(_ context.Context, _ reqctx.Identity, o swiftcode.Object) (io.ReadCloser, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	body, err := f.lookup(o)
	if err != nil {
		return nil, err
	}
	return io.NopCloser(bytes.NewReader(body)), nil
}

// CreateTrust implements swiftcode.Source.
func (f *Fake) CreateTrust(_ context.Context, caller reqctx.Identity) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.made++
	id := fmt.Sprintf("trust-%d", f.made)
	f.trusts[id] = caller.UserID
	return id, nil
}

// DeleteTrust implements swiftcode.Source.
func (f *Fake) DeleteTrust(_ context.Context, _ reqctx.Identity, trustID string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.trusts, trustID)
	return nil
}

// Fetch implements swiftcode.Source: only through a trust that exists.
func (f *Fake) Fetch(_ context.Context, trustID string, o swiftcode.Object) (io.ReadCloser, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.trusts[trustID]; !ok {
		return nil, errdefs.New(errdefs.KindForbidden, "The function's Keystone trust %q is no longer usable.", trustID)
	}
	body, err := f.lookup(o)
	if err != nil {
		return nil, err
	}
	return io.NopCloser(bytes.NewReader(body)), nil
}
