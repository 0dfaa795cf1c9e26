package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/qinling-go/qinling/orchestrator"
)

// stoppedMarker, in a worker's directory, says another instance stopped it
// on purpose (its owner's reaper then logs no warning).
const stoppedMarker = "stopped"

// recordFile is the name of a worker's record inside its directory.
const recordFile = "worker.json"

// record is a worker's worker.json. It lets other Orchestrator instances
// sharing WorkersDir find, verify and stop the worker, and lets New tell a
// live worker's directory from a stale one.
type record struct {
	Name     string `json:"name"`
	Runtime  string `json:"runtime"`
	Kind     string `json:"kind"`
	Function string `json:"function"`
	Version  int    `json:"version"`
	PID      int    `json:"pid"`
	Owner    string `json:"owner"`
	Socket   string `json:"socket"`
	// Arg is the command-line argument that identifies the process (the
	// socket path as the worker sees it); empty in records of older
	// engines, which meant Socket.
	Arg     string    `json:"arg,omitempty"`
	Started time.Time `json:"started"`
}

// workerName matches the directory names this package creates; nothing else
// in WorkersDir is ever removed, in case it is shared with other data.
var workerName = regexp.MustCompile(`^[a-z0-9]+-[0-9a-f]{16}$`)

// extractPrefix starts the names of temporary package extraction directories.
const extractPrefix = ".extract-"

// deletePrefix names a worker directory another instance is removing: it is
// renamed first, so that the owner sees the directory gone at once and never
// a half-removed one (its stopped marker already unlinked).
const deletePrefix = ".deleted-"

// writeRecord replaces dir/worker.json atomically, so a reader never sees a
// half-written record.
func writeRecord(dir string, rec record) error {
	data, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("write %s record: %w", rec.Name, err)
	}
	tmp := filepath.Join(dir, recordFile+".tmp")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("write %s record: %w", rec.Name, err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, recordFile)); err != nil {
		return fmt.Errorf("write %s record: %w", rec.Name, err)
	}
	return nil
}

func readRecord(dir string) (record, error) {
	var rec record
	data, err := os.ReadFile(filepath.Join(dir, recordFile))
	if err != nil {
		return rec, err
	}
	if err := json.Unmarshal(data, &rec); err != nil {
		return rec, fmt.Errorf("read %s: %w", filepath.Join(dir, recordFile), err)
	}
	return rec, nil
}

// alive reports whether the record's process still runs and is the worker
// (its command line names the worker's socket), not a stranger that got the pid.
func (r record) alive() bool {
	if r.Arg != "" {
		return cmdlineContains(r.PID, r.Arg)
	}
	return cmdlineContains(r.PID, r.Socket)
}

// scanRecords returns the records of worker directories in dir.
func scanRecords(dir string) ([]record, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []record
	for _, e := range entries {
		if !e.IsDir() || !workerName.MatchString(e.Name()) {
			continue
		}
		rec, err := readRecord(filepath.Join(dir, e.Name()))
		if err != nil || rec.Name != e.Name() {
			continue // being started, or not ours to judge
		}
		out = append(out, rec)
	}
	return out, nil
}

// Ages after which leftovers without a live owner are removed by New. A
// worker directory gets its record right after the process starts, so one
// without a record for a minute belongs to a start that died half-way; an
// extraction directory lives as long as one package is being unpacked.
const (
	staleUnrecordedAge = time.Minute
	staleExtractAge    = time.Hour
)

// removeStale removes worker directories whose process is gone, and
// abandoned extraction directories. It returns how many it removed.
func removeStale(dir string, now time.Time) (int, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, fmt.Errorf("scan workers dir: %w", err)
	}
	removed := 0
	var errs []error
	for _, e := range entries {
		path := filepath.Join(dir, e.Name())
		if !e.IsDir() {
			continue
		}
		var stale bool
		switch {
		case len(e.Name()) > len(extractPrefix) && e.Name()[:len(extractPrefix)] == extractPrefix:
			stale = olderThan(e, now, staleExtractAge)
		case strings.HasPrefix(e.Name(), deletePrefix):
			stale = true // its worker was dead before it was renamed
		case workerName.MatchString(e.Name()):
			rec, err := readRecord(path)
			switch {
			case errors.Is(err, os.ErrNotExist):
				stale = olderThan(e, now, staleUnrecordedAge)
			case err != nil:
				stale = true // unreadable record: nobody can manage this worker
			default:
				stale = !rec.alive()
			}
		}
		if !stale {
			continue
		}
		if err := os.RemoveAll(path); err != nil {
			errs = append(errs, err)
			continue
		}
		removed++
	}
	return removed, errors.Join(errs...)
}

func olderThan(e os.DirEntry, now time.Time, age time.Duration) bool {
	info, err := e.Info()
	return err == nil && now.Sub(info.ModTime()) > age
}

// DeleteWorker stops a worker, whether this instance or another one sharing
// WorkersDir started it. Unknown names are not an error.
func (o *Orchestrator) DeleteWorker(ctx context.Context, w orchestrator.Worker) error {
	o.mu.Lock()
	wk := o.workers[w.Name]
	if wk != nil {
		o.killLocked(wk)
	}
	o.mu.Unlock()
	if wk != nil {
		waitDone(ctx, wk)
		return ctx.Err()
	}
	if !workerName.MatchString(w.Name) {
		return nil
	}
	rec, err := readRecord(filepath.Join(o.cfg.WorkersDir, w.Name))
	if err != nil {
		return nil // gone, or not a worker
	}
	return o.stopForeign(ctx, []record{rec})
}

// DeleteFunction stops every worker specialised for (functionID, version),
// including those of other instances sharing WorkersDir, and refills pools.
func (o *Orchestrator) DeleteFunction(ctx context.Context, functionID string, version int) error {
	o.mu.Lock()
	var victims []*worker
	for _, w := range o.workers {
		if (w.state == stateReserved || w.state == stateSpecialised) && w.fnID == functionID && w.version == version {
			o.killLocked(w)
			victims = append(victims, w)
		}
	}
	o.mu.Unlock()
	for _, w := range victims {
		waitDone(ctx, w)
	}

	recs, err := scanRecords(o.cfg.WorkersDir)
	if err != nil {
		return fmt.Errorf("delete function %s version %d: %w", functionID, version, err)
	}
	o.mu.Lock()
	foreign := slices.DeleteFunc(recs, func(r record) bool {
		_, ours := o.workers[r.Name]
		return ours || r.Function != functionID || r.Version != version
	})
	o.mu.Unlock()
	if len(victims)+len(foreign) > 0 {
		o.log.Info("function workers deleted", "function_id", functionID, "version", version, "workers", len(victims), "other_instances", len(foreign))
	}
	err = o.stopForeign(ctx, foreign)
	if ferr := o.pkgs.forget(functionID, version); ferr != nil {
		err = errors.Join(err, fmt.Errorf("delete function %s version %d: unpacked package: %w", functionID, version, ferr))
	}
	return err
}

// stopForeign kills workers started by another instance: after checking that
// the pid still runs the worker, it kills the process group, waits (bounded)
// for it to die and removes the directory. If the owning instance is alive,
// its reaper forgets the worker.
func (o *Orchestrator) stopForeign(ctx context.Context, recs []record) error {
	for _, rec := range recs {
		if rec.alive() {
			// Tells the owner's reaper the exit was asked for (it cannot
			// see our kill); best effort: a missing directory says the same.
			_ = os.WriteFile(filepath.Join(o.cfg.WorkersDir, rec.Name, stoppedMarker), nil, 0o600)
			killGroup(rec.PID)
		}
	}
	deadline := time.Now().Add(deleteWait)
	for _, rec := range recs {
		for rec.alive() && time.Now().Before(deadline) && ctx.Err() == nil {
			time.Sleep(5 * time.Millisecond)
		}
		if o.conf.cgroups != nil {
			if err := o.conf.cgroups.Remove(rec.Name); err != nil {
				o.log.Warn("could not remove worker cgroup", "worker", rec.Name, "error", err)
			}
		}
		dir, gone := filepath.Join(o.cfg.WorkersDir, rec.Name), filepath.Join(o.cfg.WorkersDir, deletePrefix+rec.Name)
		if err := os.Rename(dir, gone); err != nil {
			if errors.Is(err, fs.ErrNotExist) { // its owner removed it already
				continue
			}
			return fmt.Errorf("delete worker %s: %w", rec.Name, err)
		}
		if err := os.RemoveAll(gone); err != nil {
			return fmt.Errorf("delete worker %s: %w", rec.Name, err)
		}
	}
	if len(recs) > 0 {
		o.pkgs.sweep() // their packages may be unused now
	}
	return ctx.Err()
}
