package testutil

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

const (
	// swiftReadyTimeout bounds a Swift's start: the proxy answers 9 to 15 s
	// after it starts on an idle machine, minutes on a loaded one (each
	// server imports all of Swift first).
	swiftReadyTimeout = 5 * time.Minute
	swiftStopGrace    = 10 * time.Second
)

// The tempauth user every private Swift has; over S3 (s3api) the same
// account is the access key and the key its secret.
const (
	SwiftUser = "test:tester"
	SwiftKey  = "testing"
)

var swiftContainers atomic.Int64

// Swift is a private OpenStack Swift from Debian's packages: proxy (with
// tempauth and the s3api middleware, so it answers S3 too), account,
// container and object servers and a memcached, each a foreground process
// on its own free port on 127.0.0.1, with its configuration, rings, data and
// log files under Dir. Only /etc/swift/swift.conf (the hash prefix and
// suffix, read from that fixed path) is the system's.
type Swift struct {
	// AuthURL is tempauth's endpoint: [storage] swift_auth_url.
	AuthURL string
	// S3Endpoint is the same proxy for S3 clients: [storage] s3_endpoint.
	S3Endpoint string
	Dir        string

	proxyPort int
	servers   []*process // memcached, account, container, object, proxy
}

// StartSwift starts a private Swift for t and stops it when t ends.
// Without Debian's swift packages it fails the test, naming them: a test
// that skipped silently could never fail.
func StartSwift(t testing.TB) *Swift {
	t.Helper()
	s, err := LaunchSwift(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// RunWithSwift is a TestMain's body for tests that share one private Swift:
// it launches it (state in a new directory named by prefix), hands it to
// set, runs the tests, stops it, and returns the exit code. The state and
// Swift's logs are kept when a test failed, and their place printed.
func RunWithSwift(m *testing.M, prefix string, set func(*Swift)) int {
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	s, err := LaunchSwift(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		return 1
	}
	set(s)
	code := m.Run()
	s.Close()
	if code == 0 {
		os.RemoveAll(dir)
	} else {
		fmt.Fprintf(os.Stderr, "Swift's logs are in %s\n", dir)
	}
	return code
}

// LaunchSwift starts a private Swift with its state in dir (which must
// exist); for a test binary's TestMain, which has no testing.TB. The caller
// calls Close.
func LaunchSwift(dir string) (*Swift, error) {
	bins := map[string]string{}
	for _, b := range []string{"memcached", "swift-account-server", "swift-container-server", "swift-object-server", "swift-proxy-server"} {
		p, err := exec.LookPath(b)
		if err != nil {
			return nil, errors.New("testutil: " + b + " not found; the integration tier needs a real Swift: apt-get install swift-proxy swift-account swift-container swift-object memcached")
		}
		bins[b] = p
	}
	if _, err := os.Stat("/etc/swift/swift.conf"); err != nil {
		return nil, fmt.Errorf("testutil: Swift reads /etc/swift/swift.conf (installed by the swift package): %w", err)
	}
	var ports [5]int
	for i := range ports {
		var err error
		if ports[i], err = freePort(); err != nil {
			return nil, err
		}
	}
	mcPort, accountPort, containerPort, objectPort, proxyPort := ports[0], ports[1], ports[2], ports[3], ports[4]
	s := &Swift{
		AuthURL:    fmt.Sprintf("http://127.0.0.1:%d/auth/v1.0", proxyPort),
		S3Endpoint: fmt.Sprintf("http://127.0.0.1:%d", proxyPort),
		Dir:        dir,
		proxyPort:  proxyPort,
	}
	if err := os.MkdirAll(filepath.Join(dir, "node", "d1"), 0o700); err != nil {
		return nil, fmt.Errorf("testutil: %w", err)
	}
	for kind, port := range map[string]int{"account": accountPort, "container": containerPort, "object": objectPort} {
		if err := WriteSwiftRing(filepath.Join(dir, kind+".ring.gz"), port); err != nil {
			return nil, err
		}
	}
	files := map[string]string{
		"account-server.conf":   swiftServerConf(dir, accountPort, "account"),
		"container-server.conf": swiftServerConf(dir, containerPort, "container"),
		"object-server.conf":    swiftServerConf(dir, objectPort, "object"),
		"proxy-server.conf":     swiftProxyConf(dir, proxyPort, mcPort),
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			return nil, fmt.Errorf("testutil: %w", err)
		}
	}
	// Unbuffered, so that a server's log file is current when a test fails.
	env := append(os.Environ(), "PYTHONUNBUFFERED=1")
	proc := func(name, bin string, args []string, ready func() error) *process {
		return &process{
			name: name, path: bin, args: args, dir: dir, env: env,
			logPath: filepath.Join(dir, name+".log"), deathSignal: syscall.SIGKILL,
			ready: ready, readyWithin: swiftReadyTimeout, poll: 100 * time.Millisecond, grace: swiftStopGrace,
		}
	}
	s.servers = []*process{
		proc("memcached", bins["memcached"], []string{"-l", "127.0.0.1", "-p", strconv.Itoa(mcPort), "-U", "0", "-m", "16", "-u", "root"}, listening(mcPort)),
		// -v: log to the console (the log file) rather than to syslog.
		proc("swift-account-server", bins["swift-account-server"], []string{filepath.Join(dir, "account-server.conf"), "-v"}, nil),
		proc("swift-container-server", bins["swift-container-server"], []string{filepath.Join(dir, "container-server.conf"), "-v"}, nil),
		proc("swift-object-server", bins["swift-object-server"], []string{filepath.Join(dir, "object-server.conf"), "-v"}, nil),
		proc("swift-proxy-server", bins["swift-proxy-server"], []string{filepath.Join(dir, "proxy-server.conf"), "-v"}, s.ready(accountPort, containerPort, objectPort)),
	}
	if err := s.Start(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Start starts every server that is not running and waits until the proxy
// serves the test account. The servers start together (each takes seconds
// to import Swift) and the proxy's probe waits for all of them (ready).
func (s *Swift) Start() error {
	for _, p := range s.servers {
		if p.pid() != 0 {
			continue
		}
		if err := p.start(); err != nil {
			return err
		}
	}
	return nil
}

// StopProxy stops the proxy (SIGTERM), as an outage of the store looks to
// clients: connections refused. Start brings it back.
func (s *Swift) StopProxy() error { return s.servers[len(s.servers)-1].stop() }

// Close stops every server.
func (s *Swift) Close() {
	for i := len(s.servers) - 1; i >= 0; i-- {
		_ = s.servers[i].stop()
	}
}

// Token authenticates as SwiftUser with tempauth and returns the token and
// the account's storage URL.
func (s *Swift) Token() (token, storageURL string, err error) {
	req, err := http.NewRequest(http.MethodGet, s.AuthURL, nil)
	if err != nil {
		return "", "", err
	}
	req.Header.Set("X-Auth-User", SwiftUser)
	req.Header.Set("X-Auth-Key", SwiftKey)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return "", "", err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", "", fmt.Errorf("tempauth: %s", resp.Status)
	}
	return resp.Header.Get("X-Auth-Token"), resp.Header.Get("X-Storage-Url"), nil
}

// ready is the proxy's readiness probe, so the probe of them all: the
// account, container and object servers listen on their ports (the test
// account answering needs only the account server: CI once saw a
// container PUT refused by a container server not yet listening), and the
// test account answers, which needs the proxy and memcached (tempauth's
// tokens) too.
func (s *Swift) ready(ports ...int) func() error {
	return func() error {
		for _, port := range ports {
			if err := listening(port)(); err != nil {
				return err
			}
		}
		_, _, err := s.request(http.MethodHead, "", http.StatusNoContent, http.StatusOK)
		return err
	}
}

// request sends one authenticated request to the account's URL plus path.
func (s *Swift) request(method, path string, ok ...int) (*http.Response, []byte, error) {
	token, storageURL, err := s.Token()
	if err != nil {
		return nil, nil, err
	}
	req, err := http.NewRequest(method, storageURL+path, nil)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("X-Auth-Token", token)
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	var body bytes.Buffer
	_, _ = body.ReadFrom(resp.Body)
	for _, code := range ok {
		if resp.StatusCode == code {
			return resp, body.Bytes(), nil
		}
	}
	return resp, body.Bytes(), fmt.Errorf("swift %s %s: %s: %s", method, path, resp.Status, body.String())
}

// NewContainer creates a container (an S3 bucket too) with a name no other
// call returns, and returns its name.
func (s *Swift) NewContainer(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("test-%d-%d", os.Getpid(), swiftContainers.Add(1))
	if _, _, err := s.request(http.MethodPut, "/"+name, http.StatusCreated, http.StatusAccepted); err != nil {
		t.Fatalf("testutil: create container: %v", err)
	}
	return name
}

// Objects lists the names in a container.
func (s *Swift) Objects(t testing.TB, container string) []string {
	t.Helper()
	_, body, err := s.request(http.MethodGet, "/"+container, http.StatusOK, http.StatusNoContent)
	if err != nil {
		t.Fatalf("testutil: list container: %v", err)
	}
	return strings.Fields(string(body))
}

// LogTail is the end of every server's log, for failure messages.
func (s *Swift) LogTail(n int) string {
	var b strings.Builder
	for _, p := range s.servers {
		fmt.Fprintf(&b, "--- %s:\n%s\n", p.logPath, p.logTail(n))
	}
	return b.String()
}

// WriteSwiftRing writes a Swift ring of one device (127.0.0.1:port, "d1"),
// one replica and 2^8 partitions, in the format swift.common.ring.RingData
// saves (a gzip of "R1NG", version 1, a JSON header and the
// partition-to-device table). Writing it directly takes microseconds where
// swift-ring-builder takes seconds per call; every partition is on device 0.
func WriteSwiftRing(path string, port int) error {
	const partPower = 8
	header, err := json.Marshal(map[string]any{
		"byteorder": "little",
		"devs": []map[string]any{{
			"device": "d1", "id": 0, "ip": "127.0.0.1", "meta": "", "port": port,
			"region": 1, "weight": 100.0, "zone": 1,
		}},
		"part_shift":    32 - partPower,
		"replica_count": 1,
		"version":       1,
	})
	if err != nil {
		return err
	}
	var raw bytes.Buffer
	raw.WriteString("R1NG")
	_ = binary.Write(&raw, binary.BigEndian, uint16(1))
	_ = binary.Write(&raw, binary.BigEndian, uint32(len(header)))
	raw.Write(header)
	raw.Write(make([]byte, 2<<partPower)) // 2^8 little-endian uint16 zeros: device 0
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	if _, err := zw.Write(raw.Bytes()); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	if err := os.WriteFile(path, gz.Bytes(), 0o644); err != nil {
		return fmt.Errorf("testutil: %w", err)
	}
	return nil
}

func swiftServerConf(dir string, port int, kind string) string {
	return fmt.Sprintf(`[DEFAULT]
bind_ip = 127.0.0.1
bind_port = %d
devices = %s
mount_check = false
swift_dir = %s
user = root
workers = 1
log_name = %s-server

[pipeline:main]
pipeline = %s-server

[app:%s-server]
use = egg:swift#%s
`, port, filepath.Join(dir, "node"), dir, kind, kind, kind, kind)
}

func swiftProxyConf(dir string, port, memcachedPort int) string {
	var b strings.Builder
	fmt.Fprintf(&b, `[DEFAULT]
bind_ip = 127.0.0.1
bind_port = %d
swift_dir = %s
user = root
workers = 1
log_name = proxy-server

[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats s3api tempauth copy dlo slo proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true

[filter:tempauth]
use = egg:swift#tempauth
user_test_tester = testing .admin

[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:%d
`, port, dir, memcachedPort)
	// The rest of the pipeline needs no settings: each is Swift's own.
	for _, f := range []string{"catch_errors", "gatekeeper", "healthcheck", "proxy-logging", "listing_formats", "s3api", "copy", "dlo", "slo"} {
		fmt.Fprintf(&b, "\n[filter:%s]\nuse = egg:swift#%s\n", f, strings.ReplaceAll(f, "-", "_"))
	}
	return b.String()
}
