package local

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
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
