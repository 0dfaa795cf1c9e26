package testutil

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// process is one server a helper runs for tests: the all-in-one, RabbitMQ
// and its epmd, MariaDB. It lives in a process group of its own, so that a
// SIGKILL to the group reaches its helper processes and never the test; its
// output is appended to a log file; it is ready when its probe succeeds; it
// is stopped by SIGTERM and, after a grace period, SIGKILL of its group.
// Every field but the state below mu is set before the first start.
type process struct {
	name        string         // for messages: "qinling-api", "RabbitMQ"
	path        string         // the executable
	args        []string       // its arguments
	dir         string         // working directory
	env         []string       // nil: the test process's environment
	logPath     string         // stdout and stderr, appended across restarts
	deathSignal syscall.Signal // what it gets if the test process dies first
	ready       func() error   // nil once it serves; nil probe: ready at once
	readyWithin time.Duration  // how long ready may keep failing
	poll        time.Duration  // time between two probes
	grace       time.Duration  // between SIGTERM and SIGKILL

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{} // closed when cmd has been waited for
	waitErr error
}

// start runs the process and waits until it is ready; if it is not, the
// process is stopped and the error carries the end of its log.
func (p *process) start() error {
	if p.pid() != 0 {
		return fmt.Errorf("testutil: %s is already running", p.name)
	}
	out, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("testutil: %w", err)
	}
	defer out.Close() // the child has its own copy
	fmt.Fprintf(out, "=== testutil: starting %s %q at %s\n", p.path, p.args, time.Now().Format(time.RFC3339))
	cmd := exec.Command(p.path, p.args...)
	cmd.Dir, cmd.Env = p.dir, p.env
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: p.deathSignal}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("testutil: start %s: %w", p.name, err)
	}
	exited := make(chan struct{})
	p.mu.Lock()
	p.cmd, p.exited, p.waitErr = cmd, exited, nil
	p.mu.Unlock()
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.waitErr = err
		p.mu.Unlock()
		close(exited)
	}()
	if p.ready == nil {
		return nil
	}
	err = poll(p.readyWithin, p.poll, exited, p.ready)
	if errors.Is(err, errExited) {
		err = fmt.Errorf("it exited during startup (%v)", p.exitErr())
	}
	if err != nil {
		_ = p.stop()
		return fmt.Errorf("testutil: %s not ready: %w\n--- end of %s:\n%s", p.name, err, p.logPath, p.logTail(4000))
	}
	return nil
}

// stop sends SIGTERM, waits up to the grace period, then SIGKILLs the
// process group; whatever is left in the group is killed either way. The
// error says it had to be killed. Stopping a stopped process does nothing.
func (p *process) stop() error {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return nil
	}
	pid := cmd.Process.Pid
	_ = cmd.Process.Signal(syscall.SIGTERM)
	var err error
	select {
	case <-exited:
	case <-time.After(p.grace):
		err = fmt.Errorf("%s did not exit within %s of SIGTERM; killed", p.name, p.grace)
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-exited
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL) // helpers left in its group
	return err
}

// kill stops the process as a crash would: SIGKILL to its process group,
// no grace. Killing a stopped process does nothing.
func (p *process) kill() {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-exited
}

// pid is the running process's PID, 0 when it is not running (or was
// never set up).
func (p *process) pid() int {
	if p == nil {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// exitErr is how the last run ended (nil: exit status 0, or still running).
func (p *process) exitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.waitErr
}

// logTail is the last n bytes of the process's log.
func (p *process) logTail(n int) string {
	data, err := os.ReadFile(p.logPath)
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	return lastBytes(string(data), n)
}

// errExited is poll's answer when the watched process exits.
var errExited = errors.New("it exited")

// poll calls check every interval until it returns nil, and fails with the
// last error once timeout has passed, or at once when exited is closed (a
// nil channel is never closed).
func poll(timeout, interval time.Duration, exited <-chan struct{}, check func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-exited:
			return errExited
		default:
		}
		err := check()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("still failing after %s: %w", timeout, err)
		}
		time.Sleep(interval)
	}
}

// WaitFor calls check every interval until it reports done, failing the
// test with what is awaited and the last state check returned once timeout
// has passed.
func WaitFor(t testing.TB, what string, timeout, interval time.Duration, check func() (done bool, state any)) {
	t.Helper()
	var last any
	err := poll(timeout, interval, nil, func() error {
		done, state := check()
		if done {
			return nil
		}
		last = state
		return errNotYet
	})
	if err != nil {
		t.Fatalf("waited %s for %s; last state: %v", timeout, what, last)
	}
}

var errNotYet = errors.New("not yet")

// listening is a readiness probe: something accepts TCP connections on
// 127.0.0.1:port.
func listening(port int) func() error {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	return func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err
	}
}

func lastBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}
