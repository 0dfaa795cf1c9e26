//go:build k8s

package kubernetes_test

// The conformance suite against a real cluster (the devstack one:
// ./tox -e k8s, or any cluster):
//
//	QINLING_K8S_KUBECONFIG=/path/to/kubeconfig \
//	QINLING_K8S_IMAGE=localhost/qinling-go/python3-runtime:latest \
//	QINLING_K8S_NAMESPACE=qinling \
//	go test -tags k8s -run TestRealCluster -v ./orchestrator/kubernetes/
//
// The identity needs the Role of docs/kubernetes.md in the namespace, and
// pod IPs must be reachable from this machine. QINLING_K8S_PULL_POLICY
// (default IfNotPresent) and QINLING_K8S_IMAGE_FUNCTION (an image that
// exits 0, for the image-function case) are optional.

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8s "k8s.io/client-go/kubernetes"

	"github.com/qinling-go/qinling/orchestrator"
	"github.com/qinling-go/qinling/orchestrator/kubernetes"
	"github.com/qinling-go/qinling/orchestrator/orchestratortest"
)

type realCluster struct {
	client k8s.Interface
	ns     string
	image  string
	pull   corev1.PullPolicy
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func newRealCluster(t *testing.T) *realCluster {
	t.Helper()
	kubeconfig := os.Getenv("QINLING_K8S_KUBECONFIG")
	if kubeconfig == "" {
		t.Skip("QINLING_K8S_KUBECONFIG is not set: set it to a kubeconfig of a cluster whose pod IPs this machine reaches (devstack: KUBECONFIG_QINLING in /opt/qinling-k8s-dev/stack.env)")
	}
	client, err := kubernetes.NewClient(kubernetes.ClientConfig{Kubeconfig: kubeconfig, QPS: 50, Burst: 100})
	require.NoError(t, err)
	return &realCluster{
		client: client,
		ns:     envOr("QINLING_K8S_NAMESPACE", "qinling"),
		image:  envOr("QINLING_K8S_IMAGE", "localhost/qinling-go/python3-runtime:latest"),
		pull:   corev1.PullPolicy(envOr("QINLING_K8S_PULL_POLICY", "IfNotPresent")),
	}
}

func (c *realCluster) backend(t *testing.T, tune ...func(*kubernetes.Config)) *kubernetes.Orchestrator {
	t.Helper()
	cfg := kubernetes.Config{
		Client: c.client, Namespace: c.ns, Replicas: 2, ImagePullPolicy: c.pull,
		PoolReadyTimeout: 2 * time.Minute, ScaleUpTimeout: time.Minute, RequestTimeout: 15 * time.Second,
		PoolCPU: 100, PoolMemory: 64 << 20, Resize: true, PollInterval: 250 * time.Millisecond,
		Owner: "conformance-" + t.Name(),
	}
	for _, f := range tune {
		f(&cfg)
	}
	o, err := kubernetes.New(cfg)
	require.NoError(t, err)
	return o
}

// cleanup deletes whatever a test left of runtime id in the cluster.
func (c *realCluster) cleanup(t *testing.T, runtimeIDs ...string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		o, err := kubernetes.New(kubernetes.Config{Client: c.client, Namespace: c.ns})
		require.NoError(t, err)
		defer o.Close()
		for _, id := range runtimeIDs {
			if err := o.DeletePool(ctx, id); err != nil {
				t.Logf("cleanup of %s: %v", id, err)
			}
		}
	})
}

func TestRealCluster(t *testing.T) {
	c := newRealCluster(t)
	orchestratortest.Run(t, orchestratortest.Harness{
		New: func(t *testing.T) orchestrator.Orchestrator {
			// The suite names its pools after the test, and uses rt-bad.
			c.cleanup(t, "rt-"+strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")), "rt-bad")
			return c.backend(t)
		},
		Image:    c.image,
		PoolSize: 2,
		Function: orchestratortest.PythonFunction,
	})
}

func TestRealClusterUnschedulablePool(t *testing.T) {
	c := newRealCluster(t)
	o := c.backend(t, func(cfg *kubernetes.Config) {
		cfg.PoolCPU = 1000 * 1000 // a thousand cores
		cfg.PoolReadyTimeout = 20 * time.Second
	})
	defer o.Close()
	c.cleanup(t, "rt-unschedulable")
	err := o.CreatePool(context.Background(), orchestrator.Runtime{ID: "rt-unschedulable", Image: c.image})
	require.Error(t, err)
	require.ErrorContains(t, err, "Insufficient cpu")
	_, err = o.Pool(context.Background(), "rt-unschedulable")
	require.ErrorIs(t, err, orchestrator.ErrPoolNotFound)
}

func TestRealClusterResize(t *testing.T) {
	c := newRealCluster(t)
	o := c.backend(t)
	defer o.Close()
	c.cleanup(t, "rt-resize")
	ctx := context.Background()
	require.NoError(t, o.CreatePool(ctx, orchestrator.Runtime{ID: "rt-resize", Image: c.image}))
	pkg, entry := orchestratortest.PythonFunction(t, orchestratortest.Hello)
	fn := orchestrator.Function{ID: "fn-resize", RuntimeID: "rt-resize", Entry: entry, CPU: 200, MemorySize: 96 << 20, Timeout: 5 * time.Second, Package: pkg}
	ws, err := o.ScaleUp(ctx, fn, 1)
	require.NoError(t, err)
	p, err := c.client.CoreV1().Pods(c.ns).Get(ctx, ws[0].Name, metav1.GetOptions{})
	require.NoError(t, err)
	t.Logf("pod %s: spec limits %v, status resources %v, conditions %v", p.Name,
		p.Spec.Containers[0].Resources.Limits, p.Status.ContainerStatuses[0].Resources, p.Status.Conditions)
	require.Equal(t, "200m", p.Spec.Containers[0].Resources.Limits.Cpu().String(), "resized in place (Kubernetes 1.33+)")
	res, err := o.Run(ctx, ws[0], orchestrator.Invocation{ExecutionID: "e-resize", FunctionID: fn.ID, Entry: entry, Timeout: 5 * time.Second})
	require.NoError(t, err)
	require.True(t, res.Success, "%s", res.Output)
}

func TestRealClusterImageFunction(t *testing.T) {
	c := newRealCluster(t)
	image := os.Getenv("QINLING_K8S_IMAGE_FUNCTION")
	if image == "" {
		t.Skip("QINLING_K8S_IMAGE_FUNCTION is not set: an image that exits 0 (devstack builds one)")
	}
	o := c.backend(t)
	defer o.Close()
	res, err := o.RunImage(context.Background(), orchestrator.ImageInvocation{
		ExecutionID: "exec-real-1", FunctionID: "fn-image", Image: image, Args: []string{"Qinling"},
		CPU: 100, MemorySize: 32 << 20, Timeout: 30 * time.Second,
	})
	require.NoError(t, err)
	require.True(t, res.Success, "output %s logs %s", res.Output, res.Logs)
	t.Logf("duration %.0f s, logs %q", res.Duration, res.Logs)
}
