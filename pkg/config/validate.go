package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Validate checks the whole configuration and returns every problem at
// once (errors.Join), each naming its option and what is wanted, so an
// operator fixes a file in one pass rather than one restart per mistake.
func (c *Config) Validate() error {
	var v validator

	v.choices(c)
	v.unexpandedPaths(c)

	v.port("api.port", c.API.Port)
	v.port("etcd.port", c.Etcd.Port)
	v.port("etcd.peer_port", c.Etcd.PeerPort)
	if c.Etcd.Embedded && c.Etcd.Port == c.Etcd.PeerPort {
		v.addf("etcd.peer_port %d: must differ from etcd.port for the embedded etcd", c.Etcd.PeerPort)
	}

	v.atLeast("api.max_body_size", c.API.MaxBodySize, 1)
	v.atLeast("api.default_page_size", int64(c.API.DefaultPageSize), 1)
	if c.API.DefaultPageSize > c.API.MaxPageSize {
		v.addf("api.default_page_size %d: must not exceed api.max_page_size (%d)", c.API.DefaultPageSize, c.API.MaxPageSize)
	}
	v.atLeast("engine.function_concurrency", int64(c.Engine.FunctionConcurrency), 1)
	v.atLeast("engine.max_workers_per_function", int64(c.Engine.MaxWorkersPerFunction), 1)
	v.atLeast("engine.min_workers_per_function", int64(c.Engine.MinWorkersPerFunction), 1)
	if c.Engine.MinWorkersPerFunction > c.Engine.MaxWorkersPerFunction {
		v.addf("engine.min_workers_per_function %d: must not exceed engine.max_workers_per_function (%d)", c.Engine.MinWorkersPerFunction, c.Engine.MaxWorkersPerFunction)
	}
	v.atLeast("engine.scale_target_per_worker", int64(c.Engine.ScaleTargetPerWorker), 0)
	v.atLeast("engine.scale_down_step", int64(c.Engine.ScaleDownStep), 1)
	v.atLeast("engine.max_pending_executions_per_function", int64(c.Engine.MaxPendingPerFunction), 1)
	v.atLeast("engine.max_pending_executions_per_project", int64(c.Engine.MaxPendingPerProject), 1)
	v.positive("engine.scale_burst_after", c.Engine.ScaleBurstAfter)
	v.positive("engine.scale_interval", c.Engine.ScaleInterval)
	v.positive("engine.scale_down_window", c.Engine.ScaleDownWindow)
	v.atLeast("local_orchestrator.pool_size", int64(c.Local.PoolSize), 0)
	v.atLeast("local_orchestrator.max_log_size", int64(c.Local.MaxLogSize), 1)
	v.atLeast("local_orchestrator.max_result_size", int64(c.Local.MaxResultSize), 1)
	v.atLeast("local_orchestrator.nodejs_memory_overhead", c.Local.NodeMemoryOverhead, 0)
	v.atLeast("local_orchestrator.package_cache_size", c.Local.PackageCacheSize, 1<<20)
	v.atLeast("local_orchestrator.package_cache_project_share", int64(c.Local.PackageCacheProjectShare), 1)
	if c.Local.PackageCacheProjectShare > 100 {
		v.addf("local_orchestrator.package_cache_project_share %d: must be at most 100", c.Local.PackageCacheProjectShare)
	}
	v.hostUIDs(c.Local)
	v.atLeast("storage.max_package_size", c.Storage.MaxPackageSize, 1)
	v.atLeast("keystone_authtoken.token_cache_size", int64(c.Keystone.TokenCacheSize), 0)
	v.atLeast("cors.max_age", int64(c.CORS.MaxAge), 0)

	v.positive("DEFAULT.rpc_response_timeout", c.Default.RPCTimeout)
	v.positive("engine.function_service_expiration", c.Engine.FunctionServiceExpiration)
	v.positive("engine.function_service_expiration_interval", c.Engine.ExpirationCheckInterval)
	v.positive("engine.recovery_interval", c.Engine.RecoveryInterval)
	if c.Engine.ShutdownGracePeriod < 0 {
		v.addf("engine.shutdown_grace_period %s: must not be negative", c.Engine.ShutdownGracePeriod)
	}
	v.positive("etcd.dial_timeout", c.Etcd.DialTimeout)
	v.positive("api.read_header_timeout", c.API.ReadHeaderTimeout)
	v.positive("api.read_timeout", c.API.ReadTimeout)
	v.positive("api.idle_timeout", c.API.IdleTimeout)
	if w, least := c.API.WriteTimeout, c.API.ReadTimeout+c.Default.RPCTimeout; w < 0 || (w > 0 && w < least) {
		v.addf("api.write_timeout %s: must be 0 (derived) or at least api.read_timeout + DEFAULT.rpc_response_timeout (%s), or synchronous executions are cut before they answer", w, least)
	}
	// etcd leases have whole-second TTLs; less than a second would become
	// a lease that expires before the lock is used.
	if c.Etcd.LockTTL < time.Second {
		v.addf("etcd.lock_ttl %s: must be at least 1s (etcd leases count whole seconds)", c.Etcd.LockTTL)
	}
	if c.Keystone.TokenCacheTime < 0 {
		v.addf("keystone_authtoken.token_cache_time %s: must not be negative", c.Keystone.TokenCacheTime)
	}

	r := c.ResourceLimits
	v.limits("cpu", int64(r.MinCPU), int64(r.DefaultCPU), int64(r.MaxCPU))
	v.limits("memory", r.MinMemory, r.DefaultMemory, r.MaxMemory)
	v.limits("timeout", int64(r.MinTimeout), int64(r.DefaultTimeout), int64(r.MaxTimeout))

	v.nonEmpty("DEFAULT.state_path", c.Default.StatePath)
	v.nonEmpty("engine.topic", c.Engine.Topic)
	v.nonEmpty("etcd.host", c.Etcd.Host)
	v.nonEmpty("local_orchestrator.python3", c.Local.Python3)

	v.httpURL("DEFAULT.qinling_endpoint", c.Default.QinlingEndpoint)
	v.httpURL("keystone_authtoken.www_authenticate_uri", c.Keystone.WWWAuthenticateURI)
	v.httpURL("keystone_authtoken.auth_url", c.Keystone.AuthURL)
	if c.Pecan.AuthEnable && c.Keystone.WWWAuthenticateURI == "" {
		v.addf("keystone_authtoken.www_authenticate_uri: required when pecan.auth_enable is true (the Keystone URL tokens are checked against)")
	}

	if _, _, err := ParseDatabaseURL(c.DatabaseURL()); err != nil {
		v.addf("database.connection %q: %v", redactURL(c.DatabaseURL()), err)
	}
	if t := c.Default.TransportURL; t != "" && !strings.HasPrefix(t, "rabbit://") {
		v.addf("DEFAULT.transport_url %q: unknown transport (want rabbit://user:pass@host:5672/, or empty for in-process)", redactURL(t))
	}
	if n := c.Notifications; n.Driver == "messagingv2" {
		if t := c.NotificationsURL(); !strings.HasPrefix(t, "rabbit://") {
			v.addf("oslo_messaging_notifications.transport_url %q: driver messagingv2 needs a broker, rabbit://user:pass@host:5672/ (here or in DEFAULT.transport_url)", redactURL(t))
		}
		v.nonEmpty("DEFAULT.control_exchange", c.Default.ControlExchange)
		if len(n.Topics) == 0 {
			v.addf("oslo_messaging_notifications.topics: driver messagingv2 needs at least one topic")
		}
	}

	v.hostPort("metrics.engine_address", c.Metrics.EngineAddress)
	v.etcdTLS(c.Etcd)
	v.storage(c)
	if c.Engine.Orchestrator == "kubernetes" {
		v.kubernetes(c.Kubernetes)
	}
	return errors.Join(v.errs...)
}

// validator collects problems; its helpers each state one kind of rule.
type validator struct{ errs []error }

func (v *validator) addf(format string, args ...any) {
	v.errs = append(v.errs, fmt.Errorf(format, args...))
}

// choices checks every option that declares a `choices` tag.
func (v *validator) choices(c *Config) {
	cv := reflect.ValueOf(c).Elem()
	for _, o := range options() {
		if len(o.choices) == 0 {
			continue
		}
		if val := cv.FieldByIndex(o.index).String(); !slices.Contains(o.choices, val) {
			v.addf("%s %q: unknown (want %s)", o.key(), val, orList(o.choices))
		}
	}
}

// unexpandedPaths reports a ~ that Load could not expand (no $HOME), which
// would otherwise create a directory literally named "~".
func (v *validator) unexpandedPaths(c *Config) {
	cv := reflect.ValueOf(c).Elem()
	for _, o := range options() {
		p := cv.FieldByIndex(o.index)
		if o.path && (p.String() == "~" || strings.HasPrefix(p.String(), "~/")) {
			v.addf("%s %q: cannot expand ~ (no home directory; set $HOME or use an absolute path)", o.key(), p.String())
		}
	}
}

func (v *validator) port(key string, p int) {
	if p < 1 || p > 65535 {
		v.addf("%s %d: want a port between 1 and 65535", key, p)
	}
}

// hostPort checks an optional host:port listen address.
func (v *validator) hostPort(key, addr string) {
	if addr == "" {
		return
	}
	_, port, err := net.SplitHostPort(addr)
	if n, perr := strconv.Atoi(port); err != nil || perr != nil || n < 1 || n > 65535 {
		v.addf("%s %q: want host:port with a port from 1 to 65535, e.g. 127.0.0.1:7071, or empty to disable", key, addr)
	}
}

func (v *validator) atLeast(key string, n, lowest int64) {
	if n < lowest {
		v.addf("%s %d: must be at least %d", key, n, lowest)
	}
}

func (v *validator) positive(key string, d time.Duration) {
	if d <= 0 {
		v.addf("%s %s: must be positive (integer seconds or a Go duration such as 30s)", key, d)
	}
}

func (v *validator) nonEmpty(key, s string) {
	if strings.TrimSpace(s) == "" {
		v.addf("%s: must not be empty", key)
	}
}

// httpURL checks an optional absolute http(s) URL.
func (v *validator) httpURL(key, s string) {
	if s == "" {
		return
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		v.addf("%s %q: want an absolute http:// or https:// URL", key, redactURL(s))
	}
}

// limits checks one [resource_limits] triple: 0 < min <= default <= max.
func (v *validator) limits(what string, lo, def, hi int64) {
	k := func(p string) string { return "resource_limits." + p + "_" + what }
	if lo < 1 {
		v.addf("%s %d: must be at least 1", k("min"), lo)
	}
	if def < lo {
		v.addf("%s %d: below %s %d", k("default"), def, k("min"), lo)
	}
	if def > hi {
		v.addf("%s %d: above %s %d", k("default"), def, k("max"), hi)
	}
	if lo > hi {
		v.addf("%s %d: above %s %d", k("min"), lo, k("max"), hi)
	}
}

// etcdTLS keeps the certificate options consistent with the protocol, so
// that a half-configured TLS setup fails at startup rather than at the
// first lock.
func (v *validator) etcdTLS(e Etcd) {
	if e.Protocol != "https" {
		for _, o := range []struct{ key, val string }{
			{"etcd.ca_cert", e.CACert}, {"etcd.cert_file", e.CertFile}, {"etcd.cert_key", e.CertKey},
		} {
			if o.val != "" {
				v.addf("%s %q: only used with etcd.protocol = https (protocol is %q)", o.key, o.val, e.Protocol)
			}
		}
		return
	}
	if (e.CertFile == "") != (e.CertKey == "") {
		v.addf("etcd.cert_file and etcd.cert_key: set both for a client certificate, or neither")
	}
}

// kubernetes checks [kubernetes], only when that orchestrator is chosen
// (its defaults are valid, so an unused section never stops a start).
func (v *validator) kubernetes(k Kubernetes) {
	if !dnsLabel.MatchString(k.Namespace) {
		v.addf("kubernetes.namespace %q: want a Kubernetes namespace name (lower-case letters, digits and '-', at most 63)", k.Namespace)
	}
	v.atLeast("kubernetes.replicas", int64(k.Replicas), 1)
	v.port("kubernetes.worker_port", k.WorkerPort)
	v.positive("kubernetes.pool_ready_timeout", k.PoolReadyTimeout)
	v.positive("kubernetes.scale_up_timeout", k.ScaleUpTimeout)
	v.positive("kubernetes.request_timeout", k.RequestTimeout)
	v.atLeast("kubernetes.qps", int64(k.QPS), 1)
	v.atLeast("kubernetes.burst", int64(k.Burst), 1)
	v.atLeast("kubernetes.pool_cpu", int64(k.PoolCPU), 1)
	v.atLeast("kubernetes.pool_memory", k.PoolMemory, 4<<20)
	v.atLeast("kubernetes.run_as_user", k.RunAsUser, 1)
}

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

// orList renders choices as "a, b or c".
func orList(items []string) string {
	if len(items) < 2 {
		return strings.Join(items, "")
	}
	return strings.Join(items[:len(items)-1], ", ") + " or " + items[len(items)-1]
}

// maxHostUID bounds the workers' host uids: from 2^31 on, too many programs
// read uids as signed 32-bit numbers.
const maxHostUID = 1<<31 - 2

// hostUIDs checks the range of the sandboxed workers' host uids: inside
// 1..maxHostUID, and clear of sandbox_uid and sandbox_gid.
func (v *validator) hostUIDs(l Local) {
	first, n := int64(l.SandboxHostUIDStart), int64(l.SandboxHostUIDCount)
	v.atLeast("local_orchestrator.sandbox_host_uid_start", first, 1)
	v.atLeast("local_orchestrator.sandbox_host_uid_count", n, 1)
	if first < 1 || n < 1 {
		return
	}
	last := first + n - 1
	if last > maxHostUID {
		v.addf("local_orchestrator.sandbox_host_uid_count %d: the range from %d would end past %d", n, first, maxHostUID)
	}
	for _, id := range []struct {
		name string
		v    int
	}{{"sandbox_uid", l.SandboxUID}, {"sandbox_gid", l.SandboxGID}} {
		if int64(id.v) >= first && int64(id.v) <= last {
			v.addf("local_orchestrator.sandbox_host_uid_start %d: the range (%d ids) must not hold %s %d", first, n, id.name, id.v)
		}
	}
}

// storage checks what the chosen object store needs; the store itself is
// asked at startup (pkg/backends), where wrong credentials or a missing
// container stop the service.
func (v *validator) storage(c *Config) {
	s := c.Storage
	switch s.Provider {
	case "swift", "s3":
		v.positive("storage.request_timeout", s.RequestTimeout)
		v.atLeast("storage.retries", int64(s.Retries), 0)
		if s.RetryBackoff < 0 {
			v.addf("storage.retry_backoff %s: must not be negative", s.RetryBackoff)
		}
	}
	switch s.Provider {
	case "swift":
		v.nonEmpty("storage.swift_container", s.SwiftContainer)
		if s.SwiftAuthURL != "" {
			v.httpURL("storage.swift_auth_url", s.SwiftAuthURL)
			if !strings.HasSuffix(strings.TrimRight(s.SwiftAuthURL, "/"), "/auth/v1.0") {
				v.addf("storage.swift_auth_url %q: want Swift's v1.0 auth, http(s)://host:port/auth/v1.0", s.SwiftAuthURL)
			}
			v.nonEmpty("storage.swift_user", s.SwiftUser)
		} else if c.Keystone.AuthURL == "" && c.Keystone.WWWAuthenticateURI == "" {
			v.addf("storage.provider swift: set storage.swift_auth_url (Swift's own auth) or keystone_authtoken.auth_url (the service user's Keystone)")
		}
	case "s3":
		v.nonEmpty("storage.s3_endpoint", s.S3Endpoint)
		v.httpURL("storage.s3_endpoint", s.S3Endpoint)
		v.nonEmpty("storage.s3_bucket", s.S3Bucket)
		v.nonEmpty("storage.s3_access_key", s.S3AccessKey)
		v.nonEmpty("storage.s3_secret_key", s.S3SecretKey)
	}
}
