//go:build integration

// The Swift side of swift functions against a real Swift (Debian's, from
// pkg/testutil, tempauth): what a function records of an object, that only
// those bytes are fetched, and what a missing, replaced, oversize or
// unreachable object gives. Keystone's side (caller tokens, trusts) runs
// on the devstack stack (tests/cli, QINLING_STORAGE=swift).
package swiftcode_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/objectstorage/v1/objects"
	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/errdefs"
	"github.com/qinling-go/qinling/pkg/testutil"
	"github.com/qinling-go/qinling/storage/swiftcode"
	"github.com/qinling-go/qinling/storage/swiftcode/swiftcodetest"
)

var theSwift *testutil.Swift

func TestMain(m *testing.M) {
	os.Exit(testutil.RunWithSwift(m, "qinling-swiftcode-", func(s *testutil.Swift) { theSwift = s }))
}

// retry is short: an outage must be reported in seconds.
var retry = swiftcode.Retry{Retries: 2, Backoff: 100 * time.Millisecond}

// client is an object-store client of the test account with token.
func client(t *testing.T, token string) *gophercloud.ServiceClient {
	t.Helper()
	good, storageURL, err := theSwift.Token()
	require.NoError(t, err)
	if token == "" {
		token = good
	}
	pc := &gophercloud.ProviderClient{HTTPClient: http.Client{Timeout: 10 * time.Second}}
	pc.SetToken(token)
	return &gophercloud.ServiceClient{ProviderClient: pc, Endpoint: gophercloud.NormalizeURL(storageURL), Type: "object-store"}
}

func put(t *testing.T, sc *gophercloud.ServiceClient, container, object string, body []byte) {
	t.Helper()
	require.NoError(t, objects.Create(context.Background(), sc, container, object, objects.CreateOpts{Content: bytes.NewReader(body)}).Err)
}

// withObject puts a zip returning ret as hello.zip in a new container and
// returns a client, the container and the zip.
func withObject(t *testing.T, ret string) (*gophercloud.ServiceClient, string, []byte) {
	t.Helper()
	sc := client(t, "")
	c := theSwift.NewContainer(t)
	body := testutil.Zip(t, map[string]string{"hello.py": "def main(**kw):\n    return '" + ret + "'\n"})
	put(t, sc, c, "hello.zip", body)
	return sc, c, body
}

func read(t *testing.T, rc io.ReadCloser) []byte {
	t.Helper()
	defer rc.Close()
	b, err := io.ReadAll(rc)
	require.NoError(t, err)
	return b
}

func TestSwiftObject_Head(t *testing.T) {
	ctx := context.Background()
	sc, c, body := withObject(t, "one")
	for _, tc := range []struct {
		name              string
		sc                *gophercloud.ServiceClient
		container, object string
		maxSize           int64
		want              error
	}{
		{name: "object", sc: sc, container: c, object: "hello.zip", maxSize: 1 << 20},
		{name: "missing object", sc: sc, container: c, object: "nothing.zip", maxSize: 1 << 20, want: swiftcode.ErrMissing},
		{name: "missing container", sc: sc, container: c + "-gone", object: "hello.zip", maxSize: 1 << 20, want: swiftcode.ErrMissing},
		{name: "larger than max_package_size", sc: sc, container: c, object: "hello.zip", maxSize: int64(len(body)) - 1, want: swiftcode.ErrTooLarge},
		{name: "refused token", sc: client(t, "AUTH_tk-not-a-token"), container: c, object: "hello.zip", maxSize: 1 << 20, want: swiftcode.ErrDenied},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := swiftcode.Head(ctx, tc.sc, retry, tc.container, tc.object, tc.maxSize)
			if tc.want != nil {
				require.ErrorIs(t, err, tc.want)
				return
			}
			require.NoError(t, err)
			require.Equal(t, swiftcode.Object{Container: c, Object: "hello.zip", ETag: swiftcodetest.ETag(body), Size: int64(len(body))}, o)
		})
	}
}

// The engine fetches the recorded bytes only: a replaced object is refused
// until the function records the new ETag; a deleted one is missing.
func TestSwiftObject_OpenRecordedBytes(t *testing.T) {
	ctx := context.Background()
	sc, c, one := withObject(t, "one")
	two := testutil.Zip(t, map[string]string{"hello.py": "def main(**kw):\n    return 'two'\n"})
	recorded, err := swiftcode.Head(ctx, sc, retry, c, "hello.zip", 1<<20)
	require.NoError(t, err)
	rc, err := swiftcode.Open(ctx, sc, retry, recorded)
	require.NoError(t, err)
	require.Equal(t, one, read(t, rc))

	put(t, sc, c, "hello.zip", two)
	_, err = swiftcode.Open(ctx, sc, retry, recorded)
	require.ErrorIs(t, err, swiftcode.ErrChanged, "the old ETag no longer matches")

	updated, err := swiftcode.Head(ctx, sc, retry, c, "hello.zip", 1<<20)
	require.NoError(t, err)
	require.NotEqual(t, recorded.ETag, updated.ETag)
	rc, err = swiftcode.Open(ctx, sc, retry, updated)
	require.NoError(t, err)
	require.Equal(t, two, read(t, rc))

	require.NoError(t, objects.Delete(ctx, sc, c, "hello.zip", nil).Err)
	_, err = swiftcode.Open(ctx, sc, retry, updated)
	require.ErrorIs(t, err, swiftcode.ErrMissing)
}

// Swift down: a clear 503 after the retries, never a hang; back up, the
// same client works again.
func TestSwiftObject_Outage(t *testing.T) {
	ctx := context.Background()
	sc, c, body := withObject(t, "up")
	o, err := swiftcode.Head(ctx, sc, retry, c, "hello.zip", 1<<20)
	require.NoError(t, err)

	require.NoError(t, theSwift.StopProxy())
	t.Cleanup(func() { _ = theSwift.Start() })
	_, err = swiftcode.Head(ctx, sc, retry, c, "hello.zip", 1<<20)
	require.Equal(t, errdefs.KindUnavailable, errdefs.KindOf(err), "%v", err)
	require.Equal(t, "Object storage (Swift) unavailable; try again later.", errdefs.PublicMessage(err))
	_, err = swiftcode.Open(ctx, sc, retry, o)
	require.Equal(t, errdefs.KindUnavailable, errdefs.KindOf(err), "%v", err)

	require.NoError(t, theSwift.Start())
	rc, err := swiftcode.Open(ctx, sc, retry, o)
	require.NoError(t, err)
	require.Equal(t, body, read(t, rc))
}
