package local

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/qinling-go/qinling/orchestrator"
	"github.com/qinling-go/qinling/orchestrator/local/cgroup"
	"github.com/qinling-go/qinling/orchestrator/local/sandbox"
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
	// HostUIDStart and HostUIDCount are the range of host uids workers
	// run as, one of its own each (sandbox.HostIDs; default
	// DefaultHostUIDStart and DefaultHostUIDCount).
	HostUIDStart, HostUIDCount int
}

// Defaults of the sandbox.
const (
	DefaultSandboxUID   = 65534
	DefaultTmpSize      = 64 << 20
	DefaultHostUIDStart = 0x70000000
	DefaultHostUIDCount = 65536
	hostIDsDir          = ".hostuids" // in WorkersDir, shared by the engines using it
)

// Where things are inside a sandbox. The package directory is upstream's.
const (
	sandboxPackages = "/var/qinling/packages"
	sandboxRuntime  = "/var/qinling/runtime"
	sandboxRun      = "/var/qinling/run" // + /<worker name>, holding the socket
	sandboxExecCPU  = "/var/qinling/cgroup/exec"
	sandboxHostname = "qinling"
)

// Names inside a worker directory used by sandboxed workers.
const (
	runName  = "run"  // socket directory, shared with the sandbox
	rootName = "root" // where the sandbox's root is mounted, in its namespace only
)

// rlimits of every worker, as upstream's runtime set them for a function
// (NOFILE 1024, FSIZE 500 MiB), plus no core dumps: a core dump handler on
// the host must not receive a function's memory. Upstream's NPROC 128 is left
// out: it counts every process of the uid on the whole machine, so one
// function's fork bomb would starve all others; the pids cgroup bounds each
// worker instead.
var workerRlimits = []sandbox.Rlimit{
	{Resource: unix.RLIMIT_NOFILE, Value: 1024},
	{Resource: unix.RLIMIT_FSIZE, Value: 524288000},
	{Resource: unix.RLIMIT_CORE, Value: 0},
}

// networkPaths are what a worker with network access sees of /etc and of
// the CA certificates, when they exist.
var networkPaths = []string{
	"/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf",
	"/etc/ssl/certs", "/usr/share/ca-certificates",
	"/usr/lib/ssl/cert.pem", "/usr/lib/ssl/certs", "/usr/lib/ssl/openssl.cnf",
}

// Messages of executions that hit a limit. They start with upstream's
// message, which clients and tests may look for.
const (
	msgResources = "Function execution failed because of too much resource consumption"
	msgMemory    = msgResources + ": it exceeded its memory limit of %d bytes."
	msgPids      = msgResources + ": it reached its limit of %d processes and threads."
)

// confinement is the Orchestrator's sandbox and cgroup state.
type confinement struct {
	cfg     Sandbox
	cgroups *cgroup.Manager // nil: no cgroups
	// pythonPaths are the host paths the python3 runtime needs besides its
	// executable (stdlib, site-packages, ...), found once by asking it.
	pythonPaths []string

	mu     sync.Mutex
	mounts map[string][]sandbox.Mount // by executable and network access

	hostIDs *sandbox.HostIDs // a host uid per sandboxed worker

	splitOnce   sync.Once // logs that strict workers cannot have a cpu group for executions
	confineOnce sync.Once // logs that strict Node.js executions cannot be confined
}

// newConfinement checks the sandbox settings and that sandboxes work here,
// and sets up cgroups.
func newConfinement(cfg *Config) (*confinement, error) {
	c := &confinement{cfg: cfg.Sandbox, mounts: map[string][]sandbox.Mount{}}
	if cfg.CgroupParent != "" {
		// One subtree per workers directory: engines sharing it manage the
		// same workers, others never touch each other's groups.
		sum := sha256.Sum256([]byte(cfg.WorkersDir))
		c.cgroups = cgroup.New(cgroup.Options{
			Parent: filepath.Join(cfg.CgroupParent, hex.EncodeToString(sum[:6])),
			Logger: cfg.Logger.With("orchestrator", "local"),
		})
	}
	s := &c.cfg
	if !s.Enabled {
		return c, nil
	}
	if s.UID == 0 {
		s.UID = DefaultSandboxUID
	}
	if s.GID == 0 {
		s.GID = DefaultSandboxUID
	}
	if s.UID < 0 || s.GID < 0 {
		return nil, fmt.Errorf("sandbox uid %d and gid %d must not be negative", s.UID, s.GID)
	}
	if s.TmpSize <= 0 {
		s.TmpSize = DefaultTmpSize
	}
	s.HostUIDStart = cmp.Or(s.HostUIDStart, DefaultHostUIDStart)
	s.HostUIDCount = cmp.Or(s.HostUIDCount, DefaultHostUIDCount)
	ids, err := sandbox.NewHostIDs(filepath.Join(cfg.WorkersDir, hostIDsDir), s.HostUIDStart, s.HostUIDCount)
	if err != nil {
		return nil, err
	}
	c.hostIDs = ids
	for _, p := range s.ExtraPaths {
		if _, err := os.Stat(p); err != nil || !filepath.IsAbs(p) {
			return nil, fmt.Errorf("sandbox extra path %q: must be an existing absolute path (%v)", p, err)
		}
	}
	if err := sandbox.Check(cfg.WorkersDir, s.UID, s.GID); err != nil {
		return nil, fmt.Errorf("sandbox is enabled but workers cannot be sandboxed here: %w; "+
			"run the engine as root on Linux with namespaces available, or set [local_orchestrator] sandbox = false "+
			"to run functions unconfined", err)
	}
	if cfg.Command == nil {
		paths, err := pythonPaths(cfg.Python3)
		if err != nil {
			return nil, err
		}
		c.pythonPaths = paths
	}
	return c, nil
}

// pythonProbe prints what the interpreter reads at startup: its module
// search path, the time zone database of the zoneinfo module, and the
// sitecustomize module site imports (Debian's is a link into /etc).
const pythonProbe = `import json, sys, sysconfig, importlib.util
spec = importlib.util.find_spec("sitecustomize")
print(json.dumps({"path": sys.path, "tz": (sysconfig.get_config_var("TZPATH") or "").split(":"),
                  "site": spec.origin if spec and spec.origin else ""}))`

// pythonPaths asks the interpreter which host paths it needs.
func pythonPaths(python string) ([]string, error) {
	out, err := exec.Command(python, "-I", "-c", pythonProbe).Output()
	if err != nil {
		return nil, fmt.Errorf("sandbox: ask %s for its paths: %w", python, err)
	}
	var got struct {
		Path []string `json:"path"`
		TZ   []string `json:"tz"`
		Site string   `json:"site"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		return nil, fmt.Errorf("sandbox: ask %s for its paths: %w", python, err)
	}
	var paths []string
	for _, p := range append(append(got.Path, got.TZ...), got.Site) {
		if filepath.IsAbs(p) {
			paths = append(paths, p)
		}
	}
	// A virtualenv's interpreter finds its prefix through pyvenv.cfg.
	for _, cfg := range []string{filepath.Join(filepath.Dir(python), "pyvenv.cfg"), filepath.Join(filepath.Dir(filepath.Dir(python)), "pyvenv.cfg")} {
		if _, err := os.Stat(cfg); err == nil {
			paths = append(paths, cfg)
		}
	}
	return paths, nil
}

// runtimeMounts returns the read-only mounts showing the executable exe and
// what it needs: its ELF interpreter and the directory of the shared
// libraries, the python3 runtime's paths when exe is the configured
// interpreter, the operator's extra paths, and with network access the
// resolver configuration and CA certificates. Computed once per key.
func (o *Orchestrator) runtimeMounts(exe string, network bool) ([]sandbox.Mount, error) {
	c := o.conf
	key := exe + "\x00" + strconv.FormatBool(network)
	c.mu.Lock()
	defer c.mu.Unlock()
	if ms, ok := c.mounts[key]; ok {
		return ms, nil
	}
	var l sandbox.Layout
	if err := l.Expose(exe); err != nil {
		return nil, err
	}
	real, err := filepath.EvalSymlinks(exe)
	if err != nil {
		return nil, err
	}
	optional := []string{}
	if interp, err := elfInterpreter(real); err != nil {
		return nil, fmt.Errorf("sandbox: read %s: %w", real, err)
	} else if interp != "" {
		optional = append(optional, interp)
		if loader, err := filepath.EvalSymlinks(interp); err == nil {
			optional = append(optional, filepath.Dir(loader)) // /usr/lib/x86_64-linux-gnu
		}
	}
	switch exe {
	case o.cfg.Python3:
		optional = append(optional, c.pythonPaths...)
	case o.cfg.NodeJS:
		optional = append(optional, nodePaths...)
	}
	if network {
		optional = append(optional, networkPaths...)
	}
	for _, p := range optional {
		if err := l.Expose(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	for _, p := range c.cfg.ExtraPaths {
		if err := l.Expose(p); err != nil {
			return nil, err
		}
	}
	// /proc, /dev and /tmp first: a runtime path below /tmp stays visible.
	ms := append(sandbox.SystemMounts(c.cfg.TmpSize, "/tmp"), l.Mounts()...)
	c.mounts[key] = ms
	return ms, nil
}

// elfInterpreter returns the program interpreter (dynamic loader) of an ELF
// executable, or "" for a static one.
func elfInterpreter(path string) (string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			b := make([]byte, p.Filesz)
			if _, err := p.ReadAt(b, 0); err != nil {
				return "", err
			}
			return string(bytes.TrimRight(b, "\x00")), nil
		}
	}
	return "", nil
}

// networkAllowed reports whether rt's workers share the host's network.
func (o *Orchestrator) networkAllowed(rt orchestrator.Runtime) bool {
	for _, r := range o.conf.cfg.NetworkRuntimes {
		if r != "" && (r == rt.ID || r == rt.Image) {
			return true
		}
	}
	return false
}

// launch is how one worker is started.
type launch struct {
	cmd  *exec.Cmd
	arg  string // command-line argument identifying the worker's process
	addr string // socket path on the host
}

// prepare creates the worker's directories and cgroup and returns the
// command that starts it, confined as configured.
func (o *Orchestrator) prepare(name, dir string, p *pool) (launch, *cgroup.Group, error) {
	pkgDir := filepath.Join(dir, packagesName)
	sandboxed := o.conf.cfg.Enabled
	pkgMode := os.FileMode(0o700)
	if sandboxed {
		pkgMode = 0o755 // read by the sandbox's uid, through a read-only bind
	}
	if err := os.Mkdir(pkgDir, pkgMode); err != nil {
		return launch{}, nil, err
	}
	if err := os.Chmod(pkgDir, pkgMode); err != nil { // whatever the umask
		return launch{}, nil, err
	}
	var cg *cgroup.Group
	var procs []string
	if o.conf.cgroups != nil {
		cg = o.conf.cgroups.Create(name)
		cg.SetPids(o.cfg.MaxPids)
		procs = cg.ProcsFiles()
	}
	spec := sandbox.Spec{Cgroups: procs, Rlimits: workerRlimits}
	// A sandboxed worker's host identity, its own (freed with dir).
	owner, group := os.Getuid(), os.Getgid()
	if sandboxed {
		var err error
		if owner, err = o.conf.hostIDs.Allocate(dir); err != nil {
			return launch{}, cg, err
		}
		group = owner
	}
	execCPU := o.splitCPU(p, cg, owner, group) // strict: the cpu group of execution processes
	if p.strict && cg != nil {
		cg.OOMKillsOne() // an execution process (which asks to be first) rather than the worker
	}
	if !sandboxed {
		sock := filepath.Join(dir, socketName)
		cpuProcs := ""
		if execCPU != "" {
			cpuProcs = filepath.Join(execCPU, "cgroup.procs")
		}
		argv, env := o.runtimeCommand(p, sock, pkgDir, filepath.Join(o.cfg.RuntimesDir, p.kind, serverFile(p.kind)), dir, cpuProcs)
		spec.Env = env
		cmd, err := sandbox.Command(spec, argv)
		if err != nil {
			return launch{}, cg, err
		}
		cmd.Dir = dir
		return launch{cmd: cmd, arg: sock, addr: sock}, cg, nil
	}

	s := o.conf.cfg
	runDir, root := filepath.Join(dir, runName), filepath.Join(dir, rootName)
	for _, d := range []string{runDir, root} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return launch{}, cg, err
		}
	}
	if err := os.Chown(runDir, owner, group); err != nil { // the runtime creates its socket there
		return launch{}, cg, err
	}
	inRun := sandboxRun + "/" + name
	sock := inRun + "/" + socketName
	server := sandboxRuntime + "/" + serverFile(p.kind)
	cpuProcs := ""
	if execCPU != "" {
		cpuProcs = sandboxExecCPU + "/cgroup.procs"
	}
	argv, env := o.runtimeCommand(p, sock, sandboxPackages, server, "/tmp", cpuProcs)
	network := o.networkAllowed(p.rt)
	base, err := o.runtimeMounts(argv[0], network)
	if err != nil {
		return launch{}, cg, fmt.Errorf("sandbox mounts: %w", err)
	}
	mounts := append([]sandbox.Mount(nil), base...)
	mounts = append(mounts,
		sandbox.Mount{Kind: sandbox.KindBind, Source: pkgDir, Target: sandboxPackages},
		sandbox.Mount{Kind: sandbox.KindBind, Source: runDir, Target: inRun, Writable: true},
	)
	if o.cfg.Command == nil {
		mounts = append(mounts, sandbox.Mount{Kind: sandbox.KindBind, Source: filepath.Join(o.cfg.RuntimesDir, p.kind, serverFile(p.kind)), Target: server})
	}
	if execCPU != "" {
		mounts = append(mounts, sandbox.Mount{Kind: sandbox.KindBind, Source: execCPU, Target: sandboxExecCPU, Writable: true})
	}
	if p.kind == KindNodeJS && p.strict && o.cfg.Command == nil && sandbox.ConfineAvailable() {
		exe, err := os.Executable()
		if err != nil {
			return launch{}, cg, fmt.Errorf("sandbox mounts: this binary, for %s: %w", sandbox.ConfineName, err)
		}
		mounts = append(mounts, sandbox.Mount{Kind: sandbox.KindBind, Source: exe, Target: sandboxConfine})
	}
	spec.Env, spec.Dir = env, "/tmp"
	spec.Isolate = &sandbox.Isolation{
		Root: root, Mounts: mounts, Hostname: sandboxHostname, Network: network, UID: s.UID, GID: s.GID,
		HostUID: owner, HostGID: group,
	}
	cmd, err := sandbox.Command(spec, argv)
	if err != nil {
		return launch{}, cg, err
	}
	return launch{cmd: cmd, arg: sock, addr: filepath.Join(runDir, socketName)}, cg, nil
}

// runtimeCommand returns the runtime's argv (argv[0] absolute) and
// environment, with the paths the runtime sees: its socket, package
// directory, server script and home, and for strict isolation the
// cgroup.procs file its execution processes join ("" if none).
func (o *Orchestrator) runtimeCommand(p *pool, sock, pkgDir, server, home, cpuProcs string) (argv, env []string) {
	if o.cfg.Command != nil {
		cmd := o.cfg.Command(p.kind, sock, pkgDir)
		env = cmd.Env
		if env == nil {
			env = os.Environ()
		}
		return append([]string{cmd.Path}, cmd.Args[1:]...), env
	}
	if p.kind == KindNodeJS {
		return o.nodeCommand(p, sock, pkgDir, server, home, cpuProcs)
	}
	// -I: ignore PYTHON* variables and user site-packages, so the engine's
	// environment cannot change how functions run.
	argv = []string{o.cfg.Python3, "-I", server,
		"--socket", sock, "--packages-dir", pkgDir,
		"--max-log-bytes", strconv.Itoa(o.cfg.MaxLogSize),
		"--max-result-bytes", strconv.Itoa(o.cfg.MaxResultSize)}
	if p.strict {
		argv = append(argv, o.strictArgs(cpuProcs)...)
	}
	// A minimal environment: the engine's may hold credentials, which
	// functions must not see. Temporary files live and die with the worker.
	env = []string{
		"PATH=/usr/local/bin:/usr/bin:/bin",
		"LANG=C.UTF-8",
		"HOME=" + home,
		"TMPDIR=" + home,
	}
	return argv, env
}

// limitChange is what a worker's cgroup limits need to become.
type limitChange struct {
	cpu    int
	memory int64
}

// limitChangesLocked records cpu and memory as w's limits and returns the
// writes needed to apply them; zero leaves a limit as it is, and the hot
// path (nothing changed) costs two comparisons. o.mu must be held.
func (w *worker) limitChangesLocked(cpu int, memory int64) limitChange {
	var c limitChange
	if w.cg == nil {
		return c
	}
	if cpu > 0 && cpu != w.cpu {
		w.cpu, c.cpu = cpu, cpu
	}
	if memory > 0 && memory != w.memory {
		w.memory, c.memory = memory, memory
	}
	return c
}

func (c limitChange) apply(w *worker) {
	if c.cpu > 0 {
		w.cg.SetCPU(c.cpu)
	}
	if c.memory > 0 {
		w.cg.SetMemory(c.memory + w.memExtra)
	}
}

// limitHit tells whether w's cgroup counted a limit hit since the last
// look, and returns the message for it. A worker that hit a limit is not
// trusted with another execution: what it left behind (processes, memory)
// is thrown away with it.
func (o *Orchestrator) limitHit(w *worker) (string, bool) {
	if w.cg == nil {
		return "", false
	}
	ev := w.cg.Events()
	o.mu.Lock()
	seen := w.seen
	w.seen = ev
	memory := w.memory
	o.mu.Unlock()
	switch {
	case ev.OOMKills > seen.OOMKills:
		return fmt.Sprintf(msgMemory, memory), true
	case ev.PidsMax > seen.PidsMax:
		return fmt.Sprintf(msgPids, o.cfg.MaxPids), true
	}
	return "", false
}

// explainFailure rewrites a failed result caused by a limit (the function
// saw, say, "Resource temporarily unavailable" from fork) into a message
// saying which limit, keeping the function's own error in the log, and
// retires the worker, unless it has strict isolation: then only the
// execution's processes hit the limit, and they are gone already.
func (o *Orchestrator) explainFailure(w *worker, res orchestrator.Result) orchestrator.Result {
	msg, hit := o.limitHit(w)
	if !hit {
		return res
	}
	if w.strict {
		// Only the execution's processes hit it, and they are gone: the
		// worker (its server and zygotes) is left as it was.
		o.log.Info("execution hit a limit", "worker", w.name, "function_id", w.fnID, "reason", msg)
	} else {
		o.log.Info("execution hit a limit; retiring the worker", "worker", w.name, "function_id", w.fnID, "reason", msg)
		o.kill(w)
	}
	note := msg + "\n"
	if len(res.Output) > 0 {
		note = fmt.Sprintf("%s (The function's own error: %s)\n", msg, res.Output)
	}
	res.Logs += note
	res.Output = jsonString(msg)
	return res
}

// deathWait bounds how long Run waits for a dead or killed worker to be
// reaped before reading its cgroup's counters.
const deathWait = 2 * time.Second

// limitAfterDeath waits (bounded) until w, which died or was killed, has
// exited, then tells whether it had hit a limit: its cgroup's counters are
// final once every task of it is gone (the kernel counts an OOM kill in
// the dying process's own context).
func (o *Orchestrator) limitAfterDeath(w *worker) (string, bool) {
	if w.cg == nil {
		return "", false
	}
	t := time.NewTimer(deathWait)
	defer t.Stop()
	select {
	case <-w.done:
	case <-t.C:
	}
	return o.limitHit(w)
}

// lostToLimit tells whether a worker that died during an execution was
// killed for its memory limit, and if so returns the execution's result.
func (o *Orchestrator) lostToLimit(w *worker, start time.Time) (orchestrator.Result, bool) {
	msg, hit := o.limitAfterDeath(w)
	if !hit {
		return orchestrator.Result{}, false
	}
	return orchestrator.Result{
		Output: jsonString(msg), Duration: time.Since(start).Seconds(), Logs: msg + "\n",
	}, true
}

func jsonString(s string) json.RawMessage {
	b, _ := json.Marshal(s)
	return b
}

// destroyCgroup removes a worker's cgroup, killing what is left in it.
func (o *Orchestrator) destroyCgroup(name string, cg *cgroup.Group) {
	if cg == nil {
		return
	}
	if err := cg.Destroy(); err != nil {
		o.log.Warn("could not remove worker cgroup", "worker", name, "error", err)
	}
}

// cleanCgroups removes cgroups whose worker directory is gone (left by a
// crashed engine sharing this workers directory).
func (o *Orchestrator) cleanCgroups() {
	if o.conf.cgroups == nil {
		return
	}
	n, err := o.conf.cgroups.Clean(workerName, func(name string) bool {
		_, err := os.Stat(filepath.Join(o.cfg.WorkersDir, name))
		return err == nil
	})
	if err != nil {
		o.log.Warn("could not remove every stale worker cgroup", "error", err)
	}
	if n > 0 {
		o.log.Info("removed stale worker cgroups", "count", n)
	}
}
