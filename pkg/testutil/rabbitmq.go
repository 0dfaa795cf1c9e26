package testutil

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

const (
	// rabbitReadyTimeout bounds a broker's start; it takes 5 to 20 s.
	rabbitReadyTimeout = 90 * time.Second
	rabbitStopGrace    = 20 * time.Second
)

var rabbitNodes atomic.Int64

// RabbitMQ is a private RabbitMQ node started from Debian's rabbitmq-server:
// its own directories under a temporary one, its own ports on 127.0.0.1
// (AMQP, Erlang distribution) and its own epmd, so it never meets another
// broker on the machine. The guest user works, as it does on loopback.
type RabbitMQ struct {
	// URL is the broker in the form [DEFAULT] transport_url takes:
	// rabbit://guest:guest@127.0.0.1:<port>/.
	URL string
	// AMQPURL is the same broker for plain AMQP clients.
	AMQPURL string
	Port    int
	Dir     string

	server   string // the rabbitmq-server script
	node     string
	env      []string
	epmd     *exec.Cmd
	epmdDone chan struct{}

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// StartRabbitMQ starts a private broker for t and stops it, and its epmd,
// when t ends. Without rabbitmq-server installed it fails the test, naming
// the package: a test that skipped silently could never fail.
func StartRabbitMQ(t testing.TB) *RabbitMQ {
	t.Helper()
	r, err := newRabbitMQ(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.shutdown)
	if err := r.start(); err != nil {
		t.Fatal(err)
	}
	return r
}

// Stop stops the broker gracefully (SIGTERM, then SIGKILL after 20 s) and
// waits for it to exit; its data stays for Start. Clients see their
// connections closed.
func (r *RabbitMQ) Stop(t testing.TB) {
	t.Helper()
	if err := r.stop(); err != nil {
		t.Error(err)
	}
}

// Start starts the stopped broker again on the same port with the same data:
// durable queues and persistent messages are still there.
func (r *RabbitMQ) Start(t testing.TB) {
	t.Helper()
	if err := r.start(); err != nil {
		t.Fatal(err)
	}
}

// rabbitServerScript finds the script that runs the broker in the
// foreground. Debian's /usr/sbin/rabbitmq-server is a wrapper that switches
// to the rabbitmq user and its directories, so the script behind it is
// preferred.
func rabbitServerScript() (string, error) {
	const debian = "/usr/lib/rabbitmq/bin/rabbitmq-server"
	if _, err := os.Stat(debian); err == nil {
		return debian, nil
	}
	if p, err := exec.LookPath("rabbitmq-server"); err == nil {
		return p, nil
	}
	return "", errors.New("testutil: rabbitmq-server not found; the integration tier needs a real broker: apt-get install rabbitmq-server")
}

func newRabbitMQ(dir string) (*RabbitMQ, error) {
	server, err := rabbitServerScript()
	if err != nil {
		return nil, err
	}
	epmdBin, err := exec.LookPath("epmd")
	if err != nil {
		return nil, errors.New("testutil: epmd not found (Erlang's port mapper, in erlang-base): apt-get install rabbitmq-server")
	}
	var ports [3]int
	for i := range ports {
		if ports[i], err = freePort(); err != nil {
			return nil, err
		}
	}
	amqpPort, distPort, epmdPort := ports[0], ports[1], ports[2]
	r := &RabbitMQ{
		URL:     fmt.Sprintf("rabbit://guest:guest@127.0.0.1:%d/", amqpPort),
		AMQPURL: fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", amqpPort),
		Port:    amqpPort,
		Dir:     dir,
		server:  server,
		node:    fmt.Sprintf("qinling-test-%d-%d@localhost", os.Getpid(), rabbitNodes.Add(1)),
	}
	for _, d := range []string{"mnesia", "log", "home"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, fmt.Errorf("testutil: %w", err)
		}
	}
	conf := strings.Join([]string{
		fmt.Sprintf("listeners.tcp.1 = 127.0.0.1:%d", amqpPort),
		"loopback_users.guest = true",
		// A nearly full disk on a CI machine must not block publishers.
		"disk_free_limit.absolute = 1MB",
		"log.console = false",
		"log.file.level = info",
	}, "\n") + "\n"
	files := map[string]string{
		"rabbitmq.conf":   conf,
		"enabled_plugins": "[].\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			return nil, fmt.Errorf("testutil: %w", err)
		}
	}
	// Drop any RabbitMQ or Erlang settings of the caller's environment.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RABBITMQ_") && !strings.HasPrefix(kv, "ERL_") && !strings.HasPrefix(kv, "HOME=") {
			r.env = append(r.env, kv)
		}
	}
	// HOME holds the Erlang cookie. RABBITMQ_CONF_ENV_FILE names a file that
	// does not exist, so that /etc/rabbitmq/rabbitmq-env.conf is not read.
	r.env = append(r.env,
		"HOME="+filepath.Join(dir, "home"),
		"RABBITMQ_CONF_ENV_FILE="+filepath.Join(dir, "rabbitmq-env.conf"),
		"RABBITMQ_NODENAME="+r.node,
		"RABBITMQ_DIST_PORT="+strconv.Itoa(distPort),
		"RABBITMQ_CONFIG_FILE="+filepath.Join(dir, "rabbitmq.conf"),
		"RABBITMQ_ENABLED_PLUGINS_FILE="+filepath.Join(dir, "enabled_plugins"),
		"RABBITMQ_MNESIA_BASE="+filepath.Join(dir, "mnesia"),
		"RABBITMQ_LOG_BASE="+filepath.Join(dir, "log"),
		"RABBITMQ_PID_FILE="+filepath.Join(dir, "rabbitmq.pid"),
		"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-kernel inet_dist_use_interface {127,0,0,1}",
		"ERL_EPMD_PORT="+strconv.Itoa(epmdPort),
		"ERL_EPMD_ADDRESS=127.0.0.1",
	)
	// Our own epmd, in the foreground, so that its PID is ours to stop: one
	// the broker started itself would daemonize and outlive it.
	epmdLog, err := os.Create(filepath.Join(dir, "epmd.log"))
	if err != nil {
		return nil, fmt.Errorf("testutil: %w", err)
	}
	defer epmdLog.Close()
	r.epmd = exec.Command(epmdBin, "-port", strconv.Itoa(epmdPort), "-address", "127.0.0.1")
	r.epmd.Env = r.env
	r.epmd.Stdout, r.epmd.Stderr = epmdLog, epmdLog
	r.epmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := r.epmd.Start(); err != nil {
		return nil, fmt.Errorf("testutil: start epmd: %w", err)
	}
	r.epmdDone = make(chan struct{})
	go func() {
		_ = r.epmd.Wait()
		close(r.epmdDone)
	}()
	if err := waitListening(epmdPort, 10*time.Second, r.epmdDone); err != nil {
		r.shutdown()
		return nil, fmt.Errorf("testutil: epmd on port %d: %w", epmdPort, err)
	}
	return r, nil
}

func (r *RabbitMQ) start() error {
	r.mu.Lock()
	running := r.cmd != nil
	r.mu.Unlock()
	if running {
		return errors.New("testutil: RabbitMQ is already running")
	}
	out, err := os.OpenFile(r.stdoutPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("testutil: %w", err)
	}
	defer out.Close() // the child has its own copy
	cmd := exec.Command(r.server)
	cmd.Dir = r.Dir
	cmd.Env = r.env
	cmd.Stdout, cmd.Stderr = out, out
	// Own process group, so that a SIGKILL to it reaches the broker's helper
	// processes and never the test; SIGTERM if the test process dies first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("testutil: start %s: %w", r.server, err)
	}
	exited := make(chan struct{})
	r.mu.Lock()
	r.cmd, r.exited = cmd, exited
	r.mu.Unlock()
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	if err := r.waitReady(exited); err != nil {
		_ = r.stop()
		return fmt.Errorf("testutil: RabbitMQ not ready: %w\n%s", err, r.logTail())
	}
	return nil
}

// waitReady polls until an AMQP connection succeeds.
func (r *RabbitMQ) waitReady(exited <-chan struct{}) error {
	deadline := time.Now().Add(rabbitReadyTimeout)
	for {
		select {
		case <-exited:
			return errors.New("rabbitmq-server exited during startup")
		default:
		}
		conn, err := amqp.DialConfig(r.AMQPURL, amqp.Config{Dial: amqp.DefaultDial(2 * time.Second)})
		if err == nil {
			_ = conn.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no AMQP connection to %s within %s (last: %v)", r.AMQPURL, rabbitReadyTimeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (r *RabbitMQ) stop() error {
	r.mu.Lock()
	cmd, exited := r.cmd, r.exited
	r.cmd = nil
	r.mu.Unlock()
	if cmd == nil {
		return nil
	}
	pid := cmd.Process.Pid
	_ = cmd.Process.Signal(syscall.SIGTERM) // the Erlang VM shuts down cleanly on it
	var err error
	select {
	case <-exited:
	case <-time.After(rabbitStopGrace):
		err = fmt.Errorf("testutil: RabbitMQ did not exit within %s of SIGTERM; killed", rabbitStopGrace)
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-exited
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL) // helpers left in its group
	return err
}

// shutdown stops the broker and the epmd started for it.
func (r *RabbitMQ) shutdown() {
	_ = r.stop()
	if r.epmd != nil && r.epmd.Process != nil {
		_ = r.epmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-r.epmdDone:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-r.epmd.Process.Pid, syscall.SIGKILL)
			<-r.epmdDone
		}
	}
}

func (r *RabbitMQ) stdoutPath() string { return filepath.Join(r.Dir, "rabbitmq-server.out") }

// logTail is the end of the broker's output and log, for failure messages.
func (r *RabbitMQ) logTail() string {
	var b strings.Builder
	for _, p := range []string{r.stdoutPath(), filepath.Join(r.Dir, "log", r.node+".log")} {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		fmt.Fprintf(&b, "--- end of %s:\n%s\n", p, lastBytes(string(data), 3000))
	}
	return b.String()
}

// waitListening waits until something accepts TCP connections on port.
func waitListening(port int, timeout time.Duration, exited <-chan struct{}) error {
	deadline := time.Now().Add(timeout)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for {
		select {
		case <-exited:
			return errors.New("it exited")
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not listening after %s: %v", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
