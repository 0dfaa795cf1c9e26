package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/qinling-go/qinling/orchestrator"
	"github.com/qinling-go/qinling/orchestrator/local/preload"
)

// ScaleUp takes count free workers of fn's runtime (starting more if the pool
// has too few), unpacks fn's package into each, and returns them. The pool
// is refilled in the background. On error no worker is left specialised.
func (o *Orchestrator) ScaleUp(ctx context.Context, fn orchestrator.Function, count int) ([]orchestrator.Worker, error) {
	switch {
	case count <= 0:
		return nil, fmt.Errorf("scale up function %s: count %d must be positive", fn.ID, count)
	case !validFunctionID(fn.ID):
		return nil, fmt.Errorf("scale up function %q: not a valid function id", fn.ID)
	case fn.Package.Open == nil:
		return nil, fmt.Errorf("scale up function %s: no package to deliver", fn.ID)
	}
	start := time.Now()
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return nil, fmt.Errorf("scale up function %s: %w", fn.ID, errClosed)
	}
	p := o.pools[fn.RuntimeID]
	if p == nil {
		o.mu.Unlock()
		return nil, fmt.Errorf("scale up function %s: pool %s: %w", fn.ID, fn.RuntimeID, orchestrator.ErrPoolNotFound)
	}
	taken := min(count, len(p.free))
	ws := slices.Clone(p.free[len(p.free)-taken:])
	p.free = p.free[:len(p.free)-taken]
	for _, w := range ws {
		o.reserveLocked(w, fn)
	}
	o.mu.Unlock()
	defer o.refill(fn.RuntimeID)

	ws, err := o.startExtra(ctx, p, fn, ws, count-taken)
	if err == nil {
		err = o.deliver(ctx, fn, ws)
	}
	if err == nil {
		err = o.specialise(ws, fn)
	}
	if err != nil {
		for _, w := range ws {
			o.stop(context.WithoutCancel(ctx), w)
		}
		return nil, fmt.Errorf("scale up function %s version %d: %w", fn.ID, fn.Version, err)
	}
	// A strict Python worker starts at the runtime level. A function the
	// plan has at another level (busy on other workers already, or a static
	// policy) gets it before its first call here.
	if level := o.pre.level(preload.Key{Function: fn.ID, Version: fn.Version}, fn.RuntimeID); level != preload.Runtime {
		for _, w := range ws {
			if !w.preloads() {
				continue
			}
			pctx, cancel := context.WithTimeout(ctx, preloadWait)
			o.applyLevel(pctx, w, level)
			cancel()
		}
	}
	out := make([]orchestrator.Worker, len(ws))
	for i, w := range ws {
		out[i] = w.public()
	}
	o.log.Debug("scaled up", "function_id", fn.ID, "version", fn.Version, "workers", count, "from_pool", taken, "elapsed", time.Since(start))
	return out, nil
}

// reserveLocked marks w as being specialised for fn; DeleteFunction already
// counts it as fn's.
func (o *Orchestrator) reserveLocked(w *worker, fn orchestrator.Function) {
	w.state = stateReserved
	w.fnID, w.version = fn.ID, fn.Version
	w.entry, w.timeout = fn.Entry, fn.Timeout
}

// startExtra starts n workers for a ScaleUp that the pool could not serve
// (a local machine can start processes on demand) and appends them to ws.
func (o *Orchestrator) startExtra(ctx context.Context, p *pool, fn orchestrator.Function, ws []*worker, n int) ([]*worker, error) {
	if n == 0 {
		return ws, nil
	}
	started := make([]*worker, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { started[i], errs[i] = o.startWorker(ctx, p) })
	}
	wg.Wait()
	o.mu.Lock()
	for _, w := range started {
		if w != nil {
			o.reserveLocked(w, fn)
			ws = append(ws, w)
		}
	}
	o.mu.Unlock()
	return ws, errors.Join(errs...)
}

// deliver gives every worker of ws fn's package: links, in its
// packages/<fn.ID>/, to the files of the one unpacked copy of fn's version
// on this machine (pkgcache.go), unpacked first if there is none. The
// shared inodes are safe: the files belong to the engine's user,
// sandboxed workers see them through a read-only mount as another user,
// and unsandboxed ones run as the engine's user anyway. All of fn's
// workers run the same code.
func (o *Orchestrator) deliver(ctx context.Context, fn orchestrator.Function, ws []*worker) error {
	key, err := o.pkgs.deliver(ctx, fn, ws)
	o.mu.Lock()
	for _, w := range ws {
		w.pkgKey = key
	}
	o.mu.Unlock()
	return err
}

// linkTree recreates the directory tree src at dst with hard links to its files.
func linkTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.Mkdir(target, 0o755)
		case d.Type().IsRegular():
			err := os.Link(path, target)
			if errors.Is(err, syscall.EXDEV) || errors.Is(err, syscall.EPERM) {
				return copyFile(path, target) // a file system without hard links
			}
			return err
		}
		return fmt.Errorf("unexpected file type %s at %s", d.Type(), rel)
	})
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	info, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, info.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		_ = out.Close()
		return err
	}
	return out.Close()
}

// specialise applies fn's limits to delivered workers and marks them as
// fn's, unless one was stopped meanwhile.
func (o *Orchestrator) specialise(ws []*worker, fn orchestrator.Function) error {
	for _, w := range ws {
		o.mu.Lock()
		change := w.limitChangesLocked(fn.CPU, fn.MemorySize)
		o.mu.Unlock()
		change.apply(w)
	}
	o.mu.Lock()
	for _, w := range ws {
		if w.killed || w.exited || w.fnID != fn.ID || w.version != fn.Version {
			o.mu.Unlock()
			return fmt.Errorf("worker %s: %w: stopped during scale-up", w.name, orchestrator.ErrWorkerNotFound)
		}
	}
	recs := make([]record, len(ws))
	for i, w := range ws {
		w.state = stateSpecialised
		recs[i] = w.record(o.cfg.Owner)
	}
	o.mu.Unlock()
	for i, w := range ws {
		if err := writeRecord(w.dir, recs[i]); err != nil {
			return err
		}
	}
	return nil
}

// validFunctionID reports whether id is safe as a directory name.
func validFunctionID(id string) bool {
	return id != "" && id != "." && id != ".." && filepath.Base(id) == id && len(id) <= 255
}
