package testutil

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
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

	node   string
	broker *process
	epmd   *process
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
	r.Start(t)
	return r
}

// Stop stops the broker gracefully (SIGTERM, then SIGKILL after 20 s) and
// waits for it to exit; its data stays for Start. Clients see their
// connections closed.
func (r *RabbitMQ) Stop(t testing.TB) {
	t.Helper()
	if err := r.broker.stop(); err != nil {
		t.Error(err)
	}
}

// Start starts the stopped broker again on the same port with the same data:
// durable queues and persistent messages are still there.
func (r *RabbitMQ) Start(t testing.TB) {
	t.Helper()
	if err := r.broker.start(); err != nil {
		t.Fatalf("%v\n%s", err, r.nodeLogTail())
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
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RABBITMQ_") && !strings.HasPrefix(kv, "ERL_") && !strings.HasPrefix(kv, "HOME=") {
			env = append(env, kv)
		}
	}
	// HOME holds the Erlang cookie. RABBITMQ_CONF_ENV_FILE names a file that
	// does not exist, so that /etc/rabbitmq/rabbitmq-env.conf is not read.
	env = append(env,
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
	r.epmd = &process{
		name: "epmd", path: epmdBin, args: []string{"-port", strconv.Itoa(epmdPort), "-address", "127.0.0.1"},
		dir: dir, env: env, logPath: filepath.Join(dir, "epmd.log"), deathSignal: syscall.SIGKILL,
		ready: listening(epmdPort), readyWithin: 10 * time.Second, poll: 50 * time.Millisecond, grace: 5 * time.Second,
	}
	// The Erlang VM shuts down cleanly on SIGTERM; clients see their
	// connections closed.
	r.broker = &process{
		name: "RabbitMQ", path: server, dir: dir, env: env,
		logPath: filepath.Join(dir, "rabbitmq-server.out"), deathSignal: syscall.SIGTERM,
		ready: r.acceptsAMQP, readyWithin: rabbitReadyTimeout, poll: 200 * time.Millisecond, grace: rabbitStopGrace,
	}
	if err := r.epmd.start(); err != nil {
		return nil, err
	}
	return r, nil
}

// acceptsAMQP is the broker's readiness probe: an AMQP connection succeeds.
func (r *RabbitMQ) acceptsAMQP() error {
	conn, err := amqp.DialConfig(r.AMQPURL, amqp.Config{Dial: amqp.DefaultDial(2 * time.Second)})
	if err == nil {
		_ = conn.Close()
	}
	return err
}

// shutdown stops the broker and the epmd started for it.
func (r *RabbitMQ) shutdown() {
	_ = r.broker.stop()
	_ = r.epmd.stop()
}

// nodeLogTail is the end of the broker's own log, for failure messages.
func (r *RabbitMQ) nodeLogTail() string {
	data, err := os.ReadFile(filepath.Join(r.Dir, "log", r.node+".log"))
	if err != nil {
		return ""
	}
	return "--- end of the node's log:\n" + lastBytes(string(data), 3000)
}
