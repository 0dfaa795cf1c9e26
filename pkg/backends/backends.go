// Package backends is the one place that names concrete backends: each
// constructor picks an implementation by the name in the configuration and
// fails with the names it knows.
package backends

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/qinling-go/qinling/orchestrator"
	orchk8s "github.com/qinling-go/qinling/orchestrator/kubernetes"
	orchlocal "github.com/qinling-go/qinling/orchestrator/local"
	"github.com/qinling-go/qinling/orchestrator/local/preload"
	"github.com/qinling-go/qinling/pkg/archive"
	"github.com/qinling-go/qinling/pkg/config"
	"github.com/qinling-go/qinling/pkg/coord"
	"github.com/qinling-go/qinling/pkg/coord/etcd"
	"github.com/qinling-go/qinling/pkg/db"
	"github.com/qinling-go/qinling/pkg/notify"
	"github.com/qinling-go/qinling/pkg/rpc"
	"github.com/qinling-go/qinling/pkg/rpc/inproc"
	"github.com/qinling-go/qinling/pkg/rpc/rabbit"
	"github.com/qinling-go/qinling/runtimes"
	"github.com/qinling-go/qinling/storage"
	storagelocal "github.com/qinling-go/qinling/storage/local"
	storages3 "github.com/qinling-go/qinling/storage/s3"
	storageswift "github.com/qinling-go/qinling/storage/swift"
	"github.com/qinling-go/qinling/storage/swiftcode"
)

// NewStorage returns the package storage named by [storage] provider. An
// object store is asked at once, so wrong credentials or a missing
// container stop the service here, naming the option to fix.
func NewStorage(ctx context.Context, c *config.Config) (storage.PackageStorage, error) {
	s := c.Storage
	transfer := storage.Transfer{
		Timeout: s.RequestTimeout, Retries: s.Retries, Backoff: s.RetryBackoff,
		MaxSize: s.MaxPackageSize, Limits: archive.DefaultLimits(),
	}
	switch s.Provider {
	case "local":
		return storagelocal.New(storagelocal.Config{Dir: c.PackagesDir(), MaxSize: s.MaxPackageSize, Limits: archive.DefaultLimits()})
	case "swift":
		k := c.Keystone
		st, err := storageswift.New(ctx, storageswift.Config{
			Container: s.SwiftContainer,
			AuthURL:   s.SwiftAuthURL, User: s.SwiftUser, Key: s.SwiftKey,
			Keystone: storageswift.Keystone{
				AuthURL:  cmp.Or(k.AuthURL, k.WWWAuthenticateURI),
				Username: k.Username, Password: k.Password, ProjectName: k.ProjectName,
				UserDomainName: k.UserDomainName, ProjectDomainName: k.ProjectDomainName,
				RegionName: k.RegionName, Interface: s.SwiftInterface,
			},
			Transfer: transfer,
		})
		credentials := "keystone_authtoken.username and keystone_authtoken.password"
		if s.SwiftAuthURL != "" {
			credentials = "storage.swift_user and storage.swift_key"
		}
		return st, storageStartError(err, credentials, "storage.swift_container")
	case "s3":
		st, err := storages3.New(ctx, storages3.Config{
			Endpoint: s.S3Endpoint, Region: s.S3Region, Bucket: s.S3Bucket,
			AccessKey: s.S3AccessKey, SecretKey: s.S3SecretKey,
			Transfer: transfer,
		})
		return st, storageStartError(err, "storage.s3_access_key and storage.s3_secret_key", "storage.s3_bucket")
	}
	return nil, fmt.Errorf("storage.provider %q: unknown (want local, swift or s3)", s.Provider)
}

// NewSwiftCode returns what reaches the objects of swift functions (code
// source "swift"): the callers' and owners' Swift through Keystone, or nil
// when authentication is off (upstream refuses such functions then).
func NewSwiftCode(c *config.Config) (swiftcode.Source, error) {
	k, s := c.Keystone, c.Storage
	authURL := cmp.Or(k.AuthURL, k.WWWAuthenticateURI)
	if !c.Pecan.AuthEnable || authURL == "" {
		// An engine configured without Keystone: its swift functions'
		// executions end with "Swift object not supported".
		return nil, nil
	}
	return swiftcode.New(swiftcode.Config{
		AuthURL:  authURL,
		Username: k.Username, Password: k.Password, UserDomainName: k.UserDomainName,
		ProjectName: k.ProjectName, ProjectDomainName: k.ProjectDomainName,
		RegionName: k.RegionName, Interface: s.SwiftInterface,
		Timeout: s.RequestTimeout, Retry: swiftcode.Retry{Retries: s.Retries, Backoff: s.RetryBackoff},
		MaxSize: s.MaxPackageSize,
	})
}

// storageStartError names the options behind an object store's refusal.
func storageStartError(err error, credentials, container string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, storage.ErrBadCredentials):
		return fmt.Errorf("check %s: %w", credentials, err)
	case errors.Is(err, storage.ErrNoContainer):
		return fmt.Errorf("%s: %w (create it first)", container, err)
	}
	return fmt.Errorf("storage: %w", err)
}

// NewOrchestrator returns the orchestrator named by [engine] orchestrator.
func NewOrchestrator(c *config.Config, log *slog.Logger) (orchestrator.Orchestrator, error) {
	switch c.Engine.Orchestrator {
	case "local":
		if c.Local.RuntimesDir == "" {
			if _, err := runtimes.Install(c.RuntimesDir()); err != nil {
				return nil, err
			}
		}
		policy, err := preload.NewPolicy(c.Engine.PreloadPolicy)
		if err != nil {
			return nil, fmt.Errorf("engine.preload_policy: %w", err)
		}
		if c.Local.Sandbox && (c.Local.SandboxUID == 0 || c.Local.SandboxGID == 0) {
			return nil, fmt.Errorf("local_orchestrator.sandbox_uid %d, sandbox_gid %d: functions must not run as root (0)", c.Local.SandboxUID, c.Local.SandboxGID)
		}
		return orchlocal.New(orchlocal.Config{
			WorkersDir: c.WorkersDir(),
			PoolSize:   c.Local.PoolSize,
			Python3:    c.Local.Python3,
			NodeJS:     c.Local.NodeJS,
			// 0 in the file means none; in orchlocal.Config it means the default.
			NodeMemoryOverhead:       cmp.Or(c.Local.NodeMemoryOverhead, -1),
			RuntimesDir:              c.RuntimesDir(),
			MaxLogSize:               c.Local.MaxLogSize,
			MaxResultSize:            c.Local.MaxResultSize,
			PackageCacheSize:         c.Local.PackageCacheSize,
			PackageCacheProjectShare: c.Local.PackageCacheProjectShare,
			Owner:                    c.EngineName(),
			Logger:                   log.With("component", "orchestrator"),
			Sandbox: orchlocal.Sandbox{
				Enabled:         c.Local.Sandbox,
				UID:             c.Local.SandboxUID,
				GID:             c.Local.SandboxGID,
				NetworkRuntimes: c.Local.NetworkRuntimes,
				TmpSize:         c.Local.SandboxTmpSize,
				ExtraPaths:      c.Local.SandboxPaths,
				HostUIDStart:    c.Local.SandboxHostUIDStart,
				HostUIDCount:    c.Local.SandboxHostUIDCount,
			},
			CgroupParent: c.Local.CgroupParent,
			MaxPids:      c.Local.MaxPids,
			Isolation: orchlocal.Isolation{
				Strict:         c.Engine.Isolation == "strict",
				StrictRuntimes: c.Local.StrictRuntimes,
				Spares:         c.Local.StrictSpares,
				Preload: orchlocal.Preload{
					Policy:   policy,
					Slots:    c.Engine.PreloadSlots,
					Window:   c.Engine.PreloadWindow,
					Interval: c.Engine.PreloadInterval,
				},
			},
		})
	case "kubernetes":
		k := c.Kubernetes
		client, err := orchk8s.NewClient(orchk8s.ClientConfig{Kubeconfig: k.Kubeconfig, QPS: k.QPS, Burst: k.Burst})
		if err != nil {
			return nil, err
		}
		o, err := orchk8s.New(orchk8s.Config{
			Client:             client,
			Namespace:          k.Namespace,
			Replicas:           k.Replicas,
			ImagePullPolicy:    corev1.PullPolicy(k.ImagePullPolicy),
			WorkerPort:         k.WorkerPort,
			PoolReadyTimeout:   k.PoolReadyTimeout,
			ScaleUpTimeout:     k.ScaleUpTimeout,
			RequestTimeout:     k.RequestTimeout,
			PoolCPU:            k.PoolCPU,
			PoolMemory:         k.PoolMemory,
			NodeMemoryOverhead: k.NodeMemoryOverhead,
			RunAsUser:          k.RunAsUser,
			Resize:             k.Resize,
			// The same bounds as local workers' ([local_orchestrator]).
			MaxResultSize: c.Local.MaxResultSize,
			MaxLogSize:    c.Local.MaxLogSize,
			Owner:         c.EngineName(),
			Logger:        log.With("component", "orchestrator"),
		})
		if err != nil {
			return nil, err
		}
		return o, nil
	}
	return nil, fmt.Errorf("engine.orchestrator %q: unknown (want local or kubernetes)", c.Engine.Orchestrator)
}

// ImageFunctions reports whether the configured orchestrator runs image
// functions (orchestrator.ImageRunner), so that the API, which has no
// orchestrator of its own, accepts them only where they can run.
func ImageFunctions(c *config.Config) bool {
	return c.Engine.Orchestrator == "kubernetes" && c.Kubernetes.ImageFunctions
}

// EngineLocalWorkers reports whether the configured orchestrator's workers
// can be used only by the engine that started them (orchestrator.EngineLocal),
// so that qinling-api, which has no orchestrator of its own, sends a
// function's sync executions to that engine (engine.Client.Owners).
func EngineLocalWorkers(c *config.Config) bool {
	return c.Engine.Orchestrator == "local"
}

// NewTransport returns the RPC transport named by [DEFAULT] transport_url;
// an empty URL is the in-process transport, usable only when API and engine
// share the process.
func NewTransport(c *config.Config, allInOne bool, log *slog.Logger) (rpc.Transport, error) {
	if c.Default.TransportURL == "" {
		if !allInOne {
			return nil, fmt.Errorf("DEFAULT.transport_url is empty: separate API and engine processes need a message broker (rabbit://user:pass@host:5672/); only --all-in-one runs without one")
		}
		return inproc.New(c.Default.RPCTimeout), nil
	}
	if strings.HasPrefix(c.Default.TransportURL, "rabbit://") || strings.HasPrefix(c.Default.TransportURL, "amqp://") {
		t, err := rabbit.New(rabbit.Config{
			URL:               c.Default.TransportURL,
			Topic:             c.Engine.Topic,
			Prefetch:          c.Default.ExecutorThreadPoolSize,
			CallTimeout:       c.Default.RPCTimeout,
			ReconnectInterval: c.Default.ReconnectInterval,
			ReconnectMax:      c.Default.ReconnectMaxInterval,
			// Handlers get the engine's grace period to finish before their
			// requests go back to the queue (pkg/service drains the engine).
			DrainTimeout: c.Engine.ShutdownGracePeriod + 15*time.Second,
			Logger:       log.With("component", "rpc"),
		})
		if err != nil {
			return nil, fmt.Errorf("DEFAULT.transport_url: %w", err)
		}
		return t, nil
	}
	return nil, fmt.Errorf("DEFAULT.transport_url %q: unsupported scheme (want rabbit://, amqp://, or empty for in-process)", config.RedactURL(c.Default.TransportURL))
}

// NewCoordinator connects to etcd, first starting the embedded one when
// [etcd] embedded is set. The returned stop function closes both.
func NewCoordinator(ctx context.Context, c *config.Config) (coord.Coordinator, func(), error) {
	stopEmbedded := func() {}
	if c.Etcd.Embedded {
		e, err := etcd.StartEmbedded(etcd.EmbedConfig{Dir: c.EtcdDataDir(), Host: c.Etcd.Host, Port: c.Etcd.Port, PeerPort: c.Etcd.PeerPort})
		if err != nil {
			return nil, nil, err
		}
		stopEmbedded = e.Close
	}
	tlsCfg, err := c.EtcdTLS()
	if err != nil {
		stopEmbedded()
		return nil, nil, err
	}
	co, err := etcd.New(ctx, etcd.Config{Endpoints: []string{c.EtcdEndpoint()}, TLS: tlsCfg, DialTimeout: c.Etcd.DialTimeout, LockTTL: c.Etcd.LockTTL})
	if err != nil {
		stopEmbedded()
		return nil, nil, err
	}
	return co, func() { co.Close(); stopEmbedded() }, nil
}

// NewNotifier returns the sender of the notification outbox named by
// [oslo_messaging_notifications] driver, nil for noop (no notifications).
func NewNotifier(c *config.Config, d *db.DB, log *slog.Logger) (*notify.Sender, error) {
	switch c.Notifications.Driver {
	case "noop":
		return nil, nil
	case "messagingv2":
		return notify.New(d, notify.Config{
			URL: c.NotificationsURL(), Exchange: c.Default.ControlExchange, Topics: c.Notifications.Topics, Logger: log,
		})
	}
	return nil, fmt.Errorf("oslo_messaging_notifications.driver %q: unknown (want messagingv2 or noop)", c.Notifications.Driver)
}
