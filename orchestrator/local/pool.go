package local

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/qinling-go/qinling/orchestrator"
)

// pool is a runtime's set of free workers.
type pool struct {
	rt       orchestrator.Runtime
	kind     string
	strict   bool // its workers use strict isolation
	free     []*worker
	starting int // workers being started for the free list
}

// CreatePool starts PoolSize free workers for rt in parallel and returns once
// they all answer /ping. If one fails the pool is removed again and the error
// carries the worker's output. Creating an existing pool is a no-op.
func (o *Orchestrator) CreatePool(ctx context.Context, rt orchestrator.Runtime) error {
	kind, err := RuntimeKind(rt.Image)
	if err == nil {
		err = o.checkIsolation(rt, kind)
	}
	if err == nil {
		err = o.checkRuntime(kind)
	}
	if err != nil {
		return fmt.Errorf("create pool %s: %w", rt.ID, err)
	}
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return fmt.Errorf("create pool %s: %w", rt.ID, errClosed)
	}
	if _, ok := o.pools[rt.ID]; ok {
		o.mu.Unlock()
		o.refill(rt.ID)
		return nil
	}
	p := &pool{rt: rt, kind: kind, strict: o.strict(rt), starting: o.cfg.PoolSize}
	o.pools[rt.ID] = p
	o.mu.Unlock()

	start := time.Now()
	errs := make([]error, o.cfg.PoolSize)
	var wg sync.WaitGroup
	for i := range errs {
		wg.Go(func() { errs[i] = o.startFree(ctx, p) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		_ = o.DeletePool(context.WithoutCancel(ctx), rt.ID)
		return fmt.Errorf("create pool %s: %w", rt.ID, err)
	}
	o.log.Info("pool ready", "runtime_id", rt.ID, "image", rt.Image, "workers", o.cfg.PoolSize, "elapsed", time.Since(start))
	return nil
}

// errPoolDeleted: the pool a worker was started for is gone.
var errPoolDeleted = errors.New("pool deleted")

// startFree starts one worker for p's free list; p.starting already counts it.
func (o *Orchestrator) startFree(ctx context.Context, p *pool) error {
	w, err := o.startWorker(ctx, p)
	o.mu.Lock()
	defer o.mu.Unlock()
	p.starting--
	if o.pools[p.rt.ID] != p {
		// The pool was deleted (or the orchestrator closed) while the worker
		// started. DeletePool kills starting workers too, so a start that
		// failed here failed for that reason, whatever it reported.
		if w != nil {
			o.killLocked(w)
		}
		if err != nil {
			return fmt.Errorf("start worker for pool %s: %w (%v)", p.rt.ID, errPoolDeleted, err)
		}
		return fmt.Errorf("start worker for pool %s: %w", p.rt.ID, errPoolDeleted)
	}
	if err != nil {
		return err
	}
	if o.closed || w.killed || w.exited {
		o.killLocked(w)
		return fmt.Errorf("start worker for pool %s: worker %s stopped as it became ready", p.rt.ID, w.name)
	}
	w.state = stateFree
	p.free = append(p.free, w)
	return nil
}

// refill starts, in the background, the workers p needs to have PoolSize free.
func (o *Orchestrator) refill(runtimeID string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	p := o.pools[runtimeID]
	if p == nil || o.closed {
		return
	}
	n := o.cfg.PoolSize - len(p.free) - p.starting
	if n <= 0 {
		return
	}
	p.starting += n
	o.wg.Add(n)
	for range n {
		go func() {
			defer o.wg.Done()
			err := o.startFree(o.life, p)
			switch {
			case err == nil, errors.Is(err, errClosed), o.life.Err() != nil:
			case errors.Is(err, errPoolDeleted):
				// A runtime deleted while its pool refills: expected.
				o.log.Debug("pool refill stopped: the pool was deleted", "runtime_id", runtimeID, "error", err)
			default:
				o.log.Warn("could not refill pool", "runtime_id", runtimeID, "error", err)
			}
		}()
	}
}

// DeletePool stops every worker of the runtime, free or specialised. An
// unknown runtime is not an error.
func (o *Orchestrator) DeletePool(ctx context.Context, runtimeID string) error {
	o.mu.Lock()
	delete(o.pools, runtimeID)
	var victims []*worker
	for _, w := range o.workers {
		if w.runtimeID == runtimeID {
			o.killLocked(w)
			victims = append(victims, w)
		}
	}
	o.mu.Unlock()
	for _, w := range victims {
		waitDone(ctx, w)
	}
	if len(victims) > 0 {
		o.log.Info("pool deleted", "runtime_id", runtimeID, "workers", len(victims))
	}
	return ctx.Err()
}

// Pool reports the runtime's workers: Total counts free and specialised
// ones, Available the free ones.
func (o *Orchestrator) Pool(_ context.Context, runtimeID string) (orchestrator.Capacity, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	p := o.pools[runtimeID]
	if p == nil {
		return orchestrator.Capacity{}, fmt.Errorf("pool %s: %w", runtimeID, orchestrator.ErrPoolNotFound)
	}
	c := orchestrator.Capacity{Available: len(p.free)}
	for _, w := range o.workers {
		if w.runtimeID == runtimeID && w.state != stateStarting && !w.killed && !w.exited {
			c.Total++
		}
	}
	return c, nil
}
