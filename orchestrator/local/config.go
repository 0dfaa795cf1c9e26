package local

import (
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/qinling-go/qinling/orchestrator/local/preload"
	"github.com/qinling-go/qinling/pkg/archive"
)

// Config configures the local orchestrator.
type Config struct {
	// WorkersDir holds the workers' private directories; created 0700. It
	// must be short enough for a unix socket path inside it (about 70 bytes).
	WorkersDir string
	// PoolSize is the number of free, prewarmed workers kept per runtime.
	PoolSize int
	// Python3 is the interpreter that runs the python3 runtime
	// (default /usr/bin/python3).
	Python3 string
	// NodeJS is the executable that runs the nodejs runtime (default
	// /usr/bin/node). It is only needed once a nodejs runtime is created.
	NodeJS string
	// NodeMemoryOverhead is added to a function's memory_size for the
	// cgroup memory limit of a nodejs worker: Node.js itself needs more
	// than upstream's default memory_size before running any function,
	// while the function's JavaScript heap stays limited to memory_size
	// (default DefaultNodeMemoryOverhead; negative: none).
	NodeMemoryOverhead int64
	// RuntimesDir contains python3/server.py and nodejs/server.js.
	// Required unless Command is set.
	RuntimesDir string
	// MaxLogSize and MaxResultSize are passed to the runtime: bytes of an
	// execution's log kept, and the largest JSON result (default 1 MiB each).
	MaxLogSize, MaxResultSize int
	// Owner names this engine in worker records.
	Owner string
	// Logger receives the orchestrator's events and the workers' own output
	// (default slog.Default()).
	Logger *slog.Logger
	// Command, if set, replaces the real runtime: it returns the command that
	// serves the worker protocol on the listening unix socket it inherits as
	// descriptor 3 (bound at sock by the engine), reading packages from
	// pkgDir. Its arguments must include sock verbatim, since that is how
	// other instances recognise the worker's process. Tests use it to run the
	// test binary as a fake runtime.
	Command func(kind string, sock, pkgDir string) *exec.Cmd
	// RunGrace is how long past an invocation's timeout a worker may take to
	// answer before it is declared stuck and killed (default 3 s).
	RunGrace time.Duration
	// StartTimeout bounds a worker's start until it answers /ping (default 15 s).
	StartTimeout time.Duration
	// Limits bound package extraction (zero fields: archive defaults).
	Limits archive.Limits
	// PackageCacheSize bounds the disk space, in bytes, that all unpacked
	// packages together take in WorkersDir (pkgcache.go; default
	// DefaultPackageCacheSize).
	PackageCacheSize int64
	// PackageCacheProjectShare is the percent of PackageCacheSize one
	// project's unpacked packages may take together (default
	// DefaultPackageCacheProjectShare).
	PackageCacheProjectShare int
	// Sandbox confines workers; the zero value runs them unconfined.
	Sandbox Sandbox
	// CgroupParent is where workers' cgroups go: relative to the engine's
	// own cgroup, or absolute from each hierarchy's root (package cgroup).
	// Empty: no cgroups, hence no cpu, memory or pids limits.
	CgroupParent string
	// MaxPids bounds the processes and threads of one worker (<= 0: no limit).
	MaxPids int
	// Isolation chooses between warm reuse and strict isolation.
	Isolation Isolation
}

// Defaults for Config fields left zero, applied by setDefaults.
const (
	DefaultPython3      = "/usr/bin/python3"
	DefaultNodeJS       = "/usr/bin/node"
	DefaultLogSize      = 1 << 20
	DefaultResultSize   = 1 << 20
	DefaultRunGrace     = 3 * time.Second
	DefaultStartTimeout = 15 * time.Second
	// DefaultNodeMemoryOverhead is what a nodejs worker may use beyond its
	// function's memory_size (Config.NodeMemoryOverhead): Node.js holds about
	// 45 MiB of its own before running any function (its executable's pages,
	// V8's heaps and code), above upstream's default memory_size of 32 MiB,
	// which is the JavaScript heap the function gets. docs/isolation.md.
	DefaultNodeMemoryOverhead = 64 << 20
	DefaultSandboxUID         = 65534
	DefaultTmpSize            = 64 << 20
	DefaultHostUIDStart       = 0x70000000
	DefaultHostUIDCount       = 65536
	DefaultPreloadWindow      = 60 * time.Second
	DefaultPreloadInterval    = 5 * time.Second
	// DefaultPackageCacheSize holds four packages of the largest size
	// archive.DefaultLimits lets through.
	DefaultPackageCacheSize = 2 << 30
	// DefaultPackageCacheProjectShare lets one project hold half of it.
	DefaultPackageCacheProjectShare = 50
)

// maxUnixSocketPathLen bounds a worker's socket path: sun_path is 108 bytes
// including the NUL.
const maxUnixSocketPathLen = 107

// setDefaults fills the fields left zero with their defaults; a negative
// NodeMemoryOverhead means none. Every default is applied here, once.
func (c *Config) setDefaults() {
	if c.Python3 == "" {
		c.Python3 = DefaultPython3
	}
	if c.NodeJS == "" {
		c.NodeJS = DefaultNodeJS
	}
	switch {
	case c.NodeMemoryOverhead == 0:
		c.NodeMemoryOverhead = DefaultNodeMemoryOverhead
	case c.NodeMemoryOverhead < 0:
		c.NodeMemoryOverhead = 0
	}
	if c.MaxLogSize <= 0 {
		c.MaxLogSize = DefaultLogSize
	}
	if c.MaxResultSize <= 0 {
		c.MaxResultSize = DefaultResultSize
	}
	if c.RunGrace <= 0 {
		c.RunGrace = DefaultRunGrace
	}
	if c.StartTimeout <= 0 {
		c.StartTimeout = DefaultStartTimeout
	}
	if c.PackageCacheSize <= 0 {
		c.PackageCacheSize = DefaultPackageCacheSize
	}
	if c.PackageCacheProjectShare <= 0 || c.PackageCacheProjectShare > 100 {
		c.PackageCacheProjectShare = DefaultPackageCacheProjectShare
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	s := &c.Sandbox
	if s.UID == 0 {
		s.UID = DefaultSandboxUID
	}
	if s.GID == 0 {
		s.GID = DefaultSandboxUID
	}
	// Also without a sandbox: a strict worker's executions get a /tmp of
	// this size.
	if s.TmpSize <= 0 {
		s.TmpSize = DefaultTmpSize
	}
	if s.HostUIDStart == 0 {
		s.HostUIDStart = DefaultHostUIDStart
	}
	if s.HostUIDCount == 0 {
		s.HostUIDCount = DefaultHostUIDCount
	}
	p := &c.Isolation.Preload
	if p.Policy == nil {
		p.Policy = preload.Traffic{}
	}
	if p.Window <= 0 {
		p.Window = DefaultPreloadWindow
	}
	if p.Interval <= 0 {
		p.Interval = DefaultPreloadInterval
	}
}

// validate checks the settings that have no default. WorkersDir must be
// absolute already.
func (c *Config) validate() error {
	dir := c.WorkersDir
	if n := len(dir) + len("/python3-0123456789abcdef/") + len(socketName); n > maxUnixSocketPathLen {
		return fmt.Errorf("workers dir %s is too long for unix socket paths (%d bytes, limit %d); choose a shorter one", dir, n, maxUnixSocketPathLen)
	}
	if c.PoolSize < 0 {
		return fmt.Errorf("pool size %d must not be negative", c.PoolSize)
	}
	if iso := c.Isolation; iso.Spares < 0 || iso.Preload.Slots < 0 {
		return fmt.Errorf("strict spares %d and preload slots %d must not be negative", iso.Spares, iso.Preload.Slots)
	}
	if c.Command == nil {
		server := filepath.Join(c.RuntimesDir, KindPython3, serverFile(KindPython3))
		if _, err := os.Stat(server); err != nil {
			return fmt.Errorf("python3 runtime: %w", err)
		}
	}
	return nil
}

// Sandbox configures the confinement of workers (see package sandbox).
type Sandbox struct {
	// Enabled runs every worker in its own namespaces, on a read-only root
	// holding only the runtime and its package, as an unprivileged user.
	// New fails if that cannot be done here (for instance without root).
	Enabled bool
	// UID and GID the functions run as (default 65534, nobody); never 0.
	UID, GID int
	// NetworkRuntimes are runtime IDs or images whose workers share the
	// host's network (and see its resolv.conf, hosts and CA certificates);
	// other workers only have a loopback interface of their own.
	NetworkRuntimes []string
	// TmpSize is the size of each worker's private /tmp in bytes (default 64 MiB).
	TmpSize int64
	// ExtraPaths are further host paths shown read-only at the same place.
	ExtraPaths []string
	// HostUIDStart and HostUIDCount are the range of host uids workers
	// run as, one of its own each (sandbox.HostIDs; default
	// DefaultHostUIDStart and DefaultHostUIDCount).
	HostUIDStart, HostUIDCount int
}
