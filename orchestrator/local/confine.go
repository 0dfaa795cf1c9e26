package local

import (
	"bytes"
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

	"golang.org/x/sys/unix"

	"github.com/qinling-go/qinling/orchestrator"
	"github.com/qinling-go/qinling/orchestrator/local/cgroup"
	"github.com/qinling-go/qinling/orchestrator/local/sandbox"
)

// Where things are inside a sandbox. The package directory is upstream's.
const (
	sandboxPackages = "/var/qinling/packages"
	sandboxRuntime  = "/var/qinling/runtime"
	sandboxExecCPU  = "/var/qinling/cgroup/exec"
	sandboxHostname = "qinling"
)

// rootName, inside a worker directory of a sandboxed worker, is where the
// sandbox's root is mounted, in its namespace only.
const rootName = "root"

// hostIDsDir, in WorkersDir, holds the host uids taken by workers; engines
// sharing the directory share it.
const hostIDsDir = ".hostuids"

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
	if s.UID < 0 || s.GID < 0 {
		return nil, fmt.Errorf("sandbox uid %d and gid %d must not be negative", s.UID, s.GID)
	}
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
