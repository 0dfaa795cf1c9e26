package local

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"

	"github.com/qinling-go/qinling/orchestrator/local/cgroup"
	"github.com/qinling-go/qinling/orchestrator/local/sandbox"
)

// launch is how one worker is started.
type launch struct {
	cmd  *exec.Cmd
	arg  string // command-line argument identifying the worker's process
	addr string // socket path on the host
	// lis is the listening socket at addr, the worker's descriptor listenFD
	// (cmd.ExtraFiles); the engine closes its copy once the worker started.
	lis *os.File
}

// listenFD is the descriptor on which a worker finds its listening socket.
const listenFD = 3

// listenSocket creates the worker's listening socket at sock, in its directory,
// which only the engine can write (0700, the engine's), and returns it for
// the worker to inherit. The engine owns the socket: nothing the sandbox
// sees names it, and the engine connects to it without following links
// (workerclient), so a function can neither replace it nor redirect the
// engine elsewhere (docs/isolation.md, "What stops what").
func listenSocket(sock string) (*os.File, error) {
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("worker socket: %w", err)
	}
	ln.SetUnlinkOnClose(false) // the worker's socket now; removed with its directory
	f, err := ln.File()
	_ = ln.Close()
	if err != nil {
		return nil, fmt.Errorf("worker socket: %w", err)
	}
	return f, nil
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
	sock := filepath.Join(dir, socketName)
	arg := o.workerArg(name, sock)
	if !sandboxed {
		cpuProcs := ""
		if execCPU != "" {
			cpuProcs = filepath.Join(execCPU, "cgroup.procs")
		}
		argv, env := o.runtimeCommand(p, arg, pkgDir, filepath.Join(o.cfg.RuntimesDir, p.kind, serverFile(p.kind)), dir, cpuProcs)
		spec.Env = env
		cmd, err := sandbox.Command(spec, argv)
		if err != nil {
			return launch{}, cg, err
		}
		cmd.Dir = dir
		return withSocket(launch{cmd: cmd, arg: arg, addr: sock}, cg)
	}

	s := o.conf.cfg
	root := filepath.Join(dir, rootName)
	if err := os.Mkdir(root, 0o700); err != nil {
		return launch{}, cg, err
	}
	server := sandboxRuntime + "/" + serverFile(p.kind)
	cpuProcs := ""
	if execCPU != "" {
		cpuProcs = sandboxExecCPU + "/cgroup.procs"
	}
	argv, env := o.runtimeCommand(p, arg, sandboxPackages, server, "/tmp", cpuProcs)
	network := o.networkAllowed(p.rt)
	base, err := o.runtimeMounts(argv[0], network)
	if err != nil {
		return launch{}, cg, fmt.Errorf("sandbox mounts: %w", err)
	}
	mounts := append([]sandbox.Mount(nil), base...)
	mounts = append(mounts,
		sandbox.Mount{Kind: sandbox.KindBind, Source: pkgDir, Target: sandboxPackages},
	)
	if o.cfg.Command == nil {
		// The runtime's whole directory: its server imports modules beside it.
		mounts = append(mounts, sandbox.Mount{Kind: sandbox.KindBind, Source: filepath.Join(o.cfg.RuntimesDir, p.kind), Target: sandboxRuntime})
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
	return withSocket(launch{cmd: cmd, arg: arg, addr: sock}, cg)
}

// withSocket creates l's listening socket and passes it to l's command as
// descriptor listenFD.
func withSocket(l launch, cg *cgroup.Group) (launch, *cgroup.Group, error) {
	lis, err := listenSocket(l.addr)
	if err != nil {
		return launch{}, cg, err
	}
	l.lis = lis
	l.cmd.ExtraFiles = []*os.File{lis}
	return l, cg, nil
}

// workerArg is the command-line argument that names the worker's process
// (record.Arg): its socket path for a Config.Command, otherwise its name.
func (o *Orchestrator) workerArg(name, sock string) string {
	if o.cfg.Command != nil {
		return sock
	}
	return name
}

// runtimeCommand returns the runtime's argv (argv[0] absolute) and
// environment, with arg naming the worker (workerArg) and the paths the
// runtime sees: its package directory, server script and home, and for
// strict isolation the cgroup.procs file its execution processes join (""
// if none). Its listening socket is descriptor listenFD.
func (o *Orchestrator) runtimeCommand(p *pool, arg, pkgDir, server, home, cpuProcs string) (argv, env []string) {
	if o.cfg.Command != nil {
		cmd := o.cfg.Command(p.kind, arg, pkgDir)
		env = cmd.Env
		if env == nil {
			env = os.Environ()
		}
		return append([]string{cmd.Path}, cmd.Args[1:]...), env
	}
	if p.kind == KindNodeJS {
		return o.nodeCommand(p, arg, pkgDir, server, home, cpuProcs)
	}
	// -I: ignore PYTHON* variables and user site-packages, so the engine's
	// environment cannot change how functions run.
	argv = []string{o.cfg.Python3, "-I", server,
		"--listen-fd", strconv.Itoa(listenFD), "--worker", arg, "--packages-dir", pkgDir,
		"--max-log-bytes", strconv.Itoa(o.cfg.MaxLogSize),
		"--max-result-bytes", strconv.Itoa(o.cfg.MaxResultSize)}
	if p.strict {
		argv = append(argv, o.strictArgs(cpuProcs)...)
	}
	return argv, runtimeEnv(home)
}

// runtimeEnv is a runtime's whole environment, home its home and temporary
// directory. A minimal one: the engine's may hold credentials, which
// functions must not see, and no PYTHON*, NODE_OPTIONS or NODE_PATH of the
// engine's can change how functions run. Temporary files live and die with
// the worker.
func runtimeEnv(home string) []string {
	return []string{
		"PATH=/usr/local/bin:/usr/bin:/bin",
		"LANG=C.UTF-8",
		"HOME=" + home,
		"TMPDIR=" + home,
	}
}
