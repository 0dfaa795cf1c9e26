package local

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// spawner starts processes from one goroutine locked to its OS thread.
//
// Workers get Pdeathsig=SIGKILL so that they die with the engine instead of
// lingering as orphans. The kernel ties that signal to the *thread* that
// forked the child, not to the process, and Go moves goroutines between
// threads and may end threads; a child forked from an arbitrary thread could
// thus be killed at a random moment. Forking from a thread that lives as long
// as the Orchestrator avoids that. When the goroutine ends (Close), the thread
// exits and its remaining children get SIGKILL, which is what Close wants.
type spawner struct {
	reqs chan spawnReq
}

type spawnReq struct {
	cmd  *exec.Cmd
	done chan error
}

func newSpawner(ctx context.Context) *spawner {
	s := &spawner{reqs: make(chan spawnReq)}
	go s.loop(ctx)
	return s
}

func (s *spawner) loop(ctx context.Context) {
	runtime.LockOSThread() // never unlocked: see spawner
	for {
		select {
		case r := <-s.reqs:
			r.done <- r.cmd.Start()
		case <-ctx.Done():
			return
		}
	}
}

// start starts cmd on the spawner's thread.
func (s *spawner) start(ctx, life context.Context, cmd *exec.Cmd) error {
	r := spawnReq{cmd: cmd, done: make(chan error, 1)}
	select {
	case s.reqs <- r:
		return <-r.done
	case <-ctx.Done():
		return ctx.Err()
	case <-life.Done():
		return errClosed
	}
}

// waitExited blocks until the process pid has exited, without reaping it:
// while it is a zombie its pid, which is also its process group id, cannot be
// reused, so the group can still be signalled safely.
func waitExited(pid int) error {
	for {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}

// killGroup sends SIGKILL to the process group pgid.
func killGroup(pgid int) {
	if pgid > 1 {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	}
}

// cmdlineContains reports whether the live process pid has arg in its command
// line. It guards signals to processes known only from a worker.json, whose
// pid may since have been reused by an unrelated process. A zombie has an
// empty command line, so it counts as gone.
func cmdlineContains(pid int, arg string) bool {
	if pid <= 1 || arg == "" {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return false
	}
	for _, a := range strings.Split(string(b), "\x00") {
		if a == arg {
			return true
		}
	}
	return false
}

// Bounds on what a worker's own stdout/stderr may put into the engine log.
// Function output is captured by the runtime per execution and never gets
// here; this is the server's own chatter and tracebacks, which should be
// small, but a broken runtime must not flood the log.
const (
	outputChunk    = 4 << 10   // longest line logged as one record
	outputLogLimit = 256 << 10 // total bytes logged per worker
	outputTailSize = 4 << 10   // kept for error messages
)

// outputLog forwards a worker's output to slog, line by line, and keeps its
// tail for error messages.
type outputLog struct {
	log  *slog.Logger
	done chan struct{} // closed when the output reached EOF

	mu   sync.Mutex
	tail []byte
}

func newOutputLog(log *slog.Logger) *outputLog {
	return &outputLog{log: log, done: make(chan struct{})}
}

// consume reads r until EOF (every writer closed: the worker and its children
// are gone), then closes r.
func (l *outputLog) consume(r *os.File) {
	defer close(l.done)
	defer r.Close()
	br := bufio.NewReaderSize(r, outputChunk)
	logged, muted := 0, false
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			l.remember(line)
			switch {
			case logged < outputLogLimit:
				logged += len(line)
				l.log.Info("worker output", "line", strings.TrimRight(string(line), "\r\n"))
			case !muted:
				muted = true
				l.log.Warn("worker output limit reached; further output is dropped", "limit_bytes", outputLogLimit)
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue // a long line: the rest follows as further chunks
		}
		if err != nil {
			return
		}
	}
}

func (l *outputLog) remember(b []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.tail = append(l.tail, b...)
	if over := len(l.tail) - outputTailSize; over > 0 {
		l.tail = append(l.tail[:0], l.tail[over:]...)
	}
}

// Tail returns the last few KiB of output, trimmed.
func (l *outputLog) Tail() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.TrimSpace(string(l.tail))
}
