package local

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/qinling-go/qinling/orchestrator"
	"github.com/qinling-go/qinling/pkg/archive"
)

// The unpacked packages of an engine's machine (docs/isolation.md, "Filling
// the host's disk"): one copy per (function, version, package md5) in
// <WorkersDir>/.packages/<key>/, shared by every worker of that version,
// whichever ScaleUp started it and whichever engine sharing WorkersDir owns
// it, and all copies together bounded by Config.PackageCacheSize, those of
// one project by its share of it (Config.PackageCacheProjectShare).
//
// An entry holds the unpacked tree, its entry.json (whose package, how many
// bytes it takes on disk) and an empty file, ref. A worker using the entry
// holds a hard link to ref in its own directory and a tree of hard links to
// the package's files in its packages/ directory (which its sandbox binds
// read-only): so the entry's users are counted by the kernel (ref's link
// count less one), across engines and restarts, and a worker stops counting
// when its directory is removed, however it died. ref's mtime is the
// entry's last use. An entry is made in a temporary directory and renamed
// into place whole. Before anything is extracted there, room is made for
// the package's expansion (read from the zip's directory) and recorded in
// the temporary directory's entry.json: every engine sharing the directory
// counts that reservation until the entry is in place or the extraction
// failed (the directory is removed). Every change to the set of entries or their users
// happens under an flock on .packages/.lock (and the cache's mutex, since an
// flock does not exclude the goroutines of one process).
const (
	cacheDirName    = ".packages"
	cacheLockName   = ".lock"
	cacheTmpPrefix  = ".tmp-"  // an entry being unpacked
	cacheGonePrefix = ".gone-" // an entry being removed, or whose function version was deleted
	entryTreeName   = "tree"
	entryRefName    = "ref"
	entryMetaName   = "entry.json"
	// workerRefName is a worker's link to the ref of the entry it uses,
	// in its directory (outside what its sandbox sees).
	workerRefName = "package.ref"
)

// entryMeta is an entry's entry.json.
type entryMeta struct {
	Function string `json:"function"`
	Version  int    `json:"version"`
	MD5      string `json:"md5,omitempty"`
	Project  string `json:"project,omitempty"`
	// Size is what the unpacked tree takes on disk, in bytes; in a
	// temporary directory, what was reserved for it.
	Size int64 `json:"size"`
}

// packageCache is the set of unpacked packages below dir.
type packageCache struct {
	dir    string
	budget int64
	share  int64 // what one project's entries may take together
	limits archive.Limits
	log    *slog.Logger
	lock   *os.File // dir/.lock, flocked by every change

	mu        sync.Mutex
	unpacking map[string]*unpacking // by key: one extraction at a time per entry
	// tooBig remembers packages larger than the whole budget or a
	// project's share (by key: a key's package never changes), so that
	// each call of such a function does not unpack it again to fail the
	// same way. Its entries go with their function version (forget), and
	// it holds at most maxTooBig.
	tooBig map[string]tooBigMemo
	// removed are the paths of entries, by key, that forget set aside while
	// workers of this engine used them: the exit of the last one removes
	// them (release), with no scan of the cache.
	removed map[string][]string
}

// maxTooBig bounds packageCache.tooBig: beyond it, a package is simply
// opened again to find it does not fit.
const maxTooBig = 256

type tooBigMemo struct {
	function string
	version  int
	err      error
}

// unpacking is an extraction in flight; others wanting the same entry wait
// for done and share its outcome.
type unpacking struct {
	done chan struct{}
	err  error
}

// newPackageCache opens the cache in workersDir and removes what no worker
// uses (removeUnused): what a previous run of the engine left.
func newPackageCache(workersDir string, budget int64, sharePercent int, lim archive.Limits, log *slog.Logger) (*packageCache, error) {
	dir := filepath.Join(workersDir, cacheDirName)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("package cache: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, cacheLockName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("package cache: %w", err)
	}
	def := archive.DefaultLimits()
	if lim.MaxUncompressed <= 0 {
		lim.MaxUncompressed = def.MaxUncompressed
	}
	c := &packageCache{dir: dir, budget: budget, share: budget * int64(sharePercent) / 100, limits: lim, log: log, lock: lock,
		unpacking: map[string]*unpacking{}, tooBig: map[string]tooBigMemo{}, removed: map[string][]string{}}
	if err := c.removeUnused(); err != nil {
		_ = lock.Close()
		return nil, fmt.Errorf("package cache: %w", err)
	}
	return c, nil
}

// removeUnused removes the copies no worker uses, and temporary
// directories older than staleExtractAge (another engine sharing the
// directory may be unpacking into a younger one).
func (c *packageCache) removeUnused() error {
	return c.locked(func() error {
		removed := 0
		entries, err := os.ReadDir(c.dir)
		if err != nil {
			return err
		}
		now := time.Now()
		for _, e := range entries {
			if e.IsDir() && strings.HasPrefix(e.Name(), cacheTmpPrefix) && olderThan(e, now, staleExtractAge) {
				if os.RemoveAll(filepath.Join(c.dir, e.Name())) == nil {
					removed++
				}
			}
		}
		for _, e := range c.scanLocked() {
			if !e.reserved && e.users == 0 && c.removeLocked(e) == nil {
				removed++
			}
		}
		if removed > 0 {
			c.log.Info("removed unused unpacked packages", "dir", c.dir, "count", removed)
		}
		return nil
	})
}

// close removes the copies no worker uses any more (those of this
// engine's workers, all stopped by now) and releases the lock file.
func (c *packageCache) close() {
	if err := c.removeUnused(); err != nil {
		c.log.Warn("could not remove unused unpacked packages", "dir", c.dir, "error", err)
	}
	_ = c.lock.Close()
}

// locked runs f holding the cache's mutex and its flock.
func (c *packageCache) locked(f func() error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.flocked(f)
}

// flocked runs f holding the flock; the caller holds the mutex.
func (c *packageCache) flocked(f func() error) error {
	if err := flock(c.lock, unix.LOCK_EX); err != nil {
		return err
	}
	defer func() { _ = flock(c.lock, unix.LOCK_UN) }()
	return f()
}

func flock(f *os.File, how int) error {
	for {
		err := unix.Flock(int(f.Fd()), how)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// entryKey names fn's entry: a function id may be up to 255 bytes, too
// long to add to as a file name, hence a digest.
func entryKey(fn orchestrator.Function) string {
	sum := sha256.Sum256([]byte(fn.ID + "\x00" + strconv.Itoa(fn.Version) + "\x00" + fn.Package.MD5))
	return hex.EncodeToString(sum[:16])
}

// deliver gives every worker of ws fn's package in packages/<fn.ID>/,
// unpacking it first unless an entry exists, and returns the entry's key.
func (c *packageCache) deliver(ctx context.Context, fn orchestrator.Function, ws []*worker) (string, error) {
	key := entryKey(fn)
	refs := make([]string, len(ws))
	for i, w := range ws {
		refs[i] = filepath.Join(w.dir, workerRefName)
	}
	if err := c.claim(ctx, fn, key, refs); err != nil {
		return "", err
	}
	tree := filepath.Join(c.dir, key, entryTreeName)
	for _, w := range ws {
		// A worker's link to ref keeps the entry (and tree) in place.
		if err := linkTree(tree, filepath.Join(w.dir, packagesName, fn.ID)); err != nil {
			// The key still goes back: the workers hold the entry's ref,
			// and their release must drop it.
			return key, fmt.Errorf("deliver package to worker %s: %w", w.name, err)
		}
	}
	return key, nil
}

// claim links refs to key's entry, unpacking fn's package into it first if
// there is none. Concurrent claims of one missing entry unpack it once.
func (c *packageCache) claim(ctx context.Context, fn orchestrator.Function, key string, refs []string) error {
	for {
		c.mu.Lock()
		if memo, ok := c.tooBig[key]; ok {
			c.mu.Unlock()
			return memo.err
		}
		if u := c.unpacking[key]; u != nil {
			c.mu.Unlock()
			select {
			case <-u.done:
				// Its outcome is this claim's too, unless the claim that
				// unpacked was cancelled: then this one tries itself.
				if u.err != nil && !errors.Is(u.err, context.Canceled) && !errors.Is(u.err, context.DeadlineExceeded) {
					return u.err
				}
				continue
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		// Looked for and, if missing, marked as being unpacked under one
		// hold of the mutex: no other claim can start a second extraction.
		found := false
		err := c.flocked(func() (err error) {
			found, err = c.linkLocked(key, refs)
			return err
		})
		if err != nil || found {
			c.mu.Unlock()
			return err
		}
		u := &unpacking{done: make(chan struct{})}
		c.unpacking[key] = u
		c.mu.Unlock()
		u.err = c.unpack(ctx, fn, key, refs)
		c.mu.Lock()
		if tb := (*tooBigError)(nil); errors.As(u.err, &tb) {
			c.rememberTooBig(key, fn, u.err)
		}
		delete(c.unpacking, key)
		close(u.done)
		c.mu.Unlock()
		return u.err
	}
}

// linkLocked links every ref to key's entry's ref and marks the entry used
// now; false if there is no such entry.
func (c *packageCache) linkLocked(key string, refs []string) (bool, error) {
	ref := filepath.Join(c.dir, key, entryRefName)
	if _, err := os.Stat(ref); errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	for i, r := range refs {
		if err := os.Link(ref, r); err != nil {
			for _, done := range refs[:i] {
				_ = os.Remove(done)
			}
			return false, fmt.Errorf("deliver package: %w", err)
		}
	}
	now := time.Now()
	_ = os.Chtimes(ref, now, now)
	return true, nil
}

// unpack extracts fn's package into a new entry key, once room is made
// for its expansion, and links refs to it.
func (c *packageCache) unpack(ctx context.Context, fn orchestrator.Function, key string, refs []string) error {
	rc, err := fn.Package.Open(ctx)
	if err != nil {
		return fmt.Errorf("open package: %w", err)
	}
	tmp, err := os.MkdirTemp(c.dir, cacheTmpPrefix)
	if err != nil {
		_ = rc.Close()
		return fmt.Errorf("deliver package: %w", err)
	}
	defer os.RemoveAll(tmp) // the reservation goes with it; gone already once renamed into place
	tree := filepath.Join(tmp, entryTreeName)
	// Never more than the whole budget, whatever the per-package limit
	// (the reservation checks the project's share).
	lim := c.limits
	lim.MaxUncompressed = min(lim.MaxUncompressed, c.budget)
	meta := entryMeta{Function: fn.ID, Version: fn.Version, MD5: fn.Package.MD5, Project: fn.ProjectID}
	var refused error // the reservation's error, returned as it is
	reserve := func(exp archive.Expansion) error {
		meta.Size = reservation(exp)
		refused = c.fits(fn, meta.Size)
		if refused == nil {
			refused = c.locked(func() error {
				if err := c.makeRoomLocked(fn, meta.Size, tmp); err != nil {
					return err
				}
				return writeEntryMeta(tmp, meta)
			})
		}
		return refused
	}
	if f, ok := rc.(*os.File); ok {
		// Package storage on local disk hands out the file itself: read it
		// in place rather than spooling a copy.
		err = archive.ExtractReserving(f.Name(), tree, lim, reserve)
	} else {
		err = archive.ExtractReaderReserving(rc, tmp, tree, lim, reserve)
	}
	_ = rc.Close()
	if errors.Is(err, archive.ErrTooBig) && lim.MaxUncompressed == c.budget {
		return c.errTooBig(fn)
	}
	if err != nil && errors.Is(err, refused) {
		return err
	}
	if err != nil {
		return fmt.Errorf("deliver package: %w", err)
	}
	if err := os.WriteFile(filepath.Join(tmp, entryRefName), nil, 0o600); err != nil {
		return fmt.Errorf("deliver package: %w", err)
	}
	// The entry's size is all of it: its tree, its directories and files.
	if meta.Size, err = treeSize(tmp); err != nil {
		return fmt.Errorf("deliver package: %w", err)
	}
	if err := c.fits(fn, meta.Size); err != nil {
		return err
	}
	if err := writeEntryMeta(tmp, meta); err != nil { // as large: one block
		return err
	}
	return c.locked(func() error {
		if found, err := c.linkLocked(key, refs); err != nil || found {
			return err // another engine sharing the directory made it meanwhile
		}
		// Room was made for the reservation; the tree may take a little
		// more (or less) than it.
		if err := c.makeRoomLocked(fn, meta.Size, tmp); err != nil {
			return err
		}
		if err := os.Rename(tmp, filepath.Join(c.dir, key)); err != nil {
			return fmt.Errorf("deliver package: %w", err)
		}
		c.log.Debug("package unpacked", "function_id", fn.ID, "version", fn.Version, "project_id", fn.ProjectID, "bytes", meta.Size)
		_, err := c.linkLocked(key, refs)
		return err
	})
}

// blockSize is what reservation counts a file's or directory's rounding
// as: the file systems workers_dir lives on allocate 4 KiB blocks.
const blockSize = 4096

// reservation is what an entry of a package expanding to exp may take on
// disk: its files rounded up to whole blocks, its directories, and the
// entry's own (its directory, tree/, entry.json).
func reservation(exp archive.Expansion) int64 {
	return exp.Bytes + int64(exp.Files)*(blockSize-1) + int64(exp.Dirs+3)*blockSize
}

// fits fails with a tooBigError when an entry of size bytes of fn could
// never fit: larger than the budget or than fn's project's share of it.
func (c *packageCache) fits(fn orchestrator.Function, size int64) error {
	if size > c.budget {
		return c.errTooBig(fn)
	}
	if size > c.share {
		return &tooBigError{msg: fmt.Sprintf("the package of function %s version %d expands to more than the %d bytes one project's unpacked packages may take on this engine ([local_orchestrator] package_cache_project_share of package_cache_size)",
			fn.ID, fn.Version, c.share)}
	}
	return nil
}

// rememberTooBig records key's package as one that cannot fit; c.mu is
// held.
func (c *packageCache) rememberTooBig(key string, fn orchestrator.Function, err error) {
	if len(c.tooBig) >= maxTooBig {
		for k := range c.tooBig { // any one: a forgotten memo only costs a new attempt
			delete(c.tooBig, k)
			break
		}
	}
	c.tooBig[key] = tooBigMemo{function: fn.ID, version: fn.Version, err: err}
}

func writeEntryMeta(dir string, meta entryMeta) error {
	data, err := json.Marshal(meta)
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, entryMetaName), data, 0o600)
	}
	if err != nil {
		return fmt.Errorf("deliver package: %w", err)
	}
	return nil
}

// tooBigError is the error of a package larger than the whole budget.
type tooBigError struct{ msg string }

func (e *tooBigError) Error() string { return e.msg }

func (c *packageCache) errTooBig(fn orchestrator.Function) error {
	return &tooBigError{msg: fmt.Sprintf("the package of function %s version %d expands to more than the %d bytes all unpacked packages may take on this engine ([local_orchestrator] package_cache_size)",
		fn.ID, fn.Version, c.budget)}
}

// cacheEntry is an entry as scanLocked found it.
type cacheEntry struct {
	path string
	gone bool
	// reserved: a temporary directory holding a reservation (an
	// extraction in progress); neither claimable nor removable.
	reserved bool
	meta     entryMeta
	users    int
	lastUse  time.Time
}

// scanLocked lists the entries, removed ones too (they still take space),
// and the reservations of extractions in progress. A temporary directory
// older than staleExtractAge is an extraction that died with its engine:
// listed as removed, so that the eviction that meets it takes it away.
func (c *packageCache) scanLocked() []cacheEntry {
	dirents, err := os.ReadDir(c.dir)
	if err != nil {
		c.log.Warn("could not list unpacked packages", "dir", c.dir, "error", err)
		return nil
	}
	now := time.Now()
	var out []cacheEntry
	for _, d := range dirents {
		if !d.IsDir() {
			continue
		}
		e := cacheEntry{path: filepath.Join(c.dir, d.Name()), gone: strings.HasPrefix(d.Name(), cacheGonePrefix)}
		if strings.HasPrefix(d.Name(), cacheTmpPrefix) {
			if olderThan(d, now, staleExtractAge) {
				out = append(out, cacheEntry{path: e.path, gone: true})
				continue
			}
			if readEntryMeta(e.path, &e.meta) {
				e.reserved = true
				out = append(out, e)
			}
			continue
		}
		if !readEntryMeta(e.path, &e.meta) {
			e.gone = true // half removed: nobody can claim it
		}
		e.users, e.lastUse = entryUsers(e.path)
		out = append(out, e)
	}
	return out
}

// readEntryMeta reads the entry.json in dir into meta; false if there is
// none that parses.
func readEntryMeta(dir string, meta *entryMeta) bool {
	data, err := os.ReadFile(filepath.Join(dir, entryMetaName))
	return err == nil && json.Unmarshal(data, meta) == nil
}

// entryUsers is how many workers link the entry at dir (its ref's links
// but its own) and when it was last used; 0 if it has no ref.
func entryUsers(dir string) (int, time.Time) {
	fi, err := os.Stat(filepath.Join(dir, entryRefName))
	if err != nil {
		return 0, time.Time{}
	}
	return int(fi.Sys().(*syscall.Stat_t).Nlink) - 1, fi.ModTime()
}

// removeLocked removes an entry: renamed first, so that a removal cut short
// leaves a directory nobody claims and the next sweep finishes it.
func (c *packageCache) removeLocked(e cacheEntry) error {
	path := e.path
	if !e.gone {
		path = c.goneName(e.path)
		if err := os.Rename(e.path, path); err != nil {
			return err
		}
	}
	return os.RemoveAll(path)
}

// goneName is a new name for the entry at path, once removed; unique, as an
// entry of the same key may be made and removed again while the first is
// still used.
func (c *packageCache) goneName(path string) string {
	return filepath.Join(c.dir, cacheGonePrefix+filepath.Base(path)+"-"+randomHex(4))
}

// makeRoomLocked removes unused entries until need more bytes of fn fit
// within fn's project's share and within the budget, or fails saying which
// does not leave room. The project's own unused entries go first, oldest
// first, then (for the budget) anyone's: a project never evicts another's
// copies to exceed its share. Removed entries no worker uses any more go
// before any. The entry at except (the reservation being replaced) is not
// counted.
func (c *packageCache) makeRoomLocked(fn orchestrator.Function, need int64, except string) error {
	entries := slices.DeleteFunc(c.scanLocked(), func(e cacheEntry) bool { return e.path == except })
	var used, mine int64
	for _, e := range entries {
		used += e.meta.Size
		if e.meta.Project == fn.ProjectID {
			mine += e.meta.Size
		}
	}
	unused := slices.DeleteFunc(entries, func(e cacheEntry) bool { return e.reserved || e.users > 0 })
	slices.SortFunc(unused, func(a, b cacheEntry) int {
		if a.gone != b.gone {
			if a.gone {
				return -1
			}
			return 1
		}
		return a.lastUse.Compare(b.lastUse)
	})
	evict := func(e cacheEntry) bool {
		if err := c.removeLocked(e); err != nil {
			c.log.Warn("could not remove an unpacked package", "dir", e.path, "error", err)
			return false
		}
		if !e.gone {
			c.log.Info("unpacked package evicted", "function_id", e.meta.Function, "version", e.meta.Version, "project_id", e.meta.Project, "bytes", e.meta.Size)
		}
		used -= e.meta.Size
		if e.meta.Project == fn.ProjectID {
			mine -= e.meta.Size
		}
		return true
	}
	var left []cacheEntry
	for _, e := range unused {
		if mine+need <= c.share || e.meta.Project != fn.ProjectID && !e.gone || !evict(e) {
			left = append(left, e)
		}
	}
	if mine+need > c.share && c.share < c.budget { // else the budget's message says it
		return fmt.Errorf("deliver package of function %s version %d: the project's packages that running workers use take %d bytes, and %d more do not fit within its share of the package cache (%d bytes: [local_orchestrator] package_cache_project_share of package_cache_size)",
			fn.ID, fn.Version, mine, need, c.share)
	}
	for _, e := range left {
		if used+need <= c.budget {
			break
		}
		evict(e)
	}
	if used+need > c.budget {
		return fmt.Errorf("deliver package of function %s version %d: the package cache is full: the unpacked packages of running workers take %d bytes, and %d more do not fit within [local_orchestrator] package_cache_size (%d bytes)",
			fn.ID, fn.Version, used, need, c.budget)
	}
	return nil
}

// release notes that a worker stopped using key's entry (its directory is
// gone), which makes the entry's last use now, and removes the entries of
// key that forget set aside once no worker uses them. It looks at key's
// entries alone: a worker's exit costs the same however large the cache.
func (c *packageCache) release(key string) {
	err := c.locked(func() error {
		now := time.Now()
		_ = os.Chtimes(filepath.Join(c.dir, key, entryRefName), now, now)
		var kept []string
		for _, path := range c.removed[key] {
			if users, _ := entryUsers(path); users > 0 {
				kept = append(kept, path)
				continue
			}
			if err := os.RemoveAll(path); err != nil {
				c.log.Warn("could not remove an unpacked package", "dir", path, "error", err)
			}
		}
		if len(kept) == 0 {
			delete(c.removed, key)
		} else {
			c.removed[key] = kept
		}
		return nil
	})
	if err != nil {
		c.log.Warn("package cache", "error", err)
	}
}

// sweep removes the removed entries no worker uses any more, after workers
// of other instances were stopped (their exits call no release here).
func (c *packageCache) sweep() {
	if err := c.locked(func() error { c.sweepLocked(); return nil }); err != nil {
		c.log.Warn("package cache", "error", err)
	}
}

// forget removes the entries of a deleted function version: at once if no
// worker uses them, otherwise once the last one stopped (release, or for
// workers of other instances the next eviction or restart). Renamed aside
// at once, so a new version with the same number never gets the old
// package.
func (c *packageCache) forget(functionID string, version int) error {
	return c.locked(func() error {
		for key, memo := range c.tooBig {
			if memo.function == functionID && memo.version == version {
				delete(c.tooBig, key)
			}
		}
		var errs []error
		for _, e := range c.scanLocked() {
			if e.gone || e.reserved || e.meta.Function != functionID || e.meta.Version != version {
				continue
			}
			key, aside := filepath.Base(e.path), c.goneName(e.path)
			if err := os.Rename(e.path, aside); err != nil {
				errs = append(errs, err)
				continue
			}
			if e.users > 0 {
				c.removed[key] = append(c.removed[key], aside)
			}
		}
		c.sweepLocked()
		return errors.Join(errs...)
	})
}

// sweepLocked removes removed entries that no worker uses any more.
func (c *packageCache) sweepLocked() {
	for _, e := range c.scanLocked() {
		if e.gone && e.users <= 0 {
			if err := c.removeLocked(e); err != nil {
				c.log.Warn("could not remove an unpacked package", "dir", e.path, "error", err)
			}
		}
	}
}

// treeSize is what the files and directories below dir take on disk.
func treeSize(dir string) (int64, error) {
	var total int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		total += info.Sys().(*syscall.Stat_t).Blocks * 512
		return nil
	})
	return total, err
}
