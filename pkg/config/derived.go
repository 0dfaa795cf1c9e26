package config

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Values computed from options. They are methods rather than fields filled
// in by Load so that there is one copy of each fact and a Config built by
// hand (tests, Default) answers the same way as a loaded one.

// DatabaseURL is [database] connection, or a SQLite file under state_path.
func (c *Config) DatabaseURL() string {
	if c.Database.Connection != "" {
		return c.Database.Connection
	}
	// An absolute state_path yields the four-slash absolute form.
	return "sqlite:///" + filepath.Join(c.Default.StatePath, "qinling.sqlite")
}

// PackagesDir is where the local package storage keeps function packages.
func (c *Config) PackagesDir() string {
	if c.Storage.FileSystemDir != "" {
		return c.Storage.FileSystemDir
	}
	return filepath.Join(c.Default.StatePath, "packages")
}

// WorkersDir is the parent of the local orchestrator's worker directories.
func (c *Config) WorkersDir() string {
	if c.Local.WorkersDir != "" {
		return c.Local.WorkersDir
	}
	return filepath.Join(c.Default.StatePath, "workers")
}

// EtcdDataDir is the embedded etcd's data directory.
func (c *Config) EtcdDataDir() string {
	return filepath.Join(c.Default.StatePath, "etcd")
}

// EtcdEndpoint is the etcd client URL, e.g. http://127.0.0.1:2379.
func (c *Config) EtcdEndpoint() string {
	return c.Etcd.Protocol + "://" + net.JoinHostPort(c.Etcd.Host, strconv.Itoa(c.Etcd.Port))
}

// PublicEndpoint is the base URL clients reach the API at, without a
// trailing slash, for webhook and package download URLs.
func (c *Config) PublicEndpoint() string {
	if c.Default.QinlingEndpoint != "" {
		return strings.TrimRight(c.Default.QinlingEndpoint, "/")
	}
	host := c.API.Host
	// A wildcard listen address is not somewhere a client can connect to;
	// loopback is at least right for the all-in-one on one machine.
	switch host {
	case "", "0.0.0.0", "::", "[::]":
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(strings.Trim(host, "[]"), strconv.Itoa(c.API.Port))
}

// NotificationsURL is the broker notifications go to: their own
// transport_url, else the RPC one (oslo's rule).
func (c *Config) NotificationsURL() string {
	if c.Notifications.TransportURL != "" {
		return c.Notifications.TransportURL
	}
	return c.Default.TransportURL
}

// EngineName is this engine's name on the RPC bus and in worker records:
// [engine] host, or the hostname and process ID so that two engines on one
// machine never share a name.
func (c *Config) EngineName() string {
	if c.Engine.Host != "" {
		return c.Engine.Host
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	return fmt.Sprintf("%s-%d", host, os.Getpid())
}

// writeTimeoutMargin is what a derived [api] write_timeout allows beyond the
// request and the longest RPC: encoding and sending the answer.
const writeTimeoutMargin = 30 * time.Second

// APIWriteTimeout is [api] write_timeout, or, when it is 0, long enough for
// a request that takes read_timeout to arrive and whose answer waits for the
// longest RPC (a synchronous execution): see the option's help.
func (c *Config) APIWriteTimeout() time.Duration {
	if c.API.WriteTimeout > 0 {
		return c.API.WriteTimeout
	}
	return c.API.ReadTimeout + c.Default.RPCTimeout + writeTimeoutMargin
}
