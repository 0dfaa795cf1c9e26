package local

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/qinling-go/qinling/orchestrator"
	"github.com/qinling-go/qinling/orchestrator/local/sandbox"
)

// nodePaths are host paths Node.js reads besides its executable and shared
// libraries, when they exist: Debian's nodejs package loads some of its own
// built-in modules from /usr/share/nodejs and aborts at start without it.
var nodePaths = []string{"/usr/share/nodejs"}

// serverFile is the runtime server's file name in RuntimesDir/<kind>/.
func serverFile(kind string) string {
	if kind == KindNodeJS {
		return "server.js"
	}
	return "server.py"
}

// memoryOverhead is what a worker of kind may use beyond its function's
// memory_size.
func (o *Orchestrator) memoryOverhead(kind string) int64 {
	if kind == KindNodeJS {
		return o.cfg.NodeMemoryOverhead
	}
	return 0
}

// checkRuntime tells whether a runtime of kind can run here, so that a
// runtime whose interpreter is missing ends in error with the reason rather
// than with a failed worker start. The python3 runtime is checked by New.
func (o *Orchestrator) checkRuntime(kind string) error {
	if kind != KindNodeJS || o.cfg.Command != nil {
		return nil
	}
	if info, err := os.Stat(o.cfg.NodeJS); err != nil || info.IsDir() {
		return fmt.Errorf("%w: the nodejs runtime needs Node.js at %s ([local_orchestrator] nodejs; "+
			"on Debian: apt-get install nodejs): %v", orchestrator.ErrImageNotRunnable, o.cfg.NodeJS, err)
	}
	if _, err := os.Stat(filepath.Join(o.cfg.RuntimesDir, KindNodeJS, serverFile(KindNodeJS))); err != nil {
		return fmt.Errorf("%w: nodejs runtime server: %v", orchestrator.ErrImageNotRunnable, err)
	}
	return nil
}

// nodeCommand is runtimeCommand for the nodejs kind (runtimes/nodejs/README.md).
func (o *Orchestrator) nodeCommand(p *pool, arg, pkgDir, server, home, cpuProcs string) (argv, env []string) {
	argv = []string{o.cfg.NodeJS, server,
		"--listen-fd", strconv.Itoa(listenFD), "--worker", arg, "--packages-dir", pkgDir,
		"--max-log-bytes", strconv.Itoa(o.cfg.MaxLogSize),
		"--max-result-bytes", strconv.Itoa(o.cfg.MaxResultSize)}
	if p.strict {
		argv = append(argv, "--isolation", "strict", "--spares", strconv.Itoa(o.cfg.Isolation.Spares))
		if o.conf.cfg.Enabled {
			// The sandbox's private /tmp, emptied between executions.
			argv = append(argv, "--tmp-dir", "/tmp")
		}
		if cpuProcs != "" {
			argv = append(argv, "--cpu-cgroup", cpuProcs)
		}
		if helper := o.confineHelper(); helper != "" {
			argv = append(argv, "--confine", helper, "--tmp-size", strconv.FormatInt(o.conf.cfg.TmpSize, 10))
		} else {
			o.conf.confineOnce.Do(func() {
				o.log.Warn("strict isolation: Node.js execution processes start unconfined (this binary was built without cgo): "+
					"they share their worker's /tmp and PID namespace", "helper", sandbox.ConfineName)
			})
		}
	}
	return argv, runtimeEnv(home)
}

// sandboxConfine is where a strict Node.js worker's sandbox shows the
// engine's own binary (os.Executable), which confines each execution
// process (sandbox.ConfineName).
const sandboxConfine = "/var/qinling/bin/" + sandbox.ConfineName

// confineHelper is the path, as a strict Node.js worker sees it, of the
// helper that starts its execution processes in namespaces of their own, or
// "" when this binary cannot serve as one (built without cgo): the
// execution processes then share the worker's /tmp and PID namespace
// (docs/isolation.md, "Node.js").
func (o *Orchestrator) confineHelper() string {
	if !sandbox.ConfineAvailable() {
		return ""
	}
	if o.conf.cfg.Enabled {
		return sandboxConfine
	}
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	return exe
}
