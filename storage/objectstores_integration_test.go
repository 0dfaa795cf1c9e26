//go:build integration

// The object-store backends against a real Swift (Debian's, started by
// pkg/testutil): the conformance suite over the Swift API and over its S3
// API, what their start-up check refuses, and an outage. One Swift serves
// every test here; each backend under test gets a container of its own.
package storage_test

import (
	"bytes"
	"context"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/errdefs"
	"github.com/qinling-go/qinling/pkg/testutil"
	"github.com/qinling-go/qinling/storage"
	"github.com/qinling-go/qinling/storage/s3"
	"github.com/qinling-go/qinling/storage/storagetest"
	"github.com/qinling-go/qinling/storage/swift"
)

var theSwift *testutil.Swift

func TestMain(m *testing.M) {
	os.Exit(testutil.RunWithSwift(m, "qinling-swift-", func(s *testutil.Swift) { theSwift = s }))
}

// Short waits: an outage must be reported in seconds, not minutes.
const (
	testTimeout = 5 * time.Second
	testRetries = 2
	testBackoff = 100 * time.Millisecond
)

func newSwift(t *testing.T, container string, maxSize int64) (storage.PackageStorage, error) {
	return swift.New(context.Background(), swift.Config{
		Container: container, AuthURL: theSwift.AuthURL, User: testutil.SwiftUser, Key: testutil.SwiftKey,
		Transfer: storage.Transfer{Timeout: testTimeout, Retries: testRetries, Backoff: testBackoff, MaxSize: maxSize},
	})
}

func newS3(t *testing.T, bucket string, maxSize int64, secret string) (storage.PackageStorage, error) {
	return s3.New(context.Background(), s3.Config{
		Endpoint: theSwift.S3Endpoint, Region: "us-east-1", Bucket: bucket,
		AccessKey: testutil.SwiftUser, SecretKey: secret,
		Transfer: storage.Transfer{Timeout: testTimeout, Retries: testRetries, Backoff: testBackoff, MaxSize: maxSize},
	})
}

func TestSwift_Conformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, maxSize int64) storage.PackageStorage {
		s, err := newSwift(t, theSwift.NewContainer(t), maxSize)
		require.NoError(t, err)
		return s
	})
}

func TestS3_Conformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, maxSize int64) storage.PackageStorage {
		s, err := newS3(t, theSwift.NewContainer(t), maxSize, testutil.SwiftKey)
		require.NoError(t, err)
		return s
	})
}

// Both APIs reach the same objects, in upstream's key layout.
func TestObjectStores_LayoutAndOneStore(t *testing.T) {
	ctx := context.Background()
	container := theSwift.NewContainer(t)
	sw, err := newSwift(t, container, 1<<20)
	require.NoError(t, err)
	viaS3, err := newS3(t, container, 1<<20, testutil.SwiftKey)
	require.NoError(t, err)

	pkg := testutil.Zip(t, map[string]string{"main.py": "def main():\n    return 1\n"})
	sum, _, err := sw.Store(ctx, "proj", "fn", bytes.NewReader(pkg), "")
	require.NoError(t, err)
	require.NoError(t, sw.Copy(ctx, "proj", "fn", sum, 0))
	require.ElementsMatch(t, []string{"proj/fn_" + sum + ".zip", "proj/fn_1_" + sum + ".zip"}, theSwift.Objects(t, container))

	rc, err := viaS3.Retrieve(ctx, "proj", "fn", "", 1)
	require.NoError(t, err)
	defer rc.Close()
	var got bytes.Buffer
	_, err = got.ReadFrom(rc)
	require.NoError(t, err)
	require.Equal(t, pkg, got.Bytes(), "the version Swift copied is read over S3")

	require.NoError(t, viaS3.Delete(ctx, "proj", "fn", sum, 0))
	require.NoError(t, viaS3.Delete(ctx, "proj", "fn", "", 1))
	require.Empty(t, theSwift.Objects(t, container), "deletes remove the objects")
}

func TestObjectStores_StartRefusals(t *testing.T) {
	for _, tc := range []struct {
		name string
		open func(t *testing.T) error
		want error
	}{
		{name: "swift wrong key", want: storage.ErrBadCredentials, open: func(t *testing.T) error {
			_, err := swift.New(context.Background(), swift.Config{
				Container: theSwift.NewContainer(t), AuthURL: theSwift.AuthURL, User: testutil.SwiftUser, Key: "wrong",
				Transfer: storage.Transfer{Timeout: testTimeout},
			})
			return err
		}},
		{name: "swift missing container", want: storage.ErrNoContainer, open: func(t *testing.T) error {
			_, err := newSwift(t, "no-such-container", 1<<20)
			return err
		}},
		{name: "s3 wrong secret", want: storage.ErrBadCredentials, open: func(t *testing.T) error {
			_, err := newS3(t, theSwift.NewContainer(t), 1<<20, "wrong")
			return err
		}},
		{name: "s3 missing bucket", want: storage.ErrNoContainer, open: func(t *testing.T) error {
			_, err := newS3(t, "no-such-bucket", 1<<20, testutil.SwiftKey)
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.ErrorIs(t, tc.open(t), tc.want)
		})
	}
}

// A store that goes down is a 503 with a clear message once the retries
// are spent, and everything works again when it is back, with the same
// clients (no restart). Not parallel: it stops the shared proxy.
func TestObjectStores_Outage(t *testing.T) {
	ctx := context.Background()
	pkg := testutil.Zip(t, map[string]string{"main.py": "def main():\n    return 2\n"})
	type backend struct {
		name string
		s    storage.PackageStorage
	}
	c1, c2 := theSwift.NewContainer(t), theSwift.NewContainer(t)
	sw, err := newSwift(t, c1, 1<<20)
	require.NoError(t, err)
	viaS3, err := newS3(t, c2, 1<<20, testutil.SwiftKey)
	require.NoError(t, err)
	backends := []backend{{"swift", sw}, {"s3", viaS3}}
	sums := map[string]string{}
	for _, b := range backends {
		sums[b.name], _, err = b.s.Store(ctx, "proj", "fn", bytes.NewReader(pkg), "")
		require.NoError(t, err)
	}

	require.NoError(t, theSwift.StopProxy())
	for _, b := range backends {
		_, _, err := b.s.Store(ctx, "proj", "fn2", bytes.NewReader(pkg), "")
		require.ErrorIs(t, err, errdefs.ErrUnavailable, "%s store", b.name)
		require.Equal(t, 503, errdefs.HTTPStatus(err), "%s store", b.name)
		require.Contains(t, errdefs.PublicMessage(err), "Package storage unavailable ("+b.name+")")
		_, err = b.s.Retrieve(ctx, "proj", "fn", sums[b.name], 0)
		require.ErrorIs(t, err, errdefs.ErrUnavailable, "%s retrieve", b.name)
	}

	require.NoError(t, theSwift.Start())
	for _, b := range backends {
		rc, err := b.s.Retrieve(ctx, "proj", "fn", sums[b.name], 0)
		require.NoError(t, err, "%s after the outage", b.name)
		rc.Close()
		_, _, err = b.s.Store(ctx, "proj", "fn2", bytes.NewReader(pkg), "")
		require.NoError(t, err, "%s after the outage", b.name)
	}
}
