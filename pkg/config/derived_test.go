package config

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestDerivedValues(t *testing.T) {
	t.Parallel()
	base := func() *Config {
		c := Default()
		c.Default.StatePath = "/var/lib/qinling"
		return c
	}
	for _, tc := range []struct {
		name   string
		change func(*Config)
		get    func(*Config) string
		want   string
	}{
		{name: "database from state_path", change: func(*Config) {}, get: (*Config).DatabaseURL, want: "sqlite:////var/lib/qinling/qinling.sqlite"},
		{name: "database relative state_path", change: func(c *Config) { c.Default.StatePath = "state" }, get: (*Config).DatabaseURL, want: "sqlite:///state/qinling.sqlite"},
		{name: "database set", change: func(c *Config) { c.Database.Connection = "mysql://u:p@db/q" }, get: (*Config).DatabaseURL, want: "mysql://u:p@db/q"},
		{name: "packages default", change: func(*Config) {}, get: (*Config).PackagesDir, want: "/var/lib/qinling/packages"},
		{name: "packages set", change: func(c *Config) { c.Storage.FileSystemDir = "/srv/pkgs" }, get: (*Config).PackagesDir, want: "/srv/pkgs"},
		{name: "workers default", change: func(*Config) {}, get: (*Config).WorkersDir, want: "/var/lib/qinling/workers"},
		{name: "workers set", change: func(c *Config) { c.Local.WorkersDir = "/run/w" }, get: (*Config).WorkersDir, want: "/run/w"},
		{name: "etcd data", change: func(*Config) {}, get: (*Config).EtcdDataDir, want: "/var/lib/qinling/etcd"},
		{name: "etcd endpoint", change: func(*Config) {}, get: (*Config).EtcdEndpoint, want: "http://127.0.0.1:2379"},
		{name: "etcd endpoint ipv6 https", change: func(c *Config) { c.Etcd.Host, c.Etcd.Protocol = "fd00::1", "https" }, get: (*Config).EtcdEndpoint, want: "https://[fd00::1]:2379"},
		{name: "public from api", change: func(*Config) {}, get: (*Config).PublicEndpoint, want: "http://127.0.0.1:7070"},
		{name: "public wildcard v4", change: func(c *Config) { c.API.Host, c.API.Port = "0.0.0.0", 8080 }, get: (*Config).PublicEndpoint, want: "http://127.0.0.1:8080"},
		{name: "public wildcard v6", change: func(c *Config) { c.API.Host = "::" }, get: (*Config).PublicEndpoint, want: "http://127.0.0.1:7070"},
		{name: "public ipv6 host", change: func(c *Config) { c.API.Host = "fd00::2" }, get: (*Config).PublicEndpoint, want: "http://[fd00::2]:7070"},
		{name: "public set, slash dropped", change: func(c *Config) { c.Default.QinlingEndpoint = "https://qinling.example/api//" }, get: (*Config).PublicEndpoint, want: "https://qinling.example/api"},
		{name: "engine set", change: func(c *Config) { c.Engine.Host = "engine-1" }, get: (*Config).EngineName, want: "engine-1"},
		{name: "write timeout covers body and the longest sync execution", change: func(*Config) {}, get: writeTimeout, want: "11m0s"},
		{name: "write timeout follows rpc timeout", change: func(c *Config) { c.Default.RPCTimeout = time.Hour }, get: writeTimeout, want: "1h5m30s"},
		{name: "write timeout set", change: func(c *Config) { c.API.WriteTimeout = time.Hour }, get: writeTimeout, want: "1h0m0s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := base()
			tc.change(c)
			require.Equal(t, tc.want, tc.get(c))
		})
	}

	t.Run("engine from hostname and pid", func(t *testing.T) {
		t.Parallel()
		host, err := os.Hostname()
		require.NoError(t, err)
		require.Equal(t, fmt.Sprintf("%s-%d", host, os.Getpid()), base().EngineName())
	})
}

func writeTimeout(c *Config) string { return c.APIWriteTimeout().String() }
