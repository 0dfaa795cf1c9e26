package sandbox

import (
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestHostIDs_Range(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name         string
		first, count int
		ok           bool
	}{
		{name: "a range", first: 100000, count: 10, ok: true},
		{name: "up to the largest", first: MaxHostID, count: 1, ok: true},
		{name: "past the largest", first: MaxHostID, count: 2},
		{name: "root", first: 0, count: 5},
		{name: "empty", first: 100000, count: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewHostIDs(t.TempDir(), tc.first, tc.count)
			if tc.ok {
				require.NoError(t, err)
			} else {
				require.ErrorContains(t, err, "host uid range")
			}
		})
	}
}

// workerDirs makes n directories standing for workers.
func workerDirs(t *testing.T, n int) []string {
	t.Helper()
	base := t.TempDir()
	var out []string
	for i := range n {
		d := filepath.Join(base, "w", string(rune('a'+i%26))+string(rune('a'+i/26)))
		require.NoError(t, os.MkdirAll(d, 0o700))
		out = append(out, d)
	}
	return out
}

// TestHostIDs_UniqueAcrossEngines: allocators sharing a directory (engines
// sharing a workers directory; separate lock descriptors contend as
// separate processes would) never hand out a uid twice.
func TestHostIDs_UniqueAcrossEngines(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const engines, each = 4, 25
	owners := workerDirs(t, engines*each)
	var mu sync.Mutex
	seen := map[int]string{}
	var wg sync.WaitGroup
	for e := range engines {
		ids, err := NewHostIDs(dir, 200000, engines*each)
		require.NoError(t, err)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				owner := owners[e*each+i]
				uid, err := ids.Allocate(owner)
				if !assertNoError(t, err) {
					return
				}
				mu.Lock()
				if prev, dup := seen[uid]; dup {
					t.Errorf("uid %d handed to %s and %s", uid, prev, owner)
				}
				seen[uid] = owner
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	require.Len(t, seen, engines*each)
	ids, err := NewHostIDs(dir, 200000, engines*each)
	require.NoError(t, err)
	_, err = ids.Allocate(owners[0])
	require.ErrorContains(t, err, "are in use", "the range is exhausted")
}

func assertNoError(t *testing.T, err error) bool {
	t.Helper()
	if err != nil {
		t.Error(err)
		return false
	}
	return true
}

func TestHostIDs_FreedWithTheWorker(t *testing.T) {
	t.Parallel()
	ids, err := NewHostIDs(t.TempDir(), 300000, 3)
	require.NoError(t, err)
	owners := workerDirs(t, 5)
	a, err := ids.Allocate(owners[0])
	require.NoError(t, err)
	b, err := ids.Allocate(owners[1])
	require.NoError(t, err)
	require.Equal(t, []int{300000, 300001}, []int{a, b})

	// A worker whose directory is gone (it ended, or its engine crashed)
	// holds nothing; uids go round the range before one is reused.
	require.NoError(t, os.RemoveAll(owners[0]))
	c, err := ids.Allocate(owners[2])
	require.NoError(t, err)
	require.Equal(t, 300002, c, "not the uid freed just now")
	d, err := ids.Allocate(owners[3])
	require.NoError(t, err)
	require.Equal(t, 300000, d, "the freed uid, once the range went round")
	_, err = ids.Allocate(owners[4])
	require.ErrorContains(t, err, "are in use")

	require.NoError(t, ids.Release(b, owners[0]), "not its holder: nothing happens")
	_, err = ids.Allocate(owners[4])
	require.ErrorContains(t, err, "are in use")
	require.NoError(t, ids.Release(b, owners[1]))
	e, err := ids.Allocate(owners[4])
	require.NoError(t, err)
	require.Equal(t, b, e)
	_, err = ids.Allocate("relative")
	require.ErrorContains(t, err, "absolute")
}
