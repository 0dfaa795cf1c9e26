package config

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestValidate_EachRule(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		change func(*Config)
		want   string // "" means valid
	}{
		{name: "defaults with keystone", change: func(*Config) {}},
		{name: "port zero", change: func(c *Config) { c.API.Port = 0 }, want: "api.port 0: want a port between 1 and 65535"},
		{name: "port too big", change: func(c *Config) { c.Etcd.Port = 70000 }, want: "etcd.port 70000: want a port between 1 and 65535"},
		{name: "peer port clash", change: func(c *Config) { c.Etcd.PeerPort = 2379 }, want: "etcd.peer_port 2379: must differ from etcd.port"},
		{name: "peer port clash fine when external", change: func(c *Config) { c.Etcd.PeerPort = 2379; c.Etcd.Embedded = false }},
		{name: "concurrency", change: func(c *Config) { c.Engine.FunctionConcurrency = 0 }, want: "engine.function_concurrency 0: must be at least 1"},
		{name: "workers", change: func(c *Config) { c.Engine.MaxWorkersPerFunction = -1 }, want: "engine.max_workers_per_function -1: must be at least 1"},
		{name: "pool may be empty", change: func(c *Config) { c.Local.PoolSize = 0 }},
		{name: "pool negative", change: func(c *Config) { c.Local.PoolSize = -1 }, want: "local_orchestrator.pool_size -1: must be at least 0"},
		{name: "package cache too small", change: func(c *Config) { c.Local.PackageCacheSize = 1000 }, want: "local_orchestrator.package_cache_size 1000: must be at least 1048576"},
		{name: "no project share of the package cache", change: func(c *Config) { c.Local.PackageCacheProjectShare = 0 }, want: "local_orchestrator.package_cache_project_share 0: must be at least 1"},
		{name: "a project share above the whole", change: func(c *Config) { c.Local.PackageCacheProjectShare = 101 }, want: "local_orchestrator.package_cache_project_share 101: must be at most 100"},
		{name: "host uid range empty", change: func(c *Config) { c.Local.SandboxHostUIDCount = 0 }, want: "local_orchestrator.sandbox_host_uid_count 0: must be at least 1"},
		{name: "host uid range past 2^31", change: func(c *Config) { c.Local.SandboxHostUIDStart = 1<<31 - 10 }, want: "local_orchestrator.sandbox_host_uid_count 65536: the range from 2147483638 would end past 2147483646"},
		{name: "host uid range holding nobody", change: func(c *Config) { c.Local.SandboxHostUIDStart = 65000 }, want: "local_orchestrator.sandbox_host_uid_start 65000: the range (65536 ids) must not hold sandbox_uid 65534"},
		{name: "page size zero", change: func(c *Config) { c.API.DefaultPageSize = 0 }, want: "api.default_page_size 0: must be at least 1"},
		{name: "page size above max", change: func(c *Config) { c.API.MaxPageSize = 100 }, want: "api.default_page_size 1000: must not exceed api.max_page_size (100)"},
		{name: "metrics engine address", change: func(c *Config) { c.Metrics.EngineAddress = "127.0.0.1:7071" }},
		{name: "metrics engine address any host", change: func(c *Config) { c.Metrics.EngineAddress = ":7071" }},
		{name: "metrics engine address without port", change: func(c *Config) { c.Metrics.EngineAddress = "127.0.0.1" },
			want: `metrics.engine_address "127.0.0.1": want host:port`},
		{name: "metrics engine address port zero", change: func(c *Config) { c.Metrics.EngineAddress = "127.0.0.1:0" },
			want: `metrics.engine_address "127.0.0.1:0": want host:port`},
		{name: "package size", change: func(c *Config) { c.Storage.MaxPackageSize = 0 }, want: "storage.max_package_size 0: must be at least 1"},
		{name: "storage provider choice", change: func(c *Config) { c.Storage.Provider = "ceph" }, want: `storage.provider "ceph": unknown (want local, swift or s3)`},
		{name: "swift through keystone", change: func(c *Config) { c.Storage.Provider = "swift" }},
		{name: "swift without keystone nor auth url", change: func(c *Config) {
			c.Storage.Provider = "swift"
			c.Keystone.WWWAuthenticateURI, c.Pecan.AuthEnable = "", false
		}, want: "storage.provider swift: set storage.swift_auth_url (Swift's own auth) or keystone_authtoken.auth_url"},
		{name: "swift own auth", change: func(c *Config) {
			c.Storage.Provider, c.Storage.SwiftAuthURL, c.Storage.SwiftUser = "swift", "http://swift:8080/auth/v1.0", "a:u"
		}},
		{name: "swift auth url not v1.0", change: func(c *Config) {
			c.Storage.Provider, c.Storage.SwiftAuthURL, c.Storage.SwiftUser = "swift", "http://swift:8080/v3", "a:u"
		}, want: `storage.swift_auth_url "http://swift:8080/v3": want Swift's v1.0 auth`},
		{name: "swift empty container", change: func(c *Config) { c.Storage.Provider, c.Storage.SwiftContainer = "swift", "" }, want: "storage.swift_container: must not be empty"},
		{name: "s3 needs an endpoint", change: func(c *Config) {
			c.Storage.Provider, c.Storage.S3AccessKey, c.Storage.S3SecretKey = "s3", "a", "s"
		}, want: "storage.s3_endpoint: must not be empty"},
		{name: "s3 needs keys", change: func(c *Config) { c.Storage.Provider, c.Storage.S3Endpoint = "s3", "http://s3:8080" }, want: "storage.s3_access_key: must not be empty"},
		{name: "s3 complete", change: func(c *Config) {
			c.Storage.Provider, c.Storage.S3Endpoint, c.Storage.S3AccessKey, c.Storage.S3SecretKey = "s3", "http://s3:8080", "a", "s"
		}},
		{name: "object store timeout", change: func(c *Config) {
			c.Storage.Provider, c.Storage.RequestTimeout = "swift", 0
		}, want: "storage.request_timeout 0s: must be positive"},
		{name: "object store options unchecked for local", change: func(c *Config) { c.Storage.RequestTimeout, c.Storage.S3Bucket = 0, "" }},
		{name: "orchestrator choice", change: func(c *Config) { c.Engine.Orchestrator = "k8s" }, want: `engine.orchestrator "k8s": unknown (want local or kubernetes)`},
		{name: "kubernetes defaults", change: func(c *Config) { c.Engine.Orchestrator = "kubernetes" }},
		{name: "kubernetes pull policy", change: func(c *Config) { c.Engine.Orchestrator = "kubernetes"; c.Kubernetes.ImagePullPolicy = "Sometimes" },
			want: `kubernetes.image_pull_policy "Sometimes": unknown (want IfNotPresent, Always or Never)`},
		{name: "kubernetes namespace", change: func(c *Config) { c.Engine.Orchestrator = "kubernetes"; c.Kubernetes.Namespace = "Qinling_NS" },
			want: `kubernetes.namespace "Qinling_NS": want a Kubernetes namespace name`},
		{name: "kubernetes replicas", change: func(c *Config) { c.Engine.Orchestrator = "kubernetes"; c.Kubernetes.Replicas = 0 },
			want: "kubernetes.replicas 0: must be at least 1"},
		{name: "kubernetes root", change: func(c *Config) { c.Engine.Orchestrator = "kubernetes"; c.Kubernetes.RunAsUser = 0 },
			want: "kubernetes.run_as_user 0: must be at least 1"},
		{name: "kubernetes unchecked when unused", change: func(c *Config) { c.Kubernetes.Replicas = 0 }},
		{name: "log format choice", change: func(c *Config) { c.Default.LogFormat = "xml" }, want: `DEFAULT.log_format "xml": unknown (want text or json)`},
		{name: "etcd protocol choice", change: func(c *Config) { c.Etcd.Protocol = "grpc" }, want: `etcd.protocol "grpc": unknown (want http or https)`},
		{name: "rpc timeout", change: func(c *Config) { c.Default.RPCTimeout = 0 }, want: "DEFAULT.rpc_response_timeout 0s: must be positive"},
		{name: "expiry interval", change: func(c *Config) { c.Engine.ExpirationCheckInterval = -time.Second }, want: "engine.function_service_expiration_interval -1s: must be positive"},
		{name: "lock ttl under a second", change: func(c *Config) { c.Etcd.LockTTL = 500 * time.Millisecond }, want: "etcd.lock_ttl 500ms: must be at least 1s"},
		{name: "token cache time negative", change: func(c *Config) { c.Keystone.TokenCacheTime = -time.Second }, want: "keystone_authtoken.token_cache_time -1s: must not be negative"},
		{name: "cpu default below min", change: func(c *Config) { c.ResourceLimits.DefaultCPU = 50 }, want: "resource_limits.default_cpu 50: below resource_limits.min_cpu 100"},
		{name: "memory default above max", change: func(c *Config) { c.ResourceLimits.DefaultMemory = 1 << 30 }, want: "resource_limits.default_memory 1073741824: above resource_limits.max_memory 134217728"},
		{name: "timeout min zero", change: func(c *Config) { c.ResourceLimits.MinTimeout = 0 }, want: "resource_limits.min_timeout 0: must be at least 1"},
		{name: "min above max", change: func(c *Config) { c.ResourceLimits.MinCPU = 400 }, want: "resource_limits.min_cpu 400: above resource_limits.max_cpu 300"},
		{name: "auth needs keystone", change: func(c *Config) { c.Keystone.WWWAuthenticateURI = "" }, want: "keystone_authtoken.www_authenticate_uri: required when pecan.auth_enable is true"},
		{name: "no auth no keystone", change: func(c *Config) { c.Keystone.WWWAuthenticateURI = ""; c.Pecan.AuthEnable = false }},
		{name: "keystone not a URL", change: func(c *Config) { c.Keystone.WWWAuthenticateURI = "keystone:5000" }, want: `keystone_authtoken.www_authenticate_uri "keystone:5000": want an absolute http:// or https:// URL`},
		{name: "endpoint not a URL", change: func(c *Config) { c.Default.QinlingEndpoint = "/qinling" }, want: `DEFAULT.qinling_endpoint "/qinling": want an absolute`},
		{name: "database URL", change: func(c *Config) { c.Database.Connection = "postgresql://u:hunter2@db/q" }, want: `database.connection "postgresql://u:***@db/q": unsupported scheme "postgresql"`},
		{name: "mysql database URL", change: func(c *Config) { c.Database.Connection = "mysql+pymysql://u:p@db/q?charset=utf8" }},
		{name: "transport", change: func(c *Config) { c.Default.TransportURL = "amqp://u:hunter2@mq/" }, want: `DEFAULT.transport_url "amqp://u:***@mq/": unknown transport (want rabbit://`},
		{name: "rabbit transport", change: func(c *Config) { c.Default.TransportURL = "rabbit://u:p@mq:5672/" }},
		{name: "notifications need a broker", change: func(c *Config) { c.Notifications.Driver = "messagingv2" }, want: `oslo_messaging_notifications.transport_url "": driver messagingv2 needs a broker`},
		{name: "notifications to the RPC broker", change: func(c *Config) {
			c.Notifications.Driver, c.Default.TransportURL = "messagingv2", "rabbit://u:p@mq:5672/"
		}},
		{name: "notifications need a topic", change: func(c *Config) {
			c.Notifications.Driver, c.Notifications.TransportURL, c.Notifications.Topics = "messagingv2", "rabbit://u:p@mq:5672/", nil
		}, want: "oslo_messaging_notifications.topics"},
		{name: "unknown notification driver", change: func(c *Config) { c.Notifications.Driver = "log" }, want: "oslo_messaging_notifications.driver"},
		{name: "etcd certs over http", change: func(c *Config) { c.Etcd.CACert = "/ca.pem" }, want: `etcd.ca_cert "/ca.pem": only used with etcd.protocol = https`},
		{name: "etcd cert without key", change: func(c *Config) { c.Etcd.Protocol = "https"; c.Etcd.CertFile = "/c.pem" }, want: "etcd.cert_file and etcd.cert_key: set both"},
		{name: "etcd https full", change: func(c *Config) {
			c.Etcd.Protocol, c.Etcd.CACert, c.Etcd.CertFile, c.Etcd.CertKey = "https", "/ca.pem", "/c.pem", "/c.key"
		}},
		{name: "etcd https system CAs", change: func(c *Config) { c.Etcd.Protocol = "https" }},
		{name: "empty topic", change: func(c *Config) { c.Engine.Topic = " " }, want: "engine.topic: must not be empty"},
		{name: "header timeout", change: func(c *Config) { c.API.ReadHeaderTimeout = 0 }, want: "api.read_header_timeout 0s: must be positive"},
		{name: "body timeout", change: func(c *Config) { c.API.ReadTimeout = -time.Second }, want: "api.read_timeout -1s: must be positive"},
		{name: "idle timeout", change: func(c *Config) { c.API.IdleTimeout = 0 }, want: "api.idle_timeout 0s: must be positive"},
		{name: "write timeout shorter than a sync execution", change: func(c *Config) { c.API.WriteTimeout = 5 * time.Minute },
			want: "api.write_timeout 5m0s: must be 0 (derived) or at least api.read_timeout + DEFAULT.rpc_response_timeout (10m30s)"},
		{name: "write timeout negative", change: func(c *Config) { c.API.WriteTimeout = -time.Second }, want: "api.write_timeout -1s: must be 0"},
		{name: "write timeout long enough", change: func(c *Config) { c.API.WriteTimeout = 15 * time.Minute }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := Default()
			withKeystone(c)
			tc.change(c)
			err := c.Validate()
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.want)
			require.NotContains(t, err.Error(), "hunter2", "passwords never reach messages")
		})
	}
}

func TestValidate_CollectsEveryProblem(t *testing.T) {
	t.Parallel()
	c := Default() // auth on, no Keystone URL: one problem already
	c.API.Port = -1
	c.Engine.FunctionConcurrency = 0
	c.Default.LogFormat = "xml"
	c.ResourceLimits.DefaultTimeout = 301

	err := c.Validate()
	require.Error(t, err)
	lines := strings.Split(err.Error(), "\n")
	require.Len(t, lines, 5, err.Error())
	for _, want := range []string{
		"api.port -1",
		"engine.function_concurrency 0",
		`DEFAULT.log_format "xml"`,
		"resource_limits.default_timeout 301: above resource_limits.max_timeout 300",
		"keystone_authtoken.www_authenticate_uri: required",
	} {
		require.ErrorContains(t, err, want)
	}
}

func TestValidate_LoadRefusesInvalidFile(t *testing.T) {
	t.Parallel()
	c, err := Load([]string{writeConf(t, `
[api]
port = 0
[engine]
function_concurrency = 0
`)})
	require.Nil(t, c)
	require.ErrorContains(t, err, "api.port 0")
	require.ErrorContains(t, err, "engine.function_concurrency 0")
	require.ErrorContains(t, err, "keystone_authtoken.www_authenticate_uri")
}
