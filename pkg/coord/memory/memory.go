// Package memory is an in-process coord.Coordinator for unit tests.
package memory

import (
	"context"
	"maps"
	"slices"
	"sort"
	"sync"

	"github.com/qinling-go/qinling/pkg/coord"
	"github.com/qinling-go/qinling/pkg/errdefs"
)

// Coordinator keeps everything in maps.
type Coordinator struct {
	mu      sync.Mutex
	seq     int
	workers map[coord.FunctionVersion]map[string]entry
	locks   coord.KeyedMutex
	engines map[string]bool
}

type entry struct {
	rec coord.WorkerRecord
	seq int
}

var _ coord.Coordinator = (*Coordinator)(nil)

// New returns an empty coordinator.
func New() *Coordinator {
	return &Coordinator{workers: map[coord.FunctionVersion]map[string]entry{}, engines: map[string]bool{}}
}

// Workers lists fv's workers in insertion order.
func (c *Coordinator) Workers(_ context.Context, fv coord.FunctionVersion) ([]coord.WorkerRecord, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	es := make([]entry, 0, len(c.workers[fv]))
	for _, e := range c.workers[fv] {
		es = append(es, e)
	}
	sort.Slice(es, func(i, j int) bool { return es[i].seq < es[j].seq })
	out := make([]coord.WorkerRecord, len(es))
	for i, e := range es {
		out[i] = e.rec
	}
	return out, nil
}

// AddWorker records w.
func (c *Coordinator) AddWorker(_ context.Context, fv coord.FunctionVersion, w coord.WorkerRecord) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.workers[fv] == nil {
		c.workers[fv] = map[string]entry{}
	}
	seq := c.seq
	if old, ok := c.workers[fv][w.Name]; ok {
		seq = old.seq // etcd keeps the create revision on overwrite
	} else {
		c.seq++
	}
	c.workers[fv][w.Name] = entry{rec: w, seq: seq}
	return nil
}

// RemoveWorker forgets one worker.
func (c *Coordinator) RemoveWorker(_ context.Context, fv coord.FunctionVersion, name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.workers[fv], name)
	if len(c.workers[fv]) == 0 {
		delete(c.workers, fv)
	}
	return nil
}

// DeleteFunction forgets all of fv's workers.
func (c *Coordinator) DeleteFunction(_ context.Context, fv coord.FunctionVersion) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.workers, fv)
	return nil
}

// Functions lists function versions with workers.
func (c *Coordinator) Functions(_ context.Context) ([]coord.FunctionVersion, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]coord.FunctionVersion, 0, len(c.workers))
	for fv := range c.workers {
		out = append(out, fv)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].FunctionID != out[j].FunctionID {
			return out[i].FunctionID < out[j].FunctionID
		}
		return out[i].Version < out[j].Version
	})
	return out, nil
}

// Lock takes the named lock, waiting until ctx ends.
func (c *Coordinator) Lock(ctx context.Context, name string) (func(), error) {
	unlock, err := c.locks.Lock(ctx, name)
	if err != nil {
		return nil, errdefs.Wrap(errdefs.KindConflict, err, "Etcd lock failed")
	}
	return unlock, nil
}

// Register records a live engine instance.
func (c *Coordinator) Register(_ context.Context, engine string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.engines[engine] = true
	return nil
}

// Engines lists the registered engine instances, sorted.
func (c *Coordinator) Engines(_ context.Context) ([]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Sorted(maps.Keys(c.engines)), nil
}

// RecentEngines is Engines: memory has no round trip to save.
func (c *Coordinator) RecentEngines(ctx context.Context) ([]string, error) { return c.Engines(ctx) }

// Expire forgets an engine's registration, as a lease that ran out does
// when an engine crashed.
func (c *Coordinator) Expire(engine string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.engines, engine)
}

// Close does nothing.
func (c *Coordinator) Close() error { return nil }
