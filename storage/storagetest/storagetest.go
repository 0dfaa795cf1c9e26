// Package storagetest is the conformance suite for storage.PackageStorage.
// Every backend's tests, and the in-memory fake's, call Run, so that what
// the API and engine rely on is stated once and checked everywhere.
package storagetest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/testutil"
	"github.com/qinling-go/qinling/storage"
)

// Factory returns a new, empty backend that refuses packages larger than
// maxSize bytes (maxSize is always positive) and otherwise uses the default
// archive limits. Use t for cleanup and temporary directories.
type Factory func(t *testing.T, maxSize int64) storage.PackageStorage

// DefaultSuiteMaxSize is the size limit the suite uses unless a case is
// about the limit itself: small, so too-large cases stay fast.
const DefaultSuiteMaxSize = 1 << 20

// fixture is one backend under test plus shorthands that fail the test on
// unexpected errors.
type fixture struct {
	t *testing.T
	s storage.PackageStorage
}

const (
	project  = "3f1a2b4c5d6e7f8091a2b3c4d5e6f708"
	function = "6f8b9d3e-2c41-4b8a-9e0f-1a2b3c4d5e6f"
)

func (f fixture) store(projectID, functionID string, pkg []byte) string {
	f.t.Helper()
	sum, _, err := f.s.Store(context.Background(), projectID, functionID, bytes.NewReader(pkg), "")
	require.NoError(f.t, err)
	return sum
}

func (f fixture) read(projectID, functionID, md5 string, version int) []byte {
	f.t.Helper()
	rc, err := f.s.Retrieve(context.Background(), projectID, functionID, md5, version)
	require.NoError(f.t, err)
	defer rc.Close()
	b, err := io.ReadAll(rc)
	require.NoError(f.t, err)
	return b
}

func (f fixture) requireMissing(projectID, functionID, md5 string, version int) {
	f.t.Helper()
	rc, err := f.s.Retrieve(context.Background(), projectID, functionID, md5, version)
	if err == nil {
		rc.Close()
	}
	require.ErrorIs(f.t, err, storage.ErrNotFound)
}

// countingReader reports how much of an upload a backend consumed.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// endless yields the same byte forever without holding it in memory.
type endless struct{}

func (endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	return len(p), nil
}

// Run runs the conformance suite against backends made by newStorage. The
// cases run in parallel, each with its own backend.
func Run(t *testing.T, newStorage Factory) {
	ctx := context.Background()
	pkgA := testutil.Zip(t, map[string]string{"main.py": "def main():\n    return 'A'\n"})
	pkgB := testutil.Zip(t, map[string]string{"main.py": "def main():\n    return 'B'\n", "util.py": "X = 1\n"})
	md5A, md5B := testutil.MD5(pkgA), testutil.MD5(pkgB)

	newFixture := func(t *testing.T) fixture {
		return fixture{t: t, s: newStorage(t, DefaultSuiteMaxSize)}
	}

	t.Run("store then retrieve round trip", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		sum, updated, err := f.s.Store(ctx, project, function, bytes.NewReader(pkgA), "")
		require.NoError(t, err)
		require.True(t, updated)
		require.Equal(t, md5A, sum, "the md5 returned is that of the bytes read")
		require.Equal(t, pkgA, f.read(project, function, sum, 0))
	})

	t.Run("md5sum given and matching is accepted in any case", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		for _, tc := range []struct {
			pkg   []byte
			given string
		}{{pkgA, md5A}, {pkgB, strings.ToUpper(md5B)}} {
			sum, updated, err := f.s.Store(ctx, project, function, bytes.NewReader(tc.pkg), tc.given)
			require.NoError(t, err)
			require.True(t, updated)
			require.Equal(t, testutil.MD5(tc.pkg), sum, "the returned md5 is lower-case hex")
		}
	})

	t.Run("storing the same content twice is not an update", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		first := f.store(project, function, pkgA)
		sum, updated, err := f.s.Store(ctx, project, function, bytes.NewReader(pkgA), md5A)
		require.NoError(t, err)
		require.False(t, updated)
		require.Equal(t, first, sum)
		require.Equal(t, pkgA, f.read(project, function, sum, 0))
	})

	t.Run("a new package keeps the old one until it is deleted", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		f.store(project, function, pkgA)
		sum, updated, err := f.s.Store(ctx, project, function, bytes.NewReader(pkgB), "")
		require.NoError(t, err)
		require.True(t, updated)
		require.Equal(t, md5B, sum)
		require.Equal(t, pkgA, f.read(project, function, md5A, 0), "the API deletes the old package itself, after its transaction")
		require.NoError(t, f.s.Delete(ctx, project, function, md5A, 0))
		f.requireMissing(project, function, md5A, 0)
		require.Equal(t, pkgB, f.read(project, function, md5B, 0))
	})

	t.Run("md5 mismatch is refused and nothing is kept", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		_, _, err := f.s.Store(ctx, project, function, bytes.NewReader(pkgA), md5B)
		require.ErrorIs(t, err, storage.ErrChecksumMismatch)
		f.requireMissing(project, function, md5A, 0)
	})

	for _, tc := range []struct {
		name    string
		body    []byte
		wantMsg string
	}{
		{name: "not a zip", body: []byte("#!/bin/sh\necho not a zip\n"), wantMsg: "Package is not a valid ZIP package."},
		{name: "empty upload", body: nil, wantMsg: "Package is not a valid ZIP package."},
		{name: "zip escaping its directory", body: testutil.Zip(t, map[string]string{"../evil.py": "x"}), wantMsg: "escapes the package directory"},
	} {
		t.Run(tc.name+" is an invalid package and nothing is kept", func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			_, _, err := f.s.Store(ctx, project, function, bytes.NewReader(tc.body), "")
			require.ErrorIs(t, err, storage.ErrInvalidPackage)
			require.ErrorContains(t, err, tc.wantMsg, "the user is told why")
			f.requireMissing(project, function, testutil.MD5(tc.body), 0)
		})
	}

	t.Run("too large is refused without reading it all", func(t *testing.T) {
		t.Parallel()
		const max = 4096
		f := fixture{t: t, s: newStorage(t, max)}
		r := &countingReader{r: io.LimitReader(endless{}, 64<<20)}
		_, _, err := f.s.Store(ctx, project, function, r, "")
		require.ErrorIs(t, err, storage.ErrTooLarge)
		require.ErrorContains(t, err, "4096", "the message names the limit")
		require.LessOrEqual(t, r.n, int64(max+64<<10), "reading stops near the limit")
	})

	t.Run("size limit is inclusive", func(t *testing.T) {
		t.Parallel()
		size := int64(len(pkgA))
		f := fixture{t: t, s: newStorage(t, size)}
		_, _, err := f.s.Store(ctx, project, function, bytes.NewReader(pkgA), "")
		require.NoError(t, err, "exactly the limit is accepted")

		f = fixture{t: t, s: newStorage(t, size-1)}
		_, _, err = f.s.Store(ctx, project, function, bytes.NewReader(pkgA), "")
		require.ErrorIs(t, err, storage.ErrTooLarge, "one byte over is refused")
		f.requireMissing(project, function, md5A, 0)
	})

	t.Run("retrieve missing is not found", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		f.requireMissing(project, function, md5A, 0)
		f.requireMissing(project, function, md5A, 3)
		f.store(project, function, pkgA)
		f.requireMissing(project, function, md5B, 0)
		f.requireMissing(project, function, md5A, 1)
		f.requireMissing(project, function, md5A, -1)
	})

	t.Run("delete missing is not an error", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		require.NoError(t, f.s.Delete(ctx, project, function, md5A, 0))
		require.NoError(t, f.s.Delete(ctx, project, function, md5A, 2))
		f.store(project, function, pkgA)
		require.NoError(t, f.s.Delete(ctx, project, function, md5A, 0))
		require.NoError(t, f.s.Delete(ctx, project, function, md5A, 0), "twice")
		f.requireMissing(project, function, md5A, 0)
	})

	t.Run("copy then retrieve version", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		f.store(project, function, pkgA)
		require.NoError(t, f.s.Copy(ctx, project, function, md5A, 0))
		require.Equal(t, pkgA, f.read(project, function, md5A, 1))
		require.Equal(t, pkgA, f.read(project, function, "", 1), "a version is found without knowing its md5")

		require.NoError(t, f.s.Delete(ctx, project, function, md5A, 0))
		require.Equal(t, pkgA, f.read(project, function, md5A, 1), "a version outlives the current package")
		require.NoError(t, f.s.Delete(ctx, project, function, "", 1))
		f.requireMissing(project, function, md5A, 1)
	})

	t.Run("copy of a missing package is not found", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		require.ErrorIs(t, f.s.Copy(ctx, project, function, md5A, 0), storage.ErrNotFound)
		f.requireMissing(project, function, md5A, 1)
	})

	t.Run("changed since", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		changed := func(md5 string, version int) bool {
			t.Helper()
			c, err := f.s.ChangedSince(ctx, project, function, md5, version)
			require.NoError(t, err)
			return c
		}
		require.True(t, changed(md5A, 0), "version 0 is always changed, even with nothing stored")
		f.store(project, function, pkgA)
		require.True(t, changed(md5A, 0))
		require.NoError(t, f.s.Copy(ctx, project, function, md5A, 0))
		require.False(t, changed(md5A, 1), "unchanged since the copy")
		require.True(t, changed(md5A, 0))

		f.store(project, function, pkgB)
		require.True(t, changed(md5B, 1), "a new package is a change")
		require.NoError(t, f.s.Copy(ctx, project, function, md5B, 1))
		require.False(t, changed(md5B, 2))
		require.True(t, changed(md5A, 2))
	})

	t.Run("version 1 and version 10 are distinct", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		f.store(project, function, pkgA)
		require.NoError(t, f.s.Copy(ctx, project, function, md5A, 0))
		f.store(project, function, pkgB)
		require.NoError(t, f.s.Copy(ctx, project, function, md5B, 9))

		require.Equal(t, pkgA, f.read(project, function, "", 1))
		require.Equal(t, pkgB, f.read(project, function, "", 10))
		// The upstream bug: a prefix match let version 1 find version 10.
		require.NoError(t, f.s.Delete(ctx, project, function, "", 1))
		f.requireMissing(project, function, "", 1)
		require.Equal(t, pkgB, f.read(project, function, "", 10), "deleting version 1 keeps version 10")
		changed, err := f.s.ChangedSince(ctx, project, function, md5B, 1)
		require.NoError(t, err)
		require.True(t, changed)
	})

	t.Run("function ids that share a prefix are distinct", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		f.store(project, "fn", pkgA)
		require.NoError(t, f.s.Copy(ctx, project, "fn", md5A, 0))
		f.requireMissing(project, "fn1", "", 1)
		f.requireMissing(project, "f", "", 1)
		f.requireMissing(project, "fn1", md5A, 0)
	})

	t.Run("projects are isolated", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		const other = "0123456789abcdef0123456789abcdef"
		f.store(project, function, pkgA)
		f.requireMissing(other, function, md5A, 0)
		require.NoError(t, f.s.Copy(ctx, project, function, md5A, 0))
		f.requireMissing(other, function, "", 1)
		require.ErrorIs(t, f.s.Copy(ctx, other, function, md5A, 0), storage.ErrNotFound)

		f.store(other, function, pkgB)
		require.NoError(t, f.s.Delete(ctx, other, function, md5A, 0))
		require.NoError(t, f.s.Delete(ctx, other, function, "", 1))
		require.Equal(t, pkgA, f.read(project, function, md5A, 0), "deletes in one project leave the other alone")
		require.Equal(t, pkgA, f.read(project, function, "", 1))
		require.Equal(t, pkgB, f.read(other, function, md5B, 0))
	})

	t.Run("unsafe ids are refused as not found", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		for _, ids := range [][2]string{
			{"", function}, {project, ""},
			{"..", function}, {project, ".."}, {".", function},
			{"../x", function}, {project, "../x"}, {"a/b", function}, {project, "a/b"},
			{`a\b`, function}, {project, "/etc"}, {"p\x00", function},
			{project, "fn_1"}, // "_" separates name parts: "fn_1" would be version 1 of "fn"
		} {
			p, fn := ids[0], ids[1]
			_, _, err := f.s.Store(ctx, p, fn, bytes.NewReader(pkgA), "")
			require.ErrorIs(t, err, storage.ErrNotFound, "store %q %q", p, fn)
			_, err = f.s.Retrieve(ctx, p, fn, md5A, 0)
			require.ErrorIs(t, err, storage.ErrNotFound, "retrieve %q %q", p, fn)
			require.ErrorIs(t, f.s.Copy(ctx, p, fn, md5A, 0), storage.ErrNotFound, "copy %q %q", p, fn)
			_, err = f.s.ChangedSince(ctx, p, fn, md5A, 1)
			require.ErrorIs(t, err, storage.ErrNotFound, "changed since %q %q", p, fn)
			require.ErrorIs(t, f.s.Delete(ctx, p, fn, md5A, 0), storage.ErrNotFound, "delete %q %q", p, fn)
		}
		for _, md5 := range []string{"../" + md5A, md5A + "/..", "x", strings.ToUpper(md5A)} {
			_, err := f.s.Retrieve(ctx, project, function, md5, 0)
			require.ErrorIs(t, err, storage.ErrNotFound, "retrieve md5 %q", md5)
			require.ErrorIs(t, f.s.Copy(ctx, project, function, md5, 0), storage.ErrNotFound, "copy md5 %q", md5)
		}
	})

	t.Run("cancelled context stops a store", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		_, _, err := f.s.Store(cctx, project, function, bytes.NewReader(pkgA), "")
		require.ErrorIs(t, err, context.Canceled)
		f.requireMissing(project, function, md5A, 0)
	})

	t.Run("concurrent stores", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		const n = 8
		pkgs := make([][]byte, n)
		for i := range pkgs {
			pkgs[i] = testutil.Zip(t, map[string]string{"main.py": fmt.Sprintf("N = %d\n%s", i, strings.Repeat("#", 20000))})
		}
		type result struct {
			sum     string
			updated bool
			err     error
		}
		results := make([]result, 2*n)
		var wg sync.WaitGroup
		for i := range results {
			wg.Go(func() {
				// Two stores of each package, all of the same function at once.
				sum, updated, err := f.s.Store(ctx, project, function, bytes.NewReader(pkgs[i%n]), "")
				results[i] = result{sum, updated, err}
			})
		}
		wg.Wait()
		updates := map[string]int{}
		for i, r := range results {
			require.NoError(t, r.err)
			require.Equal(t, testutil.MD5(pkgs[i%n]), r.sum)
			if r.updated {
				updates[r.sum]++
			}
		}
		for i, pkg := range pkgs {
			require.Equal(t, pkg, f.read(project, function, testutil.MD5(pkg), 0), "package %d intact", i)
			require.GreaterOrEqual(t, updates[testutil.MD5(pkg)], 1, "package %d: some store reports the update", i)
		}
	})
}
