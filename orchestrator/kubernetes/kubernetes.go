// Package kubernetes is the orchestrator that runs function workers as pods
// of a Kubernetes cluster (docs/kubernetes.md), shared by every engine.
//
// Each runtime has a pool: a Deployment named after the runtime whose pods
// run the runtime image and serve the worker protocol on WorkerPort. Its
// selector is runtime_id=<id> and "no function_id label", so a pod that is
// specialised (labelled function_id/function_version) leaves the Deployment
// and its ReplicaSet starts a replacement: the pool keeps Replicas free pods
// without anyone scaling it. Specialising a pod is a label update with a
// resourceVersion precondition (two engines never take the same pod), then
// the engine pushes the function's zip to the pod (POST /package) and, where
// the cluster allows, resizes the pod in place to the function's cpu and
// memory. Executions are POST /execute to http://<pod IP>:<port>.
//
// Image functions (orchestrator.ImageRunner) run as one pod per execution.
//
// Every call to the API server is bounded by Config.RequestTimeout, and
// errors from it are wrapped with an errdefs kind (unavailable when the API
// server cannot be reached), so nothing waits forever on a lost cluster.
package kubernetes

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	k8s "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/qinling-go/qinling/orchestrator"
	"github.com/qinling-go/qinling/orchestrator/workerclient"
	"github.com/qinling-go/qinling/pkg/errdefs"
)

// Labels and names, upstream's where upstream had them.
const (
	LabelRuntime         = "runtime_id"
	LabelFunction        = "function_id"
	LabelFunctionVersion = "function_version"
	LabelExecution       = "execution_id"
	labelManagedBy       = "app.kubernetes.io/managed-by"
	managedBy            = "qinling"
	annotationRuntime    = "qinling.io/runtime-id"
	annotationEngine     = "qinling.io/specialised-by"
	workerContainer      = "worker"
	packagesDir          = "/var/qinling/packages"
)

// Config configures the backend.
type Config struct {
	// Client talks to the cluster (NewClient, or a fake clientset in tests).
	Client k8s.Interface
	// Namespace holds the pools and the function pods; it must exist.
	Namespace string
	// Replicas is the number of free pods kept per runtime (default 3).
	Replicas int
	// ImagePullPolicy of every container (default IfNotPresent).
	ImagePullPolicy corev1.PullPolicy
	// WorkerPort is where the runtime server listens in its pod (default 9090).
	WorkerPort int
	// PoolReadyTimeout bounds CreatePool and UpdatePool (default 5 min).
	PoolReadyTimeout time.Duration
	// ScaleUpTimeout bounds the wait for free pods in ScaleUp, and for an
	// image function's container to start (default 60 s).
	ScaleUpTimeout time.Duration
	// RequestTimeout bounds every single API call (default 15 s).
	RequestTimeout time.Duration
	// PoolCPU (millicores) and PoolMemory (bytes) are a pool pod's requests
	// and limits until it is resized for its function (default 300m, 128 MiB).
	PoolCPU    int
	PoolMemory int64
	// NodeMemoryOverhead is added to a function's memory_size when a pod of
	// a Node.js runtime image is resized: Node.js alone needs ~50 MiB.
	NodeMemoryOverhead int64
	// RunAsUser is the uid of every container (default 65534; never root).
	RunAsUser int64
	// Resize resizes specialised pods in place to their function's limits.
	Resize bool
	// MaxResultSize and MaxLogSize, when positive, are the engine's own
	// bounds on a pod's answer, as the local orchestrator's: a pod runs
	// function code in its runtime's process, so what the runtime claims
	// to have checked is not trusted (workerclient/limits.go).
	MaxResultSize, MaxLogSize int
	// RunGrace is how long past an invocation's timeout a worker may take to
	// answer before it is declared stuck and deleted (default 3 s).
	RunGrace time.Duration
	// PollInterval is how often pool and pod states are re-read while
	// waiting for them (default 1 s).
	PollInterval time.Duration
	// Owner names this engine on the pods it specialises (an annotation).
	Owner string
	// Dial, if set, replaces the TCP dial to workers (tests map pod IPs to
	// local runtime servers).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Logger receives the backend's events (default slog.Default()).
	Logger *slog.Logger
}

// ClientConfig says how to reach the API server.
type ClientConfig struct {
	// Kubeconfig is a kubeconfig file (its current context); empty means
	// the in-cluster service account.
	Kubeconfig string
	QPS        int
	Burst      int
}

// NewClient builds a typed clientset from a kubeconfig file or, without
// one, from the pod's in-cluster service account.
func NewClient(c ClientConfig) (k8s.Interface, error) {
	var rc *rest.Config
	var err error
	if c.Kubeconfig == "" {
		rc, err = rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("kubernetes.kubeconfig is empty and this is not a pod with a service account (%w); set it to a kubeconfig file", err)
		}
	} else {
		rc, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
			&clientcmd.ClientConfigLoadingRules{ExplicitPath: c.Kubeconfig}, &clientcmd.ConfigOverrides{}).ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("kubernetes.kubeconfig %s: %w", c.Kubeconfig, err)
		}
	}
	if c.QPS > 0 {
		rc.QPS = float32(c.QPS)
	}
	if c.Burst > 0 {
		rc.Burst = c.Burst
	}
	rc.UserAgent = "qinling-go"
	return k8s.NewForConfig(rc)
}

// Orchestrator is the Kubernetes backend. It keeps no state that another
// engine would need: pools, specialised pods and their functions are all
// in the cluster, so every engine can use every worker.
type Orchestrator struct {
	cfg    Config
	client k8s.Interface
	wc     *workerclient.Client
	log    *slog.Logger

	wg sync.WaitGroup // background clean-ups

	// deleted remembers the pods this instance deleted for a while, so Run
	// on them fails at once even though the pod may still be terminating;
	// sized the limits it last gave each pod, so Run resizes a pod only
	// when its function's limits changed.
	mu      sync.Mutex
	deleted map[string]time.Time
	sized   map[string]podSize

	noResize  atomic.Bool // the cluster cannot resize pods
	resizeOff sync.Once   // logs that once
}

var (
	_ orchestrator.Orchestrator = (*Orchestrator)(nil)
	_ orchestrator.PoolUpdater  = (*Orchestrator)(nil)
	_ orchestrator.ImageRunner  = (*Orchestrator)(nil)
)

// New returns the backend. It does not contact the cluster: an API server
// that is down at start makes the first operations fail, not the engine.
func New(cfg Config) (*Orchestrator, error) {
	if cfg.Client == nil {
		return nil, errors.New("kubernetes orchestrator: no client")
	}
	if cfg.Namespace == "" {
		cfg.Namespace = "qinling"
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 3
	}
	if cfg.ImagePullPolicy == "" {
		cfg.ImagePullPolicy = corev1.PullIfNotPresent
	}
	if cfg.WorkerPort <= 0 {
		cfg.WorkerPort = 9090
	}
	if cfg.PoolReadyTimeout <= 0 {
		cfg.PoolReadyTimeout = 5 * time.Minute
	}
	if cfg.ScaleUpTimeout <= 0 {
		cfg.ScaleUpTimeout = time.Minute
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 15 * time.Second
	}
	if cfg.PoolCPU <= 0 {
		cfg.PoolCPU = 300
	}
	if cfg.PoolMemory <= 0 {
		cfg.PoolMemory = 128 << 20
	}
	if cfg.RunAsUser <= 0 {
		cfg.RunAsUser = 65534
	}
	if cfg.RunGrace <= 0 {
		cfg.RunGrace = 3 * time.Second
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Orchestrator{
		cfg: cfg, client: cfg.Client, log: cfg.Logger,
		wc: workerclient.New(workerclient.Options{
			Dial: cfg.Dial, MaxResultBytes: cfg.MaxResultSize, MaxLogBytes: cfg.MaxLogSize,
		}),
		deleted: map[string]time.Time{},
		sized:   map[string]podSize{},
	}, nil
}

// Close waits for the background deletions this instance started (each
// bounded by RequestTimeout) and drops idle worker connections. Pods stay:
// they belong to the cluster, and other engines use them.
func (o *Orchestrator) Close() error {
	o.wg.Wait()
	o.wc.Close()
	return nil
}

// call bounds one API request.
func (o *Orchestrator) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, o.cfg.RequestTimeout)
}

// apiError gives an API server failure a kind: unavailable when the API
// server could not be reached or answered that it is overloaded, so the
// engine reports "try again" rather than a bug; a refusal by RBAC says
// which Role is missing. what says what was being done.
func apiError(err error, what string) error {
	switch {
	case err == nil:
		return nil
	case apierrors.IsForbidden(err):
		return errdefs.Wrap(errdefs.KindInternal, err,
			"Kubernetes refused to %s; the engines' identity needs the Role in docs/kubernetes.md", what)
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("%s: %w", what, err)
	case errors.Is(err, context.DeadlineExceeded), apierrors.IsTimeout(err), apierrors.IsServerTimeout(err),
		apierrors.IsServiceUnavailable(err), apierrors.IsTooManyRequests(err), apierrors.IsInternalError(err),
		isNetError(err):
		return errdefs.Wrap(errdefs.KindUnavailable, err, "The Kubernetes API server is unavailable (could not %s)", what)
	}
	return fmt.Errorf("%s: %w", what, err)
}

func isNetError(err error) bool {
	var ne net.Error
	var oe *net.OpError
	return errors.As(err, &ne) || errors.As(err, &oe)
}

// forget records pods this instance deleted (see deleted).
func (o *Orchestrator) forget(names ...string) {
	const keep = 10 * time.Minute
	now := time.Now()
	o.mu.Lock()
	defer o.mu.Unlock()
	for n, t := range o.deleted {
		if now.Sub(t) > keep {
			delete(o.deleted, n)
		}
	}
	for _, n := range names {
		o.deleted[n] = now
		delete(o.sized, n)
	}
}

func (o *Orchestrator) wasDeleted(name string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	_, ok := o.deleted[name]
	return ok
}

// background runs f with its own deadline, outliving the caller's context:
// clean-ups must happen even if the request that caused them is gone.
// Close waits for them.
func (o *Orchestrator) background(f func(ctx context.Context)) {
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		ctx, cancel := o.call(context.Background())
		defer cancel()
		f(ctx)
	}()
}

// dnsLabel matches names Kubernetes accepts for objects and label values
// alike.
var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

// deploymentName is the pool's Deployment: the runtime ID itself when it is
// a valid name (UUIDs are, as upstream), else a stable digest of it.
func deploymentName(runtimeID string) string {
	if dnsLabel.MatchString(runtimeID) && len(runtimeID) <= 52 {
		return runtimeID
	}
	sum := sha256.Sum256([]byte(runtimeID))
	return "runtime-" + hex.EncodeToString(sum[:10])
}

// workerAddress is how engines reach a pod's runtime server.
func (o *Orchestrator) workerAddress(p *corev1.Pod) string {
	return fmt.Sprintf("http://%s", net.JoinHostPort(p.Status.PodIP, fmt.Sprint(o.cfg.WorkerPort)))
}
