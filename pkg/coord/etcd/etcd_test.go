package etcd_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/coord"
	"github.com/qinling-go/qinling/pkg/coord/coordtest"
	"github.com/qinling-go/qinling/pkg/coord/etcd"
	"github.com/qinling-go/qinling/pkg/testutil"
)

// TestEtcd runs the suite against a real (embedded) etcd server; each case
// gets its own server so no state leaks between them.
func TestEtcd(t *testing.T) {
	coordtest.Run(t, func(t *testing.T) coord.Coordinator {
		e, err := etcd.StartEmbedded(etcd.EmbedConfig{Dir: t.TempDir(), Host: "127.0.0.1", Port: testutil.FreePort(t), PeerPort: testutil.FreePort(t)})
		require.NoError(t, err)
		t.Cleanup(e.Close)
		c, err := etcd.New(context.Background(), etcd.Config{Endpoints: []string{e.Endpoint}, DialTimeout: 5 * time.Second, LockTTL: 5 * time.Second})
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		return c
	})
}

// TestEtcd_CrashedHolderLockExpires shows why locks hang off a lease: a
// holder that disappears without unlocking frees the lock after the TTL.
func TestEtcd_CrashedHolderLockExpires(t *testing.T) {
	e, err := etcd.StartEmbedded(etcd.EmbedConfig{Dir: t.TempDir(), Host: "127.0.0.1", Port: testutil.FreePort(t), PeerPort: testutil.FreePort(t)})
	require.NoError(t, err)
	t.Cleanup(e.Close)
	cfg := etcd.Config{Endpoints: []string{e.Endpoint}, DialTimeout: 5 * time.Second, LockTTL: 2 * time.Second}
	crashed, err := etcd.New(context.Background(), cfg)
	require.NoError(t, err)
	_, err = crashed.Lock(context.Background(), "fn")
	require.NoError(t, err)
	// Simulate a crash: drop the connection without releasing anything.
	crashed.Abandon()

	survivor, err := etcd.New(context.Background(), cfg)
	require.NoError(t, err)
	defer survivor.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	unlock, err := survivor.Lock(ctx, "fn")
	require.NoError(t, err, "the crashed holder's lock must expire with its lease")
	unlock()
}

// TestEmbedded_SmallOnDisk: a fresh embedded etcd takes a few megabytes of
// disk, not the 128 MB of write-ahead log etcd preallocates by default.
func TestEmbedded_SmallOnDisk(t *testing.T) {
	dir := t.TempDir()
	e, err := etcd.StartEmbedded(etcd.EmbedConfig{Dir: dir, Host: "127.0.0.1", Port: testutil.FreePort(t), PeerPort: testutil.FreePort(t)})
	require.NoError(t, err)
	t.Cleanup(e.Close)
	used := testutil.DiskUsage(t, dir)
	t.Logf("embedded etcd uses %d bytes on disk", used)
	require.Less(t, used, int64(16<<20), "on-disk size of %s", dir)
}

// TestEtcd_EngineRegistration: a closed coordinator's engine is gone at
// once, a crashed one's when its lease expires, and a live one stays.
func TestEtcd_EngineRegistration(t *testing.T) {
	e, err := etcd.StartEmbedded(etcd.EmbedConfig{Dir: t.TempDir(), Host: "127.0.0.1", Port: testutil.FreePort(t), PeerPort: testutil.FreePort(t)})
	require.NoError(t, err)
	t.Cleanup(e.Close)
	ctx := context.Background()
	cfg := etcd.Config{Endpoints: []string{e.Endpoint}, DialTimeout: 5 * time.Second, LockTTL: 2 * time.Second}
	connect := func(engine string) *etcd.Coordinator {
		c, err := etcd.New(ctx, cfg)
		require.NoError(t, err)
		require.NoError(t, c.Register(ctx, engine))
		return c
	}
	live, closed, crashed := connect("live"), connect("closed"), connect("crashed")
	defer live.Close()
	es, err := live.Engines(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{"closed", "crashed", "live"}, es)

	require.NoError(t, closed.Close())
	es, err = live.Engines(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{"crashed", "live"}, es, "a clean stop revokes the lease")

	crashed.Abandon()
	deadline := time.Now().Add(20 * time.Second)
	for {
		es, err = live.Engines(ctx)
		require.NoError(t, err)
		if len(es) == 1 {
			break
		}
		require.True(t, time.Now().Before(deadline), "the crashed engine's registration must expire with its lease: %v", es)
		time.Sleep(200 * time.Millisecond)
	}
	require.Equal(t, []string{"live"}, es)
}

// TestEmbedded_RestartDropsDeadRunsLeases: a lock held by a run that was
// killed does not outlive the restart of the embedded server.
func TestEmbedded_RestartDropsDeadRunsLeases(t *testing.T) {
	dir := t.TempDir()
	start := func() *etcd.Embedded {
		e, err := etcd.StartEmbedded(etcd.EmbedConfig{Dir: dir, Host: "127.0.0.1", Port: testutil.FreePort(t), PeerPort: testutil.FreePort(t)})
		require.NoError(t, err)
		return e
	}
	ctx := context.Background()
	cfg := etcd.Config{DialTimeout: 5 * time.Second, LockTTL: time.Hour}

	e := start()
	cfg.Endpoints = []string{e.Endpoint}
	dead, err := etcd.New(ctx, cfg)
	require.NoError(t, err)
	_, err = dead.Lock(ctx, "fn-held")
	require.NoError(t, err)
	dead.Abandon() // the process dies holding the lock: its lease is never revoked
	e.Close()

	e = start()
	t.Cleanup(e.Close)
	cfg.Endpoints = []string{e.Endpoint}
	live, err := etcd.New(ctx, cfg)
	require.NoError(t, err)
	defer live.Close()
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	unlock, err := live.Lock(lctx, "fn-held")
	require.NoError(t, err, "the dead run's lock (TTL 1h) is gone after the restart")
	unlock()
}

// TestEtcd_WorkersMirror: Workers answers from memory, sees this
// coordinator's own writes at once and another's once their events arrive.
func TestEtcd_WorkersMirror(t *testing.T) {
	e, err := etcd.StartEmbedded(etcd.EmbedConfig{Dir: t.TempDir(), Host: "127.0.0.1", Port: testutil.FreePort(t), PeerPort: testutil.FreePort(t)})
	require.NoError(t, err)
	t.Cleanup(e.Close)
	open := func() *etcd.Coordinator {
		c, err := etcd.New(context.Background(), etcd.Config{Endpoints: []string{e.Endpoint}, DialTimeout: 5 * time.Second, LockTTL: 5 * time.Second})
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		return c
	}
	ctx := context.Background()
	a, b := open(), open()
	fv := coord.FunctionVersion{FunctionID: "f1", Version: 1}
	names := func(c *etcd.Coordinator) []string {
		ws, err := c.Workers(ctx, fv)
		require.NoError(t, err)
		out := []string{}
		for _, w := range ws {
			out = append(out, w.Name)
		}
		return out
	}
	seen := func(c *etcd.Coordinator, want ...string) {
		t.Helper()
		require.Eventually(t, func() bool { return slices.Equal(names(c), want) }, 10*time.Second, 5*time.Millisecond, "want %v", want)
	}

	seen(a) // the mirror is loaded
	for i, step := range []struct {
		name   string
		change func() error
		want   []string
	}{
		{"own add", func() error { return a.AddWorker(ctx, fv, coord.WorkerRecord{Name: "w1", Address: "x"}) }, []string{"w1"}},
		{"another's add, listed after", func() error { return b.AddWorker(ctx, fv, coord.WorkerRecord{Name: "w2", Address: "y"}) }, []string{"w1", "w2"}},
		{"another version untouched", func() error {
			return b.AddWorker(ctx, coord.FunctionVersion{FunctionID: "f1", Version: 10}, coord.WorkerRecord{Name: "w9"})
		}, []string{"w1", "w2"}},
		{"another's remove", func() error { return b.RemoveWorker(ctx, fv, "w1") }, []string{"w2"}},
		{"own remove of nothing", func() error { return a.RemoveWorker(ctx, fv, "w1") }, []string{"w2"}},
		{"another's delete of the function", func() error { return b.DeleteFunction(ctx, fv) }, []string{}},
	} {
		require.NoError(t, step.change(), step.name)
		if i == 0 {
			require.Equal(t, step.want, names(a), "%s: seen at once", step.name)
		}
		seen(a, step.want...)
	}
	fromMemory(t, func(ctx context.Context) error { _, err := a.Workers(ctx, fv); return err })
}

// fromMemory shows read answers without a round trip to etcd: given a
// cancelled context, which fails any request to etcd, it still answers.
func fromMemory(t *testing.T, read func(context.Context) error) {
	t.Helper()
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	require.NoError(t, read(cancelled), "answered from memory")
}

// TestEtcd_EnginesMirror: RecentEngines answers from memory, sees this
// coordinator's own registration at once and another's registration and
// clean stop once their events arrive; Engines reads etcd itself.
func TestEtcd_EnginesMirror(t *testing.T) {
	e, err := etcd.StartEmbedded(etcd.EmbedConfig{Dir: t.TempDir(), Host: "127.0.0.1", Port: testutil.FreePort(t), PeerPort: testutil.FreePort(t)})
	require.NoError(t, err)
	t.Cleanup(e.Close)
	ctx := context.Background()
	open := func() *etcd.Coordinator {
		c, err := etcd.New(ctx, etcd.Config{Endpoints: []string{e.Endpoint}, DialTimeout: 5 * time.Second, LockTTL: 5 * time.Second})
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		return c
	}
	a, b := open(), open()
	recent := func() []string {
		es, err := a.RecentEngines(ctx)
		require.NoError(t, err)
		return es
	}
	seen := func(want ...string) {
		t.Helper()
		require.Eventually(t, func() bool { return slices.Equal(recent(), want) }, 10*time.Second, 5*time.Millisecond, "want %v", want)
	}

	require.NoError(t, a.Register(ctx, "a#1"))
	require.Equal(t, []string{"a#1"}, recent(), "own registration seen at once")
	require.NoError(t, b.Register(ctx, "b#1"))
	seen("a#1", "b#1")
	require.NoError(t, b.Close())
	seen("a#1")
	fromMemory(t, func(ctx context.Context) error { _, err := a.RecentEngines(ctx); return err })
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	_, err = a.Engines(cancelled)
	require.Error(t, err, "Engines reads etcd itself")
}
