// Package config is qinling-go's one typed configuration: oslo-style INI
// files (--config-file, repeatable, later files win), every option declared
// once below with its section, name, default and help, validated in one place
// at startup. etc/qinling.conf.sample is generated from these declarations.
package config

import "time"

// Config is the whole configuration. The `ini` tag of a field here names
// the section, the `ini` tag inside a section struct names the option;
// `default` and `help` feed both Default() and the generated sample.
// `choices` lists the accepted values, `secret` masks the value in logs and
// in the sample, `path` expands a leading ~ to the user's home directory.
type Config struct {
	Default        DefaultSection `ini:"DEFAULT"`
	API            API            `ini:"api"`
	Pecan          Pecan          `ini:"pecan"`
	Engine         Engine         `ini:"engine"`
	Local          Local          `ini:"local_orchestrator"`
	Kubernetes     Kubernetes     `ini:"kubernetes"`
	Storage        Storage        `ini:"storage"`
	Database       Database       `ini:"database"`
	Etcd           Etcd           `ini:"etcd"`
	ResourceLimits ResourceLimits `ini:"resource_limits"`
	Keystone       KeystoneAuth   `ini:"keystone_authtoken"`
	CORS           CORS           `ini:"cors"`
	Notifications  Notifications  `ini:"oslo_messaging_notifications"`
	Metrics        Metrics        `ini:"metrics"`

	// Facts about how this value was built, for Warnings and IsSet; not
	// options, so they carry no tags.
	warnings []string
	set      map[string]bool
}

// DefaultSection is [DEFAULT].
type DefaultSection struct {
	StatePath       string        `ini:"state_path" default:"~/.local/share/qinling" help:"Directory for all state the service keeps on this machine: the SQLite database and packages when their own options are unset, the embedded etcd, worker directories. Created if missing; ~ is the user's home." path:"true"`
	QinlingEndpoint string        `ini:"qinling_endpoint" default:"" help:"Public URL of the Qinling API, used in webhook URLs and package download URLs. Empty means http://<api host>:<api port>."`
	TransportURL    string        `ini:"transport_url" default:"" help:"RPC transport between API and engines. Empty means in-process (only with --all-in-one); rabbit://user:pass@host:5672/ for RabbitMQ."`
	RPCTimeout      time.Duration `ini:"rpc_response_timeout" default:"330s" help:"How long an RPC call (e.g. a synchronous execution) waits for its reply. Integer seconds or a Go duration."`
	Debug           bool          `ini:"debug" default:"false" help:"Log at debug level."`
	LogFormat       string        `ini:"log_format" default:"text" help:"Log line format: text or json." choices:"text,json"`
	// oslo.messaging's names, so upstream qinling.conf files keep working.
	ExecutorThreadPoolSize int           `ini:"executor_thread_pool_size" default:"64" help:"RPC requests one engine handles at once; also its RabbitMQ prefetch, so a busy engine is not handed more than it can start."`
	ReconnectInterval      time.Duration `ini:"rabbit_retry_interval" default:"1s" help:"First wait before reconnecting to the message broker; doubles up to rabbit_retry_backoff."`
	ReconnectMaxInterval   time.Duration `ini:"rabbit_retry_backoff" default:"30s" help:"Longest wait between reconnection attempts to the message broker."`
	ControlExchange        string        `ini:"control_exchange" default:"qinling" help:"The topic exchange notifications ([oslo_messaging_notifications]) are published to; list it in Ceilometer's [notification] notification_control_exchanges."`
}

// Notifications is [oslo_messaging_notifications], read as OpenStack
// services read it (docs/operations.md, "Notifications").
type Notifications struct {
	Driver       string   `ini:"driver" default:"noop" help:"messagingv2 sends oslo.messaging v2 notifications (function.execution.end and the .end events of changes) to RabbitMQ for Ceilometer and billing, from an outbox in the database, so a broker outage delays them and loses none; noop sends none." choices:"noop,messagingv2"`
	Topics       []string `ini:"topics" default:"notifications" help:"Topics notifications are sent to: each is published with routing key <topic>.<priority>, e.g. notifications.info, and that queue is declared."`
	TransportURL string   `ini:"transport_url" default:"" help:"The broker notifications go to, rabbit://user:pass@host:5672/vhost. Empty means [DEFAULT] transport_url."`
}

// API is [api].
type API struct {
	Host             string `ini:"host" default:"127.0.0.1" help:"Address the API listens on."`
	Port             int    `ini:"port" default:"7070" help:"Port the API listens on."`
	EnableJobHandler bool   `ini:"enable_job_handler" default:"true" help:"Run the cron job handler in this API process."`
	MaxBodySize      int64  `ini:"max_body_size" default:"1048576" help:"Largest JSON or form request body, in bytes (package uploads are bounded by [storage] max_package_size)."`
	// Nova's osapi_max_limit is 1000 too; the openstack CLI never pages, so
	// what it lists is the first page (docs/api.md, "Lists").
	DefaultPageSize int `ini:"default_page_size" default:"1000" help:"Items a list returns when the request has no limit; a longer list ends with a next link to the following page. The openstack CLI does not follow next links, so it shows (and finds names among) only the first page."`
	MaxPageSize     int `ini:"max_page_size" default:"1000" help:"Most items one list page returns; a larger limit is lowered to this. Lists are streamed, so their memory does not grow with the page."`
	// Timeouts against slow or stalled clients (qinling-api/internal/app/httpserver.go).
	ReadHeaderTimeout time.Duration `ini:"read_header_timeout" default:"30s" help:"How long a client may take to send a request's headers (within read_timeout); a connection that trickles them (slowloris) is closed after it."`
	ReadTimeout       time.Duration `ini:"read_timeout" default:"300s" help:"How long a client may take to send a whole request, headers and body; a stalled or crawling upload is refused and its connection closed. 300s lets a package of upstream's 51 MiB arrive at about 180 KB/s. Once the request has arrived it may run as long as it needs (see write_timeout)."`
	IdleTimeout       time.Duration `ini:"idle_timeout" default:"120s" help:"How long a keep-alive connection may sit idle between requests before it is closed."`
	WriteTimeout      time.Duration `ini:"write_timeout" default:"0s" help:"Longest time from the end of a request's headers to the end of its response; the connection is closed after it. It must cover the slowest legitimate request: a synchronous execution holds its request open until the engine answers, which may take the function's whole timeout ([resource_limits] max_timeout, 300s by default) plus starting a worker, and is bounded by [DEFAULT] rpc_response_timeout (330s). 0 means read_timeout + rpc_response_timeout + 30s (660s by default); a value set here must be at least read_timeout + rpc_response_timeout."`
}

// Pecan is [pecan]; the name is upstream's.
type Pecan struct {
	AuthEnable bool `ini:"auth_enable" default:"true" help:"Validate Keystone tokens and enforce policy. When false every caller is project 'default' and admin (--all-in-one turns it off unless a config file sets it)."`
}

// Engine is [engine].
type Engine struct {
	Host                      string        `ini:"host" default:"" help:"Name of this engine on the RPC bus and in worker records. Empty means the machine's hostname plus the process ID."`
	Topic                     string        `ini:"topic" default:"qinling_engine" help:"RPC topic (queue) the engines consume."`
	Orchestrator              string        `ini:"orchestrator" default:"local" help:"Orchestrator backend. local: worker processes on each engine's machine. kubernetes: a pool of pods per runtime in a Kubernetes cluster, shared by all engines, which also runs image functions ([kubernetes], docs/kubernetes.md)." choices:"local,kubernetes"`
	FunctionServiceExpiration time.Duration `ini:"function_service_expiration" default:"3600s" help:"Idle time after which a function's workers are released. Integer seconds or a Go duration."`
	ExpirationCheckInterval   time.Duration `ini:"function_service_expiration_interval" default:"300s" help:"How often idle workers are looked for."`
	FunctionConcurrency       int           `ini:"function_concurrency" default:"3" help:"Most executions one worker runs at once; more wait in their function's queue for the first worker that frees up (docs/scaling.md)."`
	MaxWorkersPerFunction     int           `ini:"max_workers_per_function" default:"10" help:"Upper bound on workers one function version can scale to (per engine with the local orchestrator)."`
	// Queueing and autoscaling (docs/scaling.md).
	ScalingPolicy         string        `ini:"scaling_policy" default:"queue" help:"How a function's workers follow its load. queue: desired workers = ceil((running + queued executions) / scale_target_per_worker), between min_workers_per_function and max_workers_per_function, a burst when queued executions wait longer than scale_burst_after, and idle workers released after scale_down_window. upstream: upstream Qinling's rule, one more worker at a time while executions per worker exceed function_concurrency, released only by function_service_expiration (kept for comparison)." choices:"queue,upstream"`
	MinWorkersPerFunction int           `ini:"min_workers_per_function" default:"1" help:"Workers the queue policy keeps for an active function (from its first execution until function_service_expiration releases them all)."`
	ScaleTargetPerWorker  int           `ini:"scale_target_per_worker" default:"0" help:"Running plus queued executions the queue policy plans per worker. 0 means function_concurrency: enough workers for every execution to run at once, up to max_workers_per_function. Larger packs short functions onto fewer workers and lets them queue briefly."`
	ScaleBurstAfter       time.Duration `ini:"scale_burst_after" default:"200ms" help:"A queued execution that waited this long makes the queue stale: the queue policy adds the workers that would drain it within about this long at the function's observed call duration."`
	ScaleInterval         time.Duration `ini:"scale_interval" default:"1s" help:"How often an engine looks at its functions' queues (stale ones get a burst) and idle workers (for scale-down)."`
	ScaleDownWindow       time.Duration `ini:"scale_down_window" default:"60s" help:"How long fewer workers must have sufficed before the queue policy releases idle ones."`
	ScaleDownStep         int           `ini:"scale_down_step" default:"1" help:"Most idle workers of one function released per scale_interval once scale_down_window passed."`
	MaxPendingPerFunction int           `ini:"max_pending_executions_per_function" default:"1000" help:"Executions of one function version that may be running or queued at once; a further one is refused with 429 and Retry-After (checked by the API)."`
	MaxPendingPerProject  int           `ini:"max_pending_executions_per_project" default:"2000" help:"Executions of one project that may be running or queued at once; a further one is refused with 429 and Retry-After (checked by the API)."`
	// Crash recovery and shutdown (docs/reliability.md).
	ShutdownGracePeriod time.Duration `ini:"shutdown_grace_period" default:"60s" help:"On SIGTERM or Ctrl-C the engine stops taking executions and lets the running ones finish for at most this long; those still running then end in error with the message that the engine stopped during the execution. 0 ends them at once."`
	RecoveryInterval    time.Duration `ini:"recovery_interval" default:"30s" help:"How often an engine looks for running executions of engines that vanished (their etcd registration expired, [etcd] lock_ttl after a crash) and ends them in error saying the engine stopped during the execution."`
	// Isolation between executions (docs/isolation.md).
	Isolation       string        `ini:"isolation" default:"reuse" help:"How executions on one worker are kept apart. reuse: upstream's warm reuse, the fastest; an execution sees the module globals, /tmp files and leftover processes of the previous ones on its worker. strict: every execution runs in a fresh process forked from a zygote that has the runtime (and, when preloaded, the function) imported, prepared before the call arrives, with its own /tmp, and killed with everything it started once it has answered; it costs about 3 ms of CPU per call and 11 MiB per worker more, plus 2 MiB per running execution, all counted in the function's memory (docs/isolation.md). [local_orchestrator] strict_runtimes makes single runtimes strict." choices:"reuse,strict"`
	PreloadPolicy   string        `ini:"preload_policy" default:"traffic" help:"What strict workers import before a call arrives. traffic: the function versions called most in the last preload_window get a function zygote (their modules imported in advance), up to preload_slots; the others import their modules in each execution. function, runtime or none apply that level to every function (none: a fresh interpreter per execution, the baseline)." choices:"traffic,function,runtime,none"`
	PreloadSlots    int           `ini:"preload_slots" default:"8" help:"Function versions that may have function zygotes at once on this engine (each holds the function's modules and its prepared processes in memory, in every worker of the function)."`
	PreloadWindow   time.Duration `ini:"preload_window" default:"60s" help:"How far back the traffic policy counts calls."`
	PreloadInterval time.Duration `ini:"preload_interval" default:"5s" help:"How often the preloading plan is refreshed; a busy function is also preloaded at once while slots are free."`
}

// Local is [local_orchestrator].
type Local struct {
	PoolSize      int    `ini:"pool_size" default:"2" help:"Prewarmed, not yet specialised worker processes kept per runtime."`
	Python3       string `ini:"python3" default:"/usr/bin/python3" help:"Python 3 interpreter that runs the python3 runtime." path:"true"`
	RuntimesDir   string `ini:"runtimes_dir" default:"" help:"Directory holding the runtime servers (python3/server.py, ...). Empty means the copies built into the binary, written out to <state_path>/runtimes at start." path:"true"`
	WorkersDir    string `ini:"workers_dir" default:"" help:"Directory for the workers' private directories. Empty means <state_path>/workers." path:"true"`
	MaxLogSize    int    `ini:"max_log_size" default:"1048576" help:"Bytes of an execution's output kept as its log; the rest is cut with a note."`
	MaxResultSize int    `ini:"max_result_size" default:"1048576" help:"Largest JSON-encoded function result, in bytes; a larger one fails the execution with a clear message."`
	// Unpacked packages (orchestrator/local/pkgcache.go, docs/isolation.md).
	PackageCacheSize         int64 `ini:"package_cache_size" default:"2147483648" help:"Bytes of disk that all unpacked function packages together may take in workers_dir. Each function version's package is unpacked once, shared read-only by all its workers; copies no worker uses are removed, least recently used first, to make room. A package that does not fit (larger than this alone, or beside the copies running workers use) fails its executions with a message saying so. At least 1 MiB; the per-package limit of 512 MiB still applies at upload."`
	PackageCacheProjectShare int   `ini:"package_cache_project_share" default:"50" help:"Percent of package_cache_size that the unpacked packages of one project may take together. A project's package that does not fit within its share removes that project's own unused copies first, oldest first, never another project's to make room for it; one that still does not fit fails its executions with a message saying so. From 1 to 100."`
	// The nodejs runtime (docs/isolation.md, "Node.js").
	NodeJS             string `ini:"nodejs" default:"/usr/bin/node" help:"Node.js executable that runs the nodejs runtime (Debian: apt-get install nodejs). Needed only once a nodejs runtime is created; without it such a runtime ends in error saying so." path:"true"`
	NodeMemoryOverhead int64  `ini:"nodejs_memory_overhead" default:"67108864" help:"Bytes a nodejs worker may use beyond its function's memory_size (its cgroup memory limit is the sum): Node.js itself needs more than upstream's default memory_size of 32 MiB before running any function. The function's JavaScript heap stays limited to memory_size; a function that exceeds either limit fails with upstream's resource message, the limit named in its log. 0 applies memory_size alone."`
	// Confinement of workers (orchestrator/local/sandbox, orchestrator/local/cgroup).
	Sandbox             bool     `ini:"sandbox" default:"true" help:"Run every worker in a sandbox: its own mount, PID, IPC, UTS and network namespaces, a read-only root holding only the runtime and the function's package, a private /tmp, an unprivileged user without capabilities. Needs root; if sandboxes cannot be created the engine refuses to start. false runs functions as plain processes of the engine's user, able to read whatever it can: only for development."`
	SandboxUID          int      `ini:"sandbox_uid" default:"65534" help:"User ID functions run as in the sandbox (never 0)."`
	SandboxGID          int      `ini:"sandbox_gid" default:"65534" help:"Group ID functions run as in the sandbox (never 0)."`
	NetworkRuntimes     []string `ini:"network_runtimes" default:"" help:"Runtimes, by ID or image, whose sandboxed workers share the host's network (and see its /etc/resolv.conf, /etc/hosts and CA certificates), e.g. so functions can call OpenStack services. They can then reach every service of the host, including its loopback addresses. Other workers only have a loopback interface of their own."`
	SandboxHostUIDStart int      `ini:"sandbox_host_uid_start" default:"1879048192" help:"First host user ID of the range sandboxed workers run as: each worker gets a host uid (and gid, the same number) of its own from it, in a user namespace where it is sandbox_uid, so that no two workers, of one engine or of several sharing workers_dir, share a host identity (files, signals, kernel keyrings). The range must hold no other user of the machine; the default, 0x70000000, is beyond systemd's container ranges."`
	SandboxHostUIDCount int      `ini:"sandbox_host_uid_count" default:"65536" help:"Size of the range of sandbox_host_uid_start: at most this many sandboxed workers at once on the machine; a worker that finds none free fails to start, saying so."`
	SandboxTmpSize      int64    `ini:"sandbox_tmp_size" default:"67108864" help:"Size in bytes of each sandboxed worker's private /tmp; what is written there also counts against the function's memory."`
	SandboxPaths        []string `ini:"sandbox_extra_paths" default:"" help:"Further host paths (files or directories) that sandboxed workers see read-only at the same place, e.g. a directory of shared libraries or data; the interpreter, its standard library, site-packages and time zone data are always there."`
	CgroupParent        string   `ini:"cgroup_parent" default:"qinling" help:"cgroup under which every worker gets its own, for the function's cpu and memory limits and max_pids. Relative: below the engine's own cgroup; absolute: from the root of each hierarchy (cgroup v1 or v2, detected per controller). A controller that is missing or not writable is logged once and its limit not applied. Empty disables cgroups."`
	MaxPids             int      `ini:"max_pids" default:"64" help:"Processes and threads one worker may have (cgroup pids limit): a fork bomb fails (upstream's resource message, the limit named in its log) instead of exhausting the machine. 0 means no limit."`
	// Strict isolation ([engine] isolation).
	StrictRuntimes []string `ini:"strict_runtimes" default:"" help:"Runtimes, by ID or image, whose workers use strict isolation even when [engine] isolation = reuse."`
	StrictSpares   int      `ini:"strict_spares" default:"2" help:"Execution processes each strict worker keeps prepared (forked, confined, warmed up) before calls arrive, so that a call does not wait for a fork: with two, back-to-back calls always find one ready while the next is prepared; more serve bursts of concurrent calls. About 2 MiB each (a Node.js one, a fresh process, about 8 MiB), counted in the function's memory. 0 forks one when a call arrives."`
}

// Kubernetes is [kubernetes], the kubernetes orchestrator (docs/kubernetes.md).
type Kubernetes struct {
	Kubeconfig         string        `ini:"kubeconfig" default:"" help:"kubeconfig file of the cluster and the identity the engines use (its current context). Empty means in-cluster configuration (the service account of a pod the engine runs in)." path:"true"`
	Namespace          string        `ini:"namespace" default:"qinling" help:"Namespace of the runtime pools and function pods; it must exist, and the identity needs the Role in docs/kubernetes.md in it."`
	Replicas           int           `ini:"replicas" default:"3" help:"Free, prewarmed pods kept per runtime (the Deployment's replicas). A pod taken by a function leaves the Deployment, which starts a replacement, so the pool keeps this many free pods."`
	ImagePullPolicy    string        `ini:"image_pull_policy" default:"IfNotPresent" help:"imagePullPolicy of runtime and image-function containers." choices:"IfNotPresent,Always,Never"`
	WorkerPort         int           `ini:"worker_port" default:"9090" help:"Port the runtime server listens on in its container (upstream's 9090). Engines reach workers at http://<pod IP>:<worker_port>, so pod IPs must be routable from every engine."`
	PoolReadyTimeout   time.Duration `ini:"pool_ready_timeout" default:"300s" help:"How long creating or updating a runtime waits for its pool to become available before the runtime ends in error with the pods' reason (image pull, scheduling, crash)."`
	ScaleUpTimeout     time.Duration `ini:"scale_up_timeout" default:"60s" help:"How long a scale-up waits for free pods when the pool has fewer than it needs (the Deployment starts replacements for the pods taken), before it fails for lack of capacity."`
	RequestTimeout     time.Duration `ini:"request_timeout" default:"15s" help:"Bound on every single call to the Kubernetes API server, so an unreachable API server fails operations with a clear error instead of blocking them."`
	QPS                int           `ini:"qps" default:"20" help:"Sustained requests per second to the Kubernetes API server from one engine (client-go rate limiter)."`
	Burst              int           `ini:"burst" default:"40" help:"Request burst to the Kubernetes API server from one engine."`
	PoolCPU            int           `ini:"pool_cpu" default:"300" help:"CPU (millicores) requested and limited for each pool pod before it serves a function; a function's own cpu replaces it through an in-place resize where the cluster supports it (Kubernetes 1.33+), else this stays its limit."`
	PoolMemory         int64         `ini:"pool_memory" default:"134217728" help:"Memory (bytes) requested and limited for each pool pod before it serves a function; replaced by the function's memory_size through an in-place resize where supported, else this stays its limit."`
	NodeMemoryOverhead int64         `ini:"nodejs_memory_overhead" default:"67108864" help:"Bytes a Node.js runtime pod (an image named nodejs-runtime, node-runtime, nodejs or node) may use beyond its function's memory_size when it is resized: Node.js itself needs more than upstream's default memory_size of 32 MiB. The runtime server still limits the function's JavaScript heap to memory_size. 0 applies memory_size alone."`
	RunAsUser          int64         `ini:"run_as_user" default:"65534" help:"User ID the runtime containers run as (runAsNonRoot is enforced; never 0)."`
	Resize             bool          `ini:"resize" default:"true" help:"Resize a pod in place to its function's cpu and memory_size when it is specialised (the pods/resize subresource). If the cluster refuses, this is logged once and pods keep pool_cpu and pool_memory."`
	ImageFunctions     bool          `ini:"image_functions" default:"true" help:"Allow image functions (code source image): each execution runs the function's own container image as a pod to completion. False keeps the API refusing them."`
}

// Storage is [storage].
type Storage struct {
	Provider       string `ini:"provider" default:"local" help:"Package storage backend: local (a directory API and engines share), swift (a Swift container) or s3 (an S3 bucket). See docs/storage.md." choices:"local,swift,s3"`
	FileSystemDir  string `ini:"file_system_dir" default:"" help:"Directory of the local package storage. Empty means <state_path>/packages." path:"true"`
	MaxPackageSize int64  `ini:"max_package_size" default:"53477376" help:"Largest function package accepted, in bytes (upstream's 51 MiB)."`
	// Object stores (swift, s3): how long one request may wait, and how a
	// store that fails transiently is retried before it counts as down.
	RequestTimeout time.Duration `ini:"request_timeout" default:"30s" help:"swift and s3: longest wait to connect to the store or for the headers of one answer; a store slower than that is retried, then reported unavailable (503)."`
	Retries        int           `ini:"retries" default:"3" help:"swift and s3: how many times a request that failed transiently (5xx, timeout, refused connection) is repeated, with doubling waits, before the store counts as unavailable."`
	RetryBackoff   time.Duration `ini:"retry_backoff" default:"250ms" help:"swift and s3: first wait before a retry; it doubles with each one."`
	// Swift: through Keystone as the service user of [keystone_authtoken]
	// (upstream's way), or with Swift's own auth when swift_auth_url is set.
	SwiftContainer string `ini:"swift_container" default:"qinling" help:"swift: container that holds every package; it must exist."`
	SwiftInterface string `ini:"swift_interface" default:"public" help:"swift with Keystone: which catalog endpoint of the object-store service to use." choices:"public,internal,admin"`
	SwiftAuthURL   string `ini:"swift_auth_url" default:"" help:"swift without Keystone: Swift's own auth endpoint (tempauth, e.g. http://host:8080/auth/v1.0). Empty means Keystone: the service user of [keystone_authtoken] and the catalog's object-store endpoint."`
	SwiftUser      string `ini:"swift_user" default:"" help:"swift with swift_auth_url: user, as account:user."`
	SwiftKey       string `ini:"swift_key" default:"" help:"swift with swift_auth_url: the user's key." secret:"true"`
	// S3: any server with the S3 API, addressed path-style.
	S3Endpoint  string `ini:"s3_endpoint" default:"" help:"s3: the server's URL, http(s)://host[:port]; buckets are addressed path-style."`
	S3Region    string `ini:"s3_region" default:"us-east-1" help:"s3: region the requests are signed for."`
	S3Bucket    string `ini:"s3_bucket" default:"qinling" help:"s3: bucket that holds every package; it must exist."`
	S3AccessKey string `ini:"s3_access_key" default:"" help:"s3: access key (with Swift's s3api and Keystone, an EC2 credential's access)."`
	S3SecretKey string `ini:"s3_secret_key" default:"" help:"s3: secret key." secret:"true"`
}

// Database is [database].
type Database struct {
	Connection  string `ini:"connection" default:"" help:"Database URL: sqlite:///path/to/file.sqlite or mysql+pymysql://user:pass@host/db. Empty means sqlite:///<state_path>/qinling.sqlite."`
	MaxPoolSize int    `ini:"max_pool_size" default:"10" help:"Open connections kept to MySQL per process."`
}

// Etcd is [etcd].
type Etcd struct {
	Embedded    bool          `ini:"embedded" default:"true" help:"Run an etcd server inside this process (one-process deployments). Set false and point host/port at a cluster otherwise."`
	Host        string        `ini:"host" default:"127.0.0.1" help:"etcd host (the embedded etcd listens here)."`
	Port        int           `ini:"port" default:"2379" help:"etcd client port (the embedded etcd listens here)."`
	PeerPort    int           `ini:"peer_port" default:"2380" help:"Peer port of the embedded etcd."`
	Protocol    string        `ini:"protocol" default:"http" help:"http or https." choices:"http,https"`
	CACert      string        `ini:"ca_cert" default:"" help:"CA certificate for https." path:"true"`
	CertFile    string        `ini:"cert_file" default:"" help:"Client certificate for https." path:"true"`
	CertKey     string        `ini:"cert_key" default:"" help:"Client key for https." path:"true"`
	LockTTL     time.Duration `ini:"lock_ttl" default:"10s" help:"Lease TTL of engine locks: how long a crashed engine's locks outlive it."`
	DialTimeout time.Duration `ini:"dial_timeout" default:"5s" help:"How long to wait for etcd when connecting."`
}

// ResourceLimits is [resource_limits], upstream's names and defaults.
type ResourceLimits struct {
	DefaultCPU     int   `ini:"default_cpu" default:"100" help:"Default CPU of a function, in millicores."`
	MinCPU         int   `ini:"min_cpu" default:"100" help:"Smallest CPU a function may ask for, in millicores."`
	MaxCPU         int   `ini:"max_cpu" default:"300" help:"Largest CPU a function may ask for, in millicores."`
	DefaultMemory  int64 `ini:"default_memory" default:"33554432" help:"Default memory of a function, in bytes."`
	MinMemory      int64 `ini:"min_memory" default:"33554432" help:"Smallest memory a function may ask for, in bytes."`
	MaxMemory      int64 `ini:"max_memory" default:"134217728" help:"Largest memory a function may ask for, in bytes."`
	DefaultTimeout int   `ini:"default_timeout" default:"5" help:"Default function timeout, in seconds."`
	MinTimeout     int   `ini:"min_timeout" default:"1" help:"Smallest function timeout, in seconds."`
	MaxTimeout     int   `ini:"max_timeout" default:"300" help:"Largest function timeout, in seconds."`
}

// KeystoneAuth is [keystone_authtoken].
type KeystoneAuth struct {
	WWWAuthenticateURI string        `ini:"www_authenticate_uri" default:"" help:"Public Keystone URL (v3) tokens are validated against."`
	AuthURL            string        `ini:"auth_url" default:"" help:"Keystone URL for the service user; empty means www_authenticate_uri."`
	Username           string        `ini:"username" default:"" help:"Qinling service user."`
	Password           string        `ini:"password" default:"" help:"Qinling service user's password." secret:"true"`
	ProjectName        string        `ini:"project_name" default:"service" help:"Project of the service user."`
	UserDomainName     string        `ini:"user_domain_name" default:"Default" help:"Domain of the service user."`
	ProjectDomainName  string        `ini:"project_domain_name" default:"Default" help:"Domain of the service user's project."`
	RegionName         string        `ini:"region_name" default:"RegionOne" help:"Region of Qinling's catalog endpoint."`
	TokenCacheSize     int           `ini:"token_cache_size" default:"10000" help:"Validated tokens kept in memory until they expire."`
	TokenCacheTime     time.Duration `ini:"token_cache_time" default:"300s" help:"Longest a validated token is trusted without asking Keystone again."`
}

// CORS is [cors], as oslo.middleware's.
type CORS struct {
	AllowedOrigin    []string `ini:"allowed_origin" default:"" help:"Origins allowed to make cross-site requests (comma-separated); empty disables CORS."`
	AllowCredentials bool     `ini:"allow_credentials" default:"true" help:"Whether the actual request may carry credentials."`
	ExposeHeaders    []string `ini:"expose_headers" default:"X-Auth-Token,X-Subject-Token,X-Service-Token,X-Project-Id,X-User-Name,X-Project-Name,X-Openstack-Request-Id" help:"Headers exposed to the browser."`
	MaxAge           int      `ini:"max_age" default:"3600" help:"Seconds a preflight answer may be cached."`
	AllowMethods     []string `ini:"allow_methods" default:"GET,PUT,POST,DELETE,PATCH" help:"Methods allowed in cross-site requests."`
	AllowHeaders     []string `ini:"allow_headers" default:"X-Auth-Token,X-Identity-Status,X-Roles,X-Service-Catalog,X-User-Id,X-Tenant-Id,X-Project-Id,X-User-Name,X-Project-Name,Content-Type,X-Openstack-Request-Id" help:"Headers allowed in cross-site requests."`
}

// Metrics is [metrics]: Prometheus's /metrics on the API and the engines
// (docs/operations.md).
type Metrics struct {
	APIEnabled    bool   `ini:"api_enabled" default:"true" help:"Serve Prometheus metrics at /metrics on the API's own listener (with --all-in-one, the engine's metrics too). Like oslo.middleware's /healthcheck it needs no Keystone token (Prometheus cannot get one); set bearer_token to require one of your own, or keep the API's listener off untrusted networks: the metrics name projects and functions."`
	EngineAddress string `ini:"engine_address" default:"" help:"host:port where a standalone qinling-engine serves Prometheus metrics at /metrics, e.g. 127.0.0.1:7071; every engine on a machine needs its own port. Empty disables them. The all-in-one ignores it."`
	BearerToken   string `ini:"bearer_token" default:"" help:"When set, /metrics (API and engines) answers only requests with the header Authorization: Bearer <token>, as Prometheus sends with a scrape config's authorization credentials_file; others get 401." secret:"true"`
}
