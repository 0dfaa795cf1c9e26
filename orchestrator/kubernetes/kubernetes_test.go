package kubernetes_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	k8stesting "k8s.io/client-go/testing"

	"github.com/qinling-go/qinling/orchestrator"
	"github.com/qinling-go/qinling/orchestrator/kubernetes"
	"github.com/qinling-go/qinling/orchestrator/kubernetes/kubetest"
	"github.com/qinling-go/qinling/orchestrator/orchestratortest"
	"github.com/qinling-go/qinling/pkg/errdefs"
)

const (
	image     = "localhost/qinling-go/python3-runtime:latest"
	nodeImage = "localhost/qinling-go/nodejs-runtime:latest"
	poolSize  = 2
)

// newBackend returns a backend on cluster c.
func newBackend(t *testing.T, c *kubetest.Cluster, tune ...func(*kubernetes.Config)) *kubernetes.Orchestrator {
	t.Helper()
	cfg := kubernetes.Config{
		Client: c.Client, Namespace: c.Namespace, Replicas: poolSize,
		PoolReadyTimeout: 20 * time.Second, ScaleUpTimeout: 20 * time.Second,
		RequestTimeout: 5 * time.Second, PollInterval: 20 * time.Millisecond,
		Resize: true, Dial: c.Dial, Owner: "engine-test",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	for _, f := range tune {
		f(&cfg)
	}
	o, err := kubernetes.New(cfg)
	require.NoError(t, err)
	return o
}

// TestConformance runs the suite on pods of each runtime image: kubetest
// backs them with the real runtime server (runtimes/python3/server.py or
// runtimes/nodejs/server.js), so the engine's POST /package and /execute
// meet it.
func TestConformance(t *testing.T) {
	for _, tc := range []struct {
		name     string
		image    string
		function func(t *testing.T, name string) (orchestrator.Package, string)
	}{
		{name: "python3", image: image, function: orchestratortest.PythonFunction},
		{name: "nodejs", image: nodeImage, function: orchestratortest.NodeFunction},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.image == nodeImage {
				if _, err := os.Stat("/usr/bin/node"); err != nil {
					t.Skipf("/usr/bin/node not available (apt-get install nodejs): %v", err)
				}
			}
			orchestratortest.Run(t, orchestratortest.Harness{
				New: func(t *testing.T) orchestrator.Orchestrator {
					return newBackend(t, kubetest.Start(t, kubetest.Options{}))
				},
				Image:    tc.image,
				PoolSize: poolSize,
				Function: tc.function,
			})
		})
	}
}

func helloFunction(t *testing.T, runtimeID, id string) orchestrator.Function {
	pkg, entry := orchestratortest.PythonFunction(t, orchestratortest.Hello)
	return orchestrator.Function{ID: id, RuntimeID: runtimeID, Entry: entry, CPU: 100, MemorySize: 64 << 20, Timeout: 5 * time.Second, Package: pkg}
}

func TestCreatePoolFailures(t *testing.T) {
	for _, tc := range []struct {
		name      string
		opts      kubetest.Options
		image     string
		want      []string
		notRunnbl bool
	}{
		{
			name: "image cannot be pulled", image: "registry.example.com/unrunnable:1.0",
			want: []string{"ImagePullBackOff", "registry.example.com/unrunnable:1.0"}, notRunnbl: true,
		},
		{
			name: "pods cannot be scheduled", image: image,
			opts: kubetest.Options{Unschedulable: func(string) string { return "0/1 nodes are available: 1 Insufficient cpu." }},
			want: []string{"pods cannot be scheduled (Unschedulable): 0/1 nodes are available: 1 Insufficient cpu. (pool not available after 1s)"},
		},
		{
			name: "container crashes", image: "localhost/crashing:1",
			opts: kubetest.Options{Crashes: func(i string) bool { return strings.Contains(i, "crashing") }},
			want: []string{"CrashLoopBackOff"}, notRunnbl: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := kubetest.Start(t, tc.opts)
			o := newBackend(t, c, func(cfg *kubernetes.Config) { cfg.PoolReadyTimeout = time.Second })
			defer o.Close()
			err := o.CreatePool(context.Background(), orchestrator.Runtime{ID: "rt-1", Image: tc.image})
			require.Error(t, err)
			for _, w := range tc.want {
				require.ErrorContains(t, err, w)
			}
			require.Equal(t, tc.notRunnbl, errors.Is(err, orchestrator.ErrImageNotRunnable), "%v", err)
			// A pool that never came up is not left behind.
			_, err = o.Pool(context.Background(), "rt-1")
			require.ErrorIs(t, err, orchestrator.ErrPoolNotFound)
		})
	}
}

func TestPoolSpec(t *testing.T) {
	c := kubetest.Start(t, kubetest.Options{})
	o := newBackend(t, c, func(cfg *kubernetes.Config) { cfg.ImagePullPolicy = corev1.PullNever })
	defer o.Close()
	require.NoError(t, o.CreatePool(context.Background(), orchestrator.Runtime{ID: "rt-spec", Image: image}))
	d, err := c.Client.AppsV1().Deployments(c.Namespace).Get(context.Background(), "rt-spec", metav1.GetOptions{})
	require.NoError(t, err)
	spec := d.Spec.Template.Spec
	ctr := spec.Containers[0]
	require.Equal(t, "rt-spec", d.Spec.Selector.MatchLabels[kubernetes.LabelRuntime])
	require.Equal(t, kubernetes.LabelFunction, d.Spec.Selector.MatchExpressions[0].Key)
	require.False(t, *spec.AutomountServiceAccountToken)
	require.True(t, *spec.SecurityContext.RunAsNonRoot)
	require.False(t, *ctr.SecurityContext.AllowPrivilegeEscalation)
	require.Equal(t, []corev1.Capability{"ALL"}, ctr.SecurityContext.Capabilities.Drop)
	require.Equal(t, corev1.PullNever, ctr.ImagePullPolicy)
	require.Equal(t, "/ping", ctr.ReadinessProbe.HTTPGet.Path)
	require.Equal(t, int32(9090), ctr.Ports[0].ContainerPort)
	require.Equal(t, "/var/qinling/packages", ctr.VolumeMounts[0].MountPath)
	require.NotNil(t, spec.Volumes[0].EmptyDir)
	require.Equal(t, corev1.StorageMediumMemory, spec.Volumes[1].EmptyDir.Medium, "/tmp is tmpfs, off the node's disk")
	for _, v := range spec.Volumes {
		require.NotNil(t, v.EmptyDir, "%s: no other kind of volume", v.Name)
		require.NotNil(t, v.EmptyDir.SizeLimit, "%s is bounded", v.Name)
	}
	require.Equal(t, "1Gi", spec.Volumes[0].EmptyDir.SizeLimit.String(), "a package's zip and its expansion")
	requireTerminationMessageUnreachable(t, ctr)
	require.Equal(t, ctr.Resources.Requests, ctr.Resources.Limits, "Guaranteed, so a resize keeps the QoS class")
	require.Contains(t, ctr.Env, corev1.EnvVar{Name: "QINLING_WORKER_TOKEN", Value: "required"}, "other pods cannot call the runtime server")
}

// requireTerminationMessageUnreachable: the kubelet's termination message
// file, on the node's disk and bounded by nothing, is in a directory the
// pod's unprivileged user cannot enter.
func requireTerminationMessageUnreachable(t *testing.T, ctr corev1.Container) {
	t.Helper()
	require.Equal(t, "/root/termination-log", ctr.TerminationMessagePath)
	require.Equal(t, corev1.TerminationMessageReadFile, ctr.TerminationMessagePolicy)
}

func TestUpdatePoolRollsToTheNewImage(t *testing.T) {
	c := kubetest.Start(t, kubetest.Options{})
	o := newBackend(t, c)
	defer o.Close()
	ctx := context.Background()
	require.NoError(t, o.CreatePool(ctx, orchestrator.Runtime{ID: "rt-up", Image: image}))
	newImage := image + "-v2"
	require.NoError(t, o.UpdatePool(ctx, orchestrator.Runtime{ID: "rt-up", Image: newImage}))
	pods, err := c.Client.CoreV1().Pods(c.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "runtime_id=rt-up"})
	require.NoError(t, err)
	require.Len(t, pods.Items, poolSize)
	for _, p := range pods.Items {
		require.Equal(t, newImage, p.Spec.Containers[0].Image)
	}

	// A broken image fails with the reason and leaves the pool (and its
	// old pods) for the engine's rollback.
	err = o.UpdatePool(ctx, orchestrator.Runtime{ID: "rt-up", Image: "localhost/unrunnable:3"})
	require.ErrorIs(t, err, orchestrator.ErrImageNotRunnable)
	cp, err := o.Pool(ctx, "rt-up")
	require.NoError(t, err)
	require.Equal(t, poolSize, cp.Available)
	require.NoError(t, o.UpdatePool(ctx, orchestrator.Runtime{ID: "rt-up", Image: newImage}))
}

// Two engines (two backends on one cluster) scaling at once never get the
// same pod: the label update carries the pod's resourceVersion.
func TestClaimConflictBetweenEngines(t *testing.T) {
	c := kubetest.Start(t, kubetest.Options{})
	a, b := newBackend(t, c), newBackend(t, c)
	defer a.Close()
	defer b.Close()
	ctx := context.Background()
	require.NoError(t, a.CreatePool(ctx, orchestrator.Runtime{ID: "rt-c", Image: image}))
	require.NoError(t, b.CreatePool(ctx, orchestrator.Runtime{ID: "rt-c", Image: image}))

	var wg sync.WaitGroup
	results := make([][]orchestrator.Worker, 2)
	errs := make([]error, 2)
	for i, o := range []*kubernetes.Orchestrator{a, b} {
		wg.Go(func() {
			results[i], errs[i] = o.ScaleUp(ctx, helloFunction(t, "rt-c", fmt.Sprintf("fn-%d", i)), poolSize)
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	for i := range 2 {
		require.NoError(t, errs[i])
		for _, w := range results[i] {
			require.False(t, seen[w.Name], "pod %s handed to both engines", w.Name)
			seen[w.Name] = true
		}
	}
	// Each engine can run on the other's workers: nothing is engine-local.
	res, err := b.Run(ctx, results[0][0], orchestrator.Invocation{ExecutionID: "e1", FunctionID: "fn-0", Entry: "main.main", Timeout: 5 * time.Second})
	require.NoError(t, err)
	require.True(t, res.Success, "%s", res.Output)
	// A worker answers only for its own function (a reused pod IP).
	_, err = a.Run(ctx, results[0][0], orchestrator.Invocation{ExecutionID: "e2", FunctionID: "fn-1", Entry: "main.main", Timeout: 5 * time.Second})
	require.ErrorIs(t, err, orchestrator.ErrWorkerNotFound)
}

func TestScaleUpFailures(t *testing.T) {
	t.Run("no capacity in time", func(t *testing.T) {
		c := kubetest.Start(t, kubetest.Options{})
		o := newBackend(t, c, func(cfg *kubernetes.Config) { cfg.ScaleUpTimeout = 300 * time.Millisecond })
		defer o.Close()
		require.NoError(t, o.CreatePool(context.Background(), orchestrator.Runtime{ID: "rt-n", Image: image}))
		_, err := o.ScaleUp(context.Background(), helloFunction(t, "rt-n", "fn-big"), 50)
		require.ErrorIs(t, err, orchestrator.ErrNoCapacity)
		require.Equal(t, errdefs.KindUnavailable, errdefs.KindOf(err))
		require.Contains(t, errdefs.PublicMessage(err), "Not enough workers available: runtime rt-n had only")
		// The pods taken were released (deleted), none stays specialised.
		require.Eventually(t, func() bool {
			pods, err := c.Client.CoreV1().Pods(c.Namespace).List(context.Background(), metav1.ListOptions{LabelSelector: "function_id=fn-big"})
			return err == nil && len(pods.Items) == 0
		}, 5*time.Second, 20*time.Millisecond)
	})
	for _, img := range []string{image, nodeImage} {
		t.Run("bad package on "+img, func(t *testing.T) {
			if img == nodeImage {
				if _, err := os.Stat("/usr/bin/node"); err != nil {
					t.Skipf("/usr/bin/node not available: %v", err)
				}
			}
			c := kubetest.Start(t, kubetest.Options{})
			o := newBackend(t, c)
			defer o.Close()
			require.NoError(t, o.CreatePool(context.Background(), orchestrator.Runtime{ID: "rt-b", Image: img}))
			fn := helloFunction(t, "rt-b", "fn-bad")
			fn.Package = orchestrator.Package{Open: func(context.Context) (io.ReadCloser, error) {
				return io.NopCloser(strings.NewReader("not a zip")), nil
			}}
			_, err := o.ScaleUp(context.Background(), fn, 1)
			require.ErrorContains(t, err, "not a valid zip")
			require.Contains(t, errdefs.PublicMessage(err), "The function package was refused by the worker: package is not a valid zip file")
			pods, err := c.Client.CoreV1().Pods(c.Namespace).List(context.Background(), metav1.ListOptions{LabelSelector: "function_id=fn-bad"})
			require.NoError(t, err)
			require.Empty(t, pods.Items, "the pod that failed to specialise is deleted")
		})
	}
}

func TestResize(t *testing.T) {
	for _, tc := range []struct {
		name    string
		refuse  error
		resized bool
	}{
		{name: "cluster supports it", resized: true},
		{name: "cluster without the resize subresource", refuse: apierrors.NewNotFound(schema.GroupResource{Resource: "pods/resize"}, "")},
		{name: "identity not allowed", refuse: apierrors.NewForbidden(schema.GroupResource{Resource: "pods/resize"}, "x", errors.New("rbac"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := kubetest.Start(t, kubetest.Options{})
			var calls int
			var mu sync.Mutex
			c.React(func(a k8stesting.Action) (bool, runtime.Object, error) {
				if a.GetVerb() != "patch" || a.GetSubresource() != "resize" {
					return false, nil, nil
				}
				mu.Lock()
				calls++
				mu.Unlock()
				if tc.refuse != nil {
					return true, nil, tc.refuse
				}
				return false, nil, nil
			})
			o := newBackend(t, c)
			defer o.Close()
			ctx := context.Background()
			require.NoError(t, o.CreatePool(ctx, orchestrator.Runtime{ID: "rt-r", Image: image}))
			fn := helloFunction(t, "rt-r", "fn-r")
			ws, err := o.ScaleUp(ctx, fn, 1)
			require.NoError(t, err, "a refused resize does not fail the scale-up")
			p, err := c.Client.CoreV1().Pods(c.Namespace).Get(ctx, ws[0].Name, metav1.GetOptions{})
			require.NoError(t, err)
			lim := p.Spec.Containers[0].Resources.Limits
			if tc.resized {
				require.Equal(t, "100m", lim.Cpu().String())
				require.Equal(t, fn.MemorySize, lim.Memory().Value())
				return
			}
			require.Equal(t, "300m", lim.Cpu().String(), "the pool's defaults stay")
			// Refused for the cluster: not asked again.
			_, err = o.ScaleUp(ctx, helloFunction(t, "rt-r", "fn-r2"), 1)
			require.NoError(t, err)
			mu.Lock()
			defer mu.Unlock()
			require.Equal(t, 1, calls)
		})
	}
}

// TestRunAppliesChangedLimits: Run resizes a pod whose function's limits
// changed since it was specialised (function update), and only then; an
// engine that did not specialise the pod reads it once to find out.
func TestRunAppliesChangedLimits(t *testing.T) {
	c := kubetest.Start(t, kubetest.Options{})
	var mu sync.Mutex
	patches := 0
	c.React(func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetVerb() == "patch" && a.GetSubresource() == "resize" {
			mu.Lock()
			patches++
			mu.Unlock()
		}
		return false, nil, nil
	})
	ctx := context.Background()
	engineA, engineB := newBackend(t, c), newBackend(t, c)
	defer engineA.Close()
	defer engineB.Close()
	require.NoError(t, engineA.CreatePool(ctx, orchestrator.Runtime{ID: "rt-l", Image: image}))
	fn := helloFunction(t, "rt-l", "fn-l")
	ws, err := engineA.ScaleUp(ctx, fn, 1)
	require.NoError(t, err)
	limits := func() (int64, int64) {
		p, err := c.Client.CoreV1().Pods(c.Namespace).Get(ctx, ws[0].Name, metav1.GetOptions{})
		require.NoError(t, err)
		lim := p.Spec.Containers[0].Resources.Limits
		return lim.Cpu().MilliValue(), lim.Memory().Value()
	}
	for _, step := range []struct {
		name        string
		engine      *kubernetes.Orchestrator
		cpu         int
		memory      int64
		wantPatches int
	}{
		{name: "unchanged limits: no resize", engine: engineA, cpu: fn.CPU, memory: fn.MemorySize, wantPatches: 1},
		{name: "changed limits: resized before the run", engine: engineA, cpu: 200, memory: 96 << 20, wantPatches: 2},
		{name: "another engine finds the pod's limits current", engine: engineB, cpu: 200, memory: 96 << 20, wantPatches: 2},
		{name: "another engine resizes on a change", engine: engineB, cpu: 300, memory: 128 << 20, wantPatches: 3},
	} {
		t.Run(step.name, func(t *testing.T) {
			res, err := step.engine.Run(ctx, ws[0], orchestrator.Invocation{
				ExecutionID: "e-" + step.name, FunctionID: fn.ID, Entry: fn.Entry, Timeout: fn.Timeout,
				CPU: step.cpu, MemorySize: step.memory, Input: json.RawMessage(`{"name":"x"}`),
			})
			require.NoError(t, err)
			require.True(t, res.Success, "%s", res.Output)
			cpu, memory := limits()
			require.Equal(t, []int64{int64(step.cpu), step.memory}, []int64{cpu, memory})
			mu.Lock()
			defer mu.Unlock()
			require.Equal(t, step.wantPatches, patches)
		})
	}
}

// TestResizeNodeMemoryOverhead: a Node.js runtime pod is resized to its
// function's memory_size plus the configured overhead (Node.js alone needs
// more than upstream's default memory_size); a Python one to memory_size.
func TestResizeNodeMemoryOverhead(t *testing.T) {
	if _, err := os.Stat("/usr/bin/node"); err != nil {
		t.Skipf("/usr/bin/node not available: %v", err)
	}
	const overhead = 64 << 20
	for _, tc := range []struct {
		name     string
		image    string
		function func(t *testing.T, name string) (orchestrator.Package, string)
		extra    int64
	}{
		{name: "python", image: image, function: orchestratortest.PythonFunction, extra: 0},
		{name: "nodejs", image: nodeImage, function: orchestratortest.NodeFunction, extra: overhead},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := kubetest.Start(t, kubetest.Options{})
			o := newBackend(t, c, func(cfg *kubernetes.Config) { cfg.NodeMemoryOverhead = overhead })
			defer o.Close()
			ctx := context.Background()
			require.NoError(t, o.CreatePool(ctx, orchestrator.Runtime{ID: "rt-m", Image: tc.image}))
			pkg, entry := tc.function(t, orchestratortest.Hello)
			fn := orchestrator.Function{ID: "fn-m", RuntimeID: "rt-m", Entry: entry, CPU: 100, MemorySize: 32 << 20, Timeout: 5 * time.Second, Package: pkg}
			ws, err := o.ScaleUp(ctx, fn, 1)
			require.NoError(t, err)
			p, err := c.Client.CoreV1().Pods(c.Namespace).Get(ctx, ws[0].Name, metav1.GetOptions{})
			require.NoError(t, err)
			require.Equal(t, fn.MemorySize+tc.extra, p.Spec.Containers[0].Resources.Limits.Memory().Value())
		})
	}
}

func TestRunOnLostWorker(t *testing.T) {
	c := kubetest.Start(t, kubetest.Options{})
	o := newBackend(t, c)
	defer o.Close()
	ctx := context.Background()
	require.NoError(t, o.CreatePool(ctx, orchestrator.Runtime{ID: "rt-l", Image: image}))
	w, err := o.ScaleUp(ctx, helloFunction(t, "rt-l", "fn-l"), 1)
	require.NoError(t, err)
	c.KillServer(w[0].Name) // the container crashed and nothing listens
	inv := orchestrator.Invocation{ExecutionID: "e", FunctionID: "fn-l", Entry: "main.main", Timeout: 5 * time.Second}
	_, first := o.Run(ctx, w[0], inv)
	err = first
	// A kept-alive connection to the dead server is reset (lost: the
	// engine cannot know whether the function ran); a new one is refused.
	require.True(t, errors.Is(err, orchestrator.ErrWorkerLost) || errors.Is(err, orchestrator.ErrWorkerNotFound), "%v", err)
	_, err = o.Run(ctx, w[0], inv)
	require.ErrorIs(t, err, orchestrator.ErrWorkerNotFound)
	if errors.Is(first, orchestrator.ErrWorkerLost) {
		require.Eventually(t, func() bool {
			_, err := c.Client.CoreV1().Pods(c.Namespace).Get(ctx, w[0].Name, metav1.GetOptions{})
			return apierrors.IsNotFound(err)
		}, 5*time.Second, 20*time.Millisecond, "a lost worker's pod is deleted")
	}
}

func TestImageFunctions(t *testing.T) {
	for _, tc := range []struct {
		name    string
		image   string
		timeout time.Duration
		success bool
		output  string
		errMsg  string
	}{
		{name: "success", image: kubetest.SucceedImage, timeout: 5 * time.Second, success: true, output: "fake logs"},
		{name: "non-zero exit", image: kubetest.FailImage, timeout: 5 * time.Second, output: "exited with code 3"},
		{name: "timeout", image: kubetest.SleepImage, timeout: 500 * time.Millisecond, output: "Function execution timeout."},
		{name: "image cannot be pulled", image: "localhost/unrunnable:1", timeout: 5 * time.Second, errMsg: "ImagePullBackOff"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := kubetest.Start(t, kubetest.Options{})
			o := newBackend(t, c, func(cfg *kubernetes.Config) { cfg.ScaleUpTimeout = 5 * time.Second })
			inv := orchestrator.ImageInvocation{
				ExecutionID: "9b2c1d1e-0000-4000-8000-000000000001", FunctionID: "6f0a0b4c-0000-4000-8000-000000000002",
				Image: tc.image, Args: []string{"a", "b"}, CPU: 100, MemorySize: 32 << 20, Timeout: tc.timeout,
			}
			var created *corev1.Pod
			var mu sync.Mutex
			c.React(func(a k8stesting.Action) (bool, runtime.Object, error) {
				if a.GetVerb() == "create" && a.GetResource().Resource == "pods" {
					mu.Lock()
					created = a.(k8stesting.CreateAction).GetObject().(*corev1.Pod).DeepCopy()
					mu.Unlock()
				}
				return false, nil, nil
			})
			res, err := o.RunImage(context.Background(), inv)
			if tc.errMsg != "" {
				require.ErrorContains(t, err, tc.errMsg)
				require.Equal(t, errdefs.KindInvalid, errdefs.KindOf(err))
			} else {
				require.NoError(t, err)
				require.Equal(t, tc.success, res.Success, "%s", res.Output)
				if tc.output != "" {
					var out string
					require.NoError(t, json.Unmarshal(res.Output, &out))
					require.Contains(t, out, tc.output)
				}
				require.Equal(t, "fake logs", res.Logs)
			}
			mu.Lock()
			defer mu.Unlock()
			require.LessOrEqual(t, len(created.Name), 63)
			require.Equal(t, []string{"a", "b"}, created.Spec.Containers[0].Args)
			require.Equal(t, corev1.RestartPolicyNever, created.Spec.RestartPolicy)
			require.Equal(t, "100m", created.Spec.Containers[0].Resources.Limits.Cpu().String())
			requireTerminationMessageUnreachable(t, created.Spec.Containers[0])
			require.NoError(t, o.Close()) // waits for the pod's deletion
			_, err = c.Client.CoreV1().Pods(c.Namespace).Get(context.Background(), created.Name, metav1.GetOptions{})
			require.True(t, apierrors.IsNotFound(err), "the execution's pod is deleted: %v", err)
		})
	}
}

// An API server that cannot be reached fails every call with an
// "unavailable" error, and nothing waits past the request timeout.
func TestAPIServerUnavailable(t *testing.T) {
	c := kubetest.Start(t, kubetest.Options{})
	o := newBackend(t, c, func(cfg *kubernetes.Config) { cfg.RequestTimeout = 200 * time.Millisecond })
	defer o.Close()
	ctx := context.Background()
	require.NoError(t, o.CreatePool(ctx, orchestrator.Runtime{ID: "rt-u", Image: image}))
	ws, err := o.ScaleUp(ctx, helloFunction(t, "rt-u", "fn-u"), 1)
	require.NoError(t, err)

	down := apierrors.NewServiceUnavailable("etcd is down")
	c.React(func(k8stesting.Action) (bool, runtime.Object, error) { return true, nil, down })
	for _, tc := range []struct {
		name string
		call func() error
	}{
		{"Pool", func() error { _, err := o.Pool(ctx, "rt-u"); return err }},
		{"ScaleUp", func() error { _, err := o.ScaleUp(ctx, helloFunction(t, "rt-u", "fn-u2"), 1); return err }},
		{"DeleteWorker", func() error { return o.DeleteWorker(ctx, orchestrator.Worker{Name: "x"}) }},
		{"DeleteFunction", func() error { return o.DeleteFunction(ctx, "fn-u", 0) }},
		{"DeletePool", func() error { return o.DeletePool(ctx, "rt-u") }},
		{"RunImage", func() error {
			_, err := o.RunImage(ctx, orchestrator.ImageInvocation{ExecutionID: "e", FunctionID: "f", Image: kubetest.SucceedImage, Timeout: time.Second})
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			require.Error(t, err)
			require.Equal(t, errdefs.KindUnavailable, errdefs.KindOf(err), "%v", err)
			require.Contains(t, errdefs.PublicMessage(err), "Kubernetes API server is unavailable")
		})
	}
	// Executions do not need the API server.
	res, err := o.Run(ctx, ws[0], orchestrator.Invocation{ExecutionID: "e", FunctionID: "fn-u", Entry: "main.main", Timeout: 5 * time.Second})
	require.NoError(t, err)
	require.True(t, res.Success)
}

// What the API server answers decides the error's kind, and so what the
// user is told.
func TestAPIErrors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		err     error
		kind    errdefs.Kind
		message string
	}{
		{name: "RBAC refusal", err: apierrors.NewForbidden(schema.GroupResource{Group: "apps", Resource: "deployments"}, "rt-e", errors.New("no rule")),
			kind: errdefs.KindInternal, message: "needs the Role in docs/kubernetes.md"},
		{name: "overloaded", err: apierrors.NewTooManyRequests("slow down", 1), kind: errdefs.KindUnavailable, message: "unavailable"},
		{name: "server timeout", err: apierrors.NewServerTimeout(schema.GroupResource{Resource: "deployments"}, "get", 1), kind: errdefs.KindUnavailable, message: "unavailable"},
		{name: "connection refused", err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, kind: errdefs.KindUnavailable, message: "unavailable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := kubetest.Start(t, kubetest.Options{})
			c.React(func(a k8stesting.Action) (bool, runtime.Object, error) {
				return a.GetResource().Resource == "deployments", nil, tc.err
			})
			o := newBackend(t, c)
			defer o.Close()
			err := o.CreatePool(context.Background(), orchestrator.Runtime{ID: "rt-e", Image: image})
			require.Error(t, err)
			require.Equal(t, tc.kind, errdefs.KindOf(err), "%v", err)
			require.ErrorContains(t, err, tc.message)
		})
	}
}

// TestRunEnforcesEngineLimits: a pod's answer is held to the engine's own
// result limit, whatever the runtime in the pod (which runs function code in
// its process) let through.
func TestRunEnforcesEngineLimits(t *testing.T) {
	c := kubetest.Start(t, kubetest.Options{})
	o := newBackend(t, c, func(cfg *kubernetes.Config) { cfg.MaxResultSize, cfg.MaxLogSize = 8, 1<<20 })
	defer o.Close()
	ctx := context.Background()
	require.NoError(t, o.CreatePool(ctx, orchestrator.Runtime{ID: "rt-lim", Image: image}))
	fn := helloFunction(t, "rt-lim", "fn-lim")
	w, err := o.ScaleUp(ctx, fn, 1)
	require.NoError(t, err)
	res, err := o.Run(ctx, w[0], orchestrator.Invocation{
		ExecutionID: "e-lim", FunctionID: fn.ID, Entry: fn.Entry, Timeout: fn.Timeout,
		CPU: fn.CPU, MemorySize: fn.MemorySize, Input: json.RawMessage(`{"name": "a longer name"}`),
	})
	require.NoError(t, err)
	require.False(t, res.Success)
	require.Contains(t, string(res.Output), "Function result too large")
}
