package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/orchestrator"
	"github.com/qinling-go/qinling/orchestrator/fake"
	"github.com/qinling-go/qinling/pkg/coord"
	"github.com/qinling-go/qinling/pkg/coord/memory"
	"github.com/qinling-go/qinling/pkg/db"
	"github.com/qinling-go/qinling/pkg/engine"
	"github.com/qinling-go/qinling/pkg/rpc"
)

// namedFake is an engine-local fake whose worker names carry its engine's
// name, as the local orchestrator's are unique per engine (the fakes of two
// engines would otherwise both name their first worker alike, and its
// record would be overwritten).
type namedFake struct {
	localFake
	prefix string
}

func (n namedFake) ScaleUp(ctx context.Context, fn orchestrator.Function, count int) ([]orchestrator.Worker, error) {
	ws, err := n.localFake.ScaleUp(ctx, fn, count)
	for i := range ws {
		ws[i].Name = n.prefix + ws[i].Name
	}
	return ws, err
}

func (n namedFake) Run(ctx context.Context, w orchestrator.Worker, inv orchestrator.Invocation) (orchestrator.Result, error) {
	w.Name = strings.TrimPrefix(w.Name, n.prefix)
	return n.localFake.Run(ctx, w, inv)
}

// cluster is engines with engine-local orchestrators sharing the database
// and the worker records, and a transport's routing done by hand: a request
// arrives forwardable on the shared queue; a Forward sends it, no longer
// forwardable, to the named engine.
type cluster struct {
	h       *harness
	engines map[string]*engine.Engine
	orchs   map[string]localFake
	release chan struct{}
	// forwarded counts the requests passed on, by target engine.
	mu        sync.Mutex
	forwarded map[string]int
}

func newCluster(t *testing.T, names []string, live []string) *cluster {
	h := newHarness(t, engine.Options{})
	c := &cluster{h: h, engines: map[string]*engine.Engine{}, orchs: map[string]localFake{},
		release: make(chan struct{}), forwarded: map[string]int{}}
	for _, n := range names {
		o := localFake{fake.New(fake.Config{PoolSize: 3})}
		o.Handle("block.main", func(orchestrator.Invocation) orchestrator.Result {
			<-c.release
			return orchestrator.Result{Success: true, Output: json.RawMessage(`null`)}
		})
		c.orchs[n] = o
		c.engines[n] = engine.New(h.db, namedFake{o, n + "-"}, h.coord, nil, engine.Options{Name: n}, discard())
	}
	for _, n := range live {
		require.NoError(t, h.coord.Register(context.Background(), n+"#0000"))
	}
	return c
}

// send hands a to engine name as the shared queue would, following a
// Forward once.
func (c *cluster) send(t *testing.T, name string, a engine.ExecutionArgs) {
	ctx := context.Background()
	err := c.engines[name].CreateExecution(rpc.WithForwardable(ctx), a)
	var fw *rpc.Forward
	if errors.As(err, &fw) {
		c.mu.Lock()
		c.forwarded[fw.Engine]++
		c.mu.Unlock()
		err = c.engines[fw.Engine].CreateExecution(ctx, a)
	}
	require.NoError(t, err)
}

func (c *cluster) owners(t *testing.T, f *db.Function) map[string]int {
	ws, err := c.h.coord.Workers(context.Background(), coord.FunctionVersion{FunctionID: f.ID})
	require.NoError(t, err)
	got := map[string]int{}
	for _, w := range ws {
		got[w.Owner]++
	}
	return got
}

// TestEngine_RouteToWarmOwner: with engine-local workers, concurrent
// executions of one function spread over two engines start the workers the
// deployment's load needs (ceil(n / function_concurrency)), all on one
// engine: the engine that finds another one owning workers (on arrival, or
// under the function's lock while it queued) passes its executions on.
// When the owner is not alive, the receiving engine runs them itself.
func TestEngine_RouteToWarmOwner(t *testing.T) {
	for _, tc := range []struct {
		name        string
		live        []string
		first       []string // engine handed each execution of a first, concurrent wave
		then        []string // then, with the first wave's workers recorded
		wantWorkers int
		wantOwners  int
	}{
		{name: "three over two engines: one worker", live: []string{"e1", "e2"}, first: []string{"e1", "e2", "e1"}, wantWorkers: 1, wantOwners: 1},
		{name: "six over two engines: two workers", live: []string{"e1", "e2"}, first: []string{"e1", "e2", "e1", "e2", "e1", "e2"}, wantWorkers: 2, wantOwners: 1},
		{name: "a later one goes to the warm owner", live: []string{"e1", "e2"}, first: []string{"e1"}, then: []string{"e2", "e2"}, wantWorkers: 1, wantOwners: 1},
		{name: "a dead owner's function is served where it lands", live: []string{"e2"}, first: []string{"e1"}, then: []string{"e2"}, wantWorkers: 2, wantOwners: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, []string{"e1", "e2"}, tc.live)
			f := c.h.function(t, "block.main")
			var wg sync.WaitGroup
			wave := func(names []string) {
				for _, n := range names {
					a := c.h.asyncExecution(t, f, "x")
					wg.Add(1)
					go func() {
						defer wg.Done()
						c.send(t, n, a)
					}()
				}
			}
			ran := func() int {
				n := 0
				for _, o := range c.orchs {
					n += len(o.Calls().Run)
				}
				return n
			}
			wave(tc.first)
			require.Eventually(t, func() bool { return ran() == len(tc.first) }, 10*time.Second, 5*time.Millisecond,
				"the first wave runs at once")
			wave(tc.then)
			require.Eventually(t, func() bool { return ran() == len(tc.first)+len(tc.then) }, 10*time.Second, 5*time.Millisecond,
				"the second wave runs at once")
			owners := c.owners(t, f)
			total := 0
			for _, n := range owners {
				total += n
			}
			require.Equal(t, tc.wantWorkers, total, "workers: %v", owners)
			require.Len(t, owners, tc.wantOwners, "engines owning workers: %v", owners)
			close(c.release)
			wg.Wait()
		})
	}
}

// TestEngine_ForwardsBeforeReading: an engine handed an execution of a
// function whose workers another live engine owns passes it on before it
// reads anything of it from the database (the owner reads it itself). The
// receiving engine here has a database without the execution: had it read
// first, it would have dropped the request as "not running any more".
func TestEngine_ForwardsBeforeReading(t *testing.T) {
	c := newCluster(t, []string{"e1"}, []string{"e1", "e2"})
	f := c.h.function(t, "block.main")
	first := c.h.asyncExecution(t, f, "x")
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.send(t, "e1", first)
	}()
	defer func() { close(c.release); <-done }()
	require.Eventually(t, func() bool { return len(c.orchs["e1"].Calls().Run) == 1 }, 10*time.Second, 5*time.Millisecond,
		"e1 runs the first execution on a worker of its own")

	elsewhere := newHarness(t, engine.Options{})
	e2 := engine.New(elsewhere.db, namedFake{localFake{fake.New(fake.Config{PoolSize: 3})}, "e2-"}, c.h.coord, nil,
		engine.Options{Name: "e2"}, discard())
	err := e2.CreateExecution(rpc.WithForwardable(context.Background()), c.h.asyncExecution(t, f, "y"))
	var fw *rpc.Forward
	require.ErrorAs(t, err, &fw, "passed on without reading the execution")
	require.Equal(t, "e1", fw.Engine)
}

// TestOwner: the routing decision, shared by an engine on arrival and by
// qinling-api before sending (self ""): the live owner of the most workers,
// never the deciding engine's own, "" when none may take it.
func TestOwner(t *testing.T) {
	ws := func(owners ...string) []coord.WorkerRecord {
		out := make([]coord.WorkerRecord, len(owners))
		for i, o := range owners {
			out[i] = coord.WorkerRecord{Name: "w" + string(rune('a'+i)), Owner: o}
		}
		return out
	}
	for _, tc := range []struct {
		name      string
		self      string
		workers   []coord.WorkerRecord
		instances []string
		want      string
	}{
		{name: "no workers", self: "e1", instances: []string{"e1#1", "e2#1"}},
		{name: "api: no workers", instances: []string{"e1#1"}},
		{name: "another live engine owns it", self: "e1", workers: ws("e2"), instances: []string{"e1#1", "e2#1"}, want: "e2"},
		{name: "api: the live owner", workers: ws("e2"), instances: []string{"e1#1", "e2#1"}, want: "e2"},
		{name: "this engine owns one: it runs here", self: "e1", workers: ws("e2", "e1", "e2"), instances: []string{"e1#1", "e2#1"}},
		{name: "api: the owner of the most", workers: ws("e1", "e2", "e2"), instances: []string{"e1#1", "e2#1"}, want: "e2"},
		{name: "api: a tie goes to the smallest name", workers: ws("e2", "e1"), instances: []string{"e1#1", "e2#1"}, want: "e1"},
		{name: "api: a dead owner is skipped", workers: ws("e1", "e2", "e2"), instances: []string{"e1#1"}, want: "e1"},
		{name: "api: no owner alive", workers: ws("e2"), instances: []string{"e1#1"}},
		{name: "api: records without an owner (older engines)", workers: ws("", ""), instances: []string{"e1#1"}},
		{name: "api: instance names without a suffix", workers: ws("e2"), instances: []string{"e2"}, want: "e2"},
		{name: "api: no live engines known", workers: ws("e2")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, engine.Owner(tc.self, tc.workers, tc.instances))
		})
	}
}

// callRecorder is an rpc.Client that can address one engine, and records
// where each call went.
type callRecorder struct {
	mu    sync.Mutex
	calls []string // "" for the shared queue, else the engine
}

func (r *callRecorder) Call(context.Context, string, any, any) error { return r.record("") }
func (r *callRecorder) Cast(context.Context, string, any) error      { return r.record("") }
func (r *callRecorder) CallEngine(_ context.Context, engine, _ string, _, _ any) error {
	return r.record(engine)
}

func (r *callRecorder) record(to string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, to)
	return nil
}

// sharedOnly is an rpc.Client that cannot address one engine (inproc, or
// an older transport).
type sharedOnly struct{ r *callRecorder }

func (s sharedOnly) Call(ctx context.Context, m string, a, b any) error {
	return s.r.Call(ctx, m, a, b)
}
func (s sharedOnly) Cast(ctx context.Context, m string, a any) error { return s.r.Cast(ctx, m, a) }

// TestClient_SyncCallGoesToOwner: qinling-api sends a sync execution
// straight to the queue of the live engine owning its function's warm
// workers, and everything else to the shared queue: async executions,
// functions without a live owner, a client without routing, a transport
// that cannot address one engine.
func TestClient_SyncCallGoesToOwner(t *testing.T) {
	fv := coord.FunctionVersion{FunctionID: "f1"}
	for _, tc := range []struct {
		name     string
		owners   []string // the function's workers' owners
		live     []string
		sync     bool
		noRoute  bool // Client.Owners unset
		noEngine bool // transport without CallEngine
		want     string
	}{
		{name: "sync, warm owner alive", owners: []string{"e2"}, live: []string{"e1", "e2"}, sync: true, want: "e2"},
		{name: "sync, owner of the most workers", owners: []string{"e1", "e2", "e2"}, live: []string{"e1", "e2"}, sync: true, want: "e2"},
		{name: "sync, no worker yet", live: []string{"e1", "e2"}, sync: true},
		{name: "sync, owner dead", owners: []string{"e2"}, live: []string{"e1"}, sync: true},
		{name: "async goes to the shared queue", owners: []string{"e2"}, live: []string{"e2"}},
		{name: "routing off (shared workers)", owners: []string{"e2"}, live: []string{"e2"}, sync: true, noRoute: true},
		{name: "transport cannot address an engine", owners: []string{"e2"}, live: []string{"e2"}, sync: true, noEngine: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			co := memory.New()
			for i, o := range tc.owners {
				require.NoError(t, co.AddWorker(ctx, fv, coord.WorkerRecord{Name: fmt.Sprintf("w%d", i), Owner: o}))
			}
			for _, n := range tc.live {
				require.NoError(t, co.Register(ctx, n+"#0001"))
			}
			rec := &callRecorder{}
			c := engine.Client{RPC: rec, Owners: co}
			if tc.noRoute {
				c.Owners = nil
			}
			if tc.noEngine {
				c.RPC = sharedOnly{rec}
			}
			_, err := c.CreateExecution(ctx, engine.ExecutionArgs{ExecutionID: "x", FunctionID: fv.FunctionID}, tc.sync)
			require.NoError(t, err)
			require.Equal(t, []string{tc.want}, rec.calls)
		})
	}
}
