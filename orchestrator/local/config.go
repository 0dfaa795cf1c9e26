package local

import (
	"log/slog"
	"os/exec"
	"time"

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
	// serves the worker protocol on the unix socket sock, reading packages
	// from pkgDir. Its arguments must include sock verbatim, since that is how
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

// Defaults for Config fields left zero.
const (
	DefaultPython3       = "/usr/bin/python3"
	DefaultNodeJS        = "/usr/bin/node"
	DefaultLogSize       = 1 << 20
	DefaultResultSize    = 1 << 20
	DefaultRunGrace      = 3 * time.Second
	DefaultStartTimeout  = 15 * time.Second
	readyPollInterval    = 3 * time.Millisecond
	deleteWait           = 5 * time.Second
	maxUnixSocketPathLen = 107 // sun_path is 108 bytes including the NUL
)

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
}

// Defaults of the sandbox.
const (
	DefaultSandboxUID = 65534
	DefaultTmpSize    = 64 << 20
)
