package objstore

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/errdefs"
	"github.com/qinling-go/qinling/pkg/testutil"
	"github.com/qinling-go/qinling/storage"
	"github.com/qinling-go/qinling/storage/storagetest"
)

// mapBucket is a Bucket in memory whose calls fail with the errors queued
// in fail before they succeed.
type mapBucket struct {
	mu      sync.Mutex
	objects map[string][]byte
	fail    []error
	calls   int
}

func (b *mapBucket) failing() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls++
	if len(b.fail) == 0 {
		return nil
	}
	err := b.fail[0]
	b.fail = b.fail[1:]
	return err
}

func (b *mapBucket) Put(_ context.Context, key string, body io.ReadSeeker, _ int64, _ string) error {
	if err := b.failing(); err != nil {
		return err
	}
	data, err := io.ReadAll(body)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.objects[key] = data
	return nil
}

func (b *mapBucket) Get(_ context.Context, key string) (io.ReadCloser, error) {
	if err := b.failing(); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	data, ok := b.objects[key]
	if !ok {
		return nil, ErrObjectNotFound
	}
	return io.NopCloser(bytes.NewReader(data)), nil
}

func (b *mapBucket) Exists(_ context.Context, key string) (bool, error) {
	if err := b.failing(); err != nil {
		return false, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	_, ok := b.objects[key]
	return ok, nil
}

func (b *mapBucket) Delete(_ context.Context, key string) error {
	if err := b.failing(); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.objects, key)
	return nil
}

func (b *mapBucket) Copy(_ context.Context, src, dst string) error {
	if err := b.failing(); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	data, ok := b.objects[src]
	if !ok {
		return ErrObjectNotFound
	}
	b.objects[dst] = data
	return nil
}

func (b *mapBucket) List(_ context.Context, prefix string) ([]string, error) {
	if err := b.failing(); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	var keys []string
	for k := range b.objects {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	return keys, nil
}

var (
	errFlaky     = errors.New("503 Service Unavailable")
	errPermanent = errors.New("501 Not Implemented")
)

func (b *mapBucket) Transient(err error) bool { return errors.Is(err, errFlaky) }

func newStorage(t *testing.T, b *mapBucket, maxSize int64) *Storage {
	s, err := New(Config{Bucket: b, Name: "test", Transfer: storage.Transfer{MaxSize: maxSize, Retries: 2}, TempDir: t.TempDir()})
	require.NoError(t, err)
	return s
}

// The shared code passes the conformance suite on a plain bucket, so what
// the real backends add is only their Bucket.
func TestObjstore_Conformance(t *testing.T) {
	t.Parallel()
	storagetest.Run(t, func(t *testing.T, maxSize int64) storage.PackageStorage {
		return newStorage(t, &mapBucket{objects: map[string][]byte{}}, maxSize)
	})
}

func TestObjstore_Retries(t *testing.T) {
	t.Parallel()
	pkg := testutil.Zip(t, map[string]string{"main.py": "x = 1\n"})
	for _, tc := range []struct {
		name      string
		fail      []error
		wantErr   error // nil: the store succeeds
		wantCalls int   // Exists then Put, with their retries
	}{
		{name: "no failure", wantCalls: 2},
		{name: "transient failures within the retries", fail: []error{errFlaky, errFlaky}, wantCalls: 4},
		{name: "down through every retry is unavailable", fail: []error{errFlaky, errFlaky, errFlaky}, wantErr: errdefs.ErrUnavailable, wantCalls: 3},
		{name: "a permanent error is not retried", fail: []error{errPermanent}, wantErr: errPermanent, wantCalls: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := &mapBucket{objects: map[string][]byte{}, fail: tc.fail}
			_, _, err := newStorage(t, b, 1<<20).Store(context.Background(), "p", "f", bytes.NewReader(pkg), "")
			if tc.wantErr == nil {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, tc.wantErr)
				require.Empty(t, b.objects, "nothing kept")
			}
			require.Equal(t, tc.wantCalls, b.calls)
		})
	}
}

func TestObjstore_UnavailableAnswer(t *testing.T) {
	t.Parallel()
	b := &mapBucket{objects: map[string][]byte{}, fail: []error{errFlaky, errFlaky, errFlaky}}
	_, err := newStorage(t, b, 1<<20).Retrieve(context.Background(), "p", "f", strings.Repeat("0", 32), 0)
	require.Equal(t, 503, errdefs.HTTPStatus(err))
	require.Equal(t, "Package storage unavailable (test); try again later.", errdefs.PublicMessage(err))
}

func TestObjstore_CancelStopsRetrying(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	b := &mapBucket{objects: map[string][]byte{}, fail: []error{errFlaky, errFlaky, errFlaky}}
	s, err := New(Config{Bucket: b, Name: "test", Transfer: storage.Transfer{Retries: 100, Backoff: 1 << 40}})
	require.NoError(t, err)
	go cancel()
	_, err = s.Retrieve(ctx, "p", "f", strings.Repeat("0", 32), 0)
	require.ErrorIs(t, err, context.Canceled)
}
