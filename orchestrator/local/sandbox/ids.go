package sandbox

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// HostIDs hands out host uids from a range, one per worker, so that no two
// workers share a host identity (files, signals, kernel keyrings and their
// quotas, per-user limits), whichever engine started them: engines sharing
// one workers directory share the allocation, kept in it.
//
// Each uid in use is a symbolic link <dir>/<uid> naming the directory of the
// worker holding it; the uid is free again once that directory is gone (the
// engine removes a worker's directory after its last process died), so a
// crashed engine leaks nothing. Allocation takes an flock on <dir>/.lock:
// race-free across processes, and released by the kernel if one dies.
// Uids are handed out round-robin (<dir>/.next), so a freed uid is reused
// only after every other uid of the range has been.
type HostIDs struct {
	dir          string
	first, count int
}

// MaxHostID bounds the range: uids from 2^31 on are mishandled by too many
// programs (signed 32-bit values).
const MaxHostID = 1<<31 - 2

// NewHostIDs returns the allocator of [first, first+count) kept in dir,
// created if needed.
func NewHostIDs(dir string, first, count int) (*HostIDs, error) {
	if first <= 0 || count <= 0 || first > MaxHostID-count+1 {
		return nil, fmt.Errorf("sandbox: host uid range %d+%d: must lie within 1..%d", first, count, MaxHostID)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("sandbox: host uids: %w", err)
	}
	return &HostIDs{dir: dir, first: first, count: count}, nil
}

// Allocate reserves a uid for the worker whose directory is owner (an
// absolute path that exists until the worker's processes are gone).
func (h *HostIDs) Allocate(owner string) (int, error) {
	if !filepath.IsAbs(owner) {
		return 0, fmt.Errorf("sandbox: host uid owner %q: not an absolute path", owner)
	}
	unlock, err := h.lock()
	if err != nil {
		return 0, err
	}
	defer unlock()
	next := 0
	if data, err := os.ReadFile(filepath.Join(h.dir, ".next")); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && n >= 0 {
			next = n % h.count
		}
	}
	for i := range h.count {
		off := (next + i) % h.count
		uid := h.first + off
		entry := filepath.Join(h.dir, strconv.Itoa(uid))
		if holder, err := os.Readlink(entry); err == nil {
			if _, err := os.Lstat(holder); !errors.Is(err, fs.ErrNotExist) {
				continue // in use (or cannot tell: leave it)
			}
			if err := os.Remove(entry); err != nil {
				return 0, fmt.Errorf("sandbox: host uid %d: %w", uid, err)
			}
		} else if !errors.Is(err, fs.ErrNotExist) {
			return 0, fmt.Errorf("sandbox: host uid %d: %w", uid, err)
		}
		if err := os.Symlink(owner, entry); err != nil {
			return 0, fmt.Errorf("sandbox: host uid %d: %w", uid, err)
		}
		_ = os.WriteFile(filepath.Join(h.dir, ".next"), []byte(strconv.Itoa((off+1)%h.count)), 0o600)
		return uid, nil
	}
	return 0, fmt.Errorf("sandbox: all %d host uids from %d are in use by workers", h.count, h.first)
}

// Release frees uid at once if owner still holds it (otherwise it is freed
// when owner's directory is removed).
func (h *HostIDs) Release(uid int, owner string) error {
	unlock, err := h.lock()
	if err != nil {
		return err
	}
	defer unlock()
	entry := filepath.Join(h.dir, strconv.Itoa(uid))
	if holder, err := os.Readlink(entry); err == nil && holder == owner {
		return os.Remove(entry)
	}
	return nil
}

func (h *HostIDs) lock() (func(), error) {
	fd, err := unix.Open(filepath.Join(h.dir, ".lock"), unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sandbox: host uids lock: %w", err)
	}
	for {
		err = unix.Flock(fd, unix.LOCK_EX)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("sandbox: host uids lock: %w", err)
	}
	return func() { unix.Close(fd) }, nil
}
