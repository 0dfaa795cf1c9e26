package engine_test

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/qinling-go/qinling/orchestrator/kubernetes"
	"github.com/qinling-go/qinling/orchestrator/kubernetes/kubetest"
	"github.com/qinling-go/qinling/pkg/coord"
	"github.com/qinling-go/qinling/pkg/coord/memory"
	"github.com/qinling-go/qinling/pkg/db"
	"github.com/qinling-go/qinling/pkg/engine"
	storagemem "github.com/qinling-go/qinling/storage/memory"
)

// Two engines (separate processes in production) share one Kubernetes
// cluster, the database and etcd: a worker specialised by one serves the
// other's executions, and a pod that crashes is replaced without the
// execution failing.
func TestEngine_SharedKubernetesCluster(t *testing.T) {
	ctx := context.Background()
	d, err := db.Open("sqlite", filepath.Join(t.TempDir(), "q.sqlite"), db.Options{})
	require.NoError(t, err)
	_, _, err = d.Sync(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { d.Close() })
	co := memory.New()
	st := storagemem.New(storagemem.Config{MaxSize: 1 << 20})
	cluster := kubetest.Start(t, kubetest.Options{})
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	newEngine := func(name string) *engine.Engine {
		o, err := kubernetes.New(kubernetes.Config{
			Client: cluster.Client, Namespace: cluster.Namespace, Replicas: 2, Dial: cluster.Dial,
			PollInterval: 20 * time.Millisecond, ScaleUpTimeout: 20 * time.Second, PoolReadyTimeout: 20 * time.Second,
			Owner: name, Logger: log,
		})
		require.NoError(t, err)
		t.Cleanup(func() { _ = o.Close() })
		return engine.New(d, o, co, st, engine.Options{Name: name}, log)
	}
	a, b := newEngine("engine-a"), newEngine("engine-b")

	rt := &db.Runtime{Base: db.Base{ProjectID: "p"}, Image: "localhost/qinling-go/python3-runtime:latest", Status: db.StatusCreating, IsPublic: true}
	require.NoError(t, d.CreateRuntime(ctx, rt))
	require.NoError(t, a.CreateRuntime(ctx, rt.ID))
	got, err := d.Runtime(ctx, db.Internal, rt.ID)
	require.NoError(t, err)
	require.Equal(t, db.StatusAvailable, got.Status, "%v", got.Description)

	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, _ := zw.Create("hello.py")
	_, _ = io.WriteString(w, "def main(name='World', **kwargs):\n    print('Hello, %s' % name)\n    return 'Hello, %s' % name\n")
	require.NoError(t, zw.Close())
	f := &db.Function{Base: db.Base{ID: db.NewID(), ProjectID: "p"}, RuntimeID: &rt.ID, Entry: str("hello.main"), CPU: 100, MemorySize: 33554432, Timeout: 5}
	md5, _, err := st.Store(ctx, "p", f.ID, &buf, "")
	require.NoError(t, err)
	f.SetCode(db.Code{Source: db.SourcePackage, MD5Sum: md5})
	require.NoError(t, d.CreateFunction(ctx, f))

	run := func(e *engine.Engine, name string) (*db.Execution, map[string]any) {
		t.Helper()
		ex := &db.Execution{Base: db.Base{ProjectID: "p"}, FunctionID: &f.ID, Status: db.StatusRunning, Sync: true}
		require.NoError(t, d.CreateExecution(ctx, ex))
		require.NoError(t, e.CreateExecution(ctx, engine.ExecutionArgs{
			ExecutionID: ex.ID, FunctionID: f.ID, Input: json.RawMessage(`{"name":"` + name + `"}`)}))
		got, err := d.Execution(ctx, db.Internal, ex.ID)
		require.NoError(t, err)
		var res map[string]any
		require.NoError(t, json.Unmarshal([]byte(*got.Result), &res))
		return got, res
	}
	fv := coord.FunctionVersion{FunctionID: f.ID}
	specialised := func() int {
		pods, err := cluster.Client.CoreV1().Pods(cluster.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "function_id=" + f.ID})
		require.NoError(t, err)
		return len(pods.Items)
	}

	ex, res := run(a, "a")
	require.Equal(t, db.StatusSuccess, ex.Status, "%v", res)
	require.Equal(t, "Hello, a", res["output"])
	ex, res = run(b, "b")
	require.Equal(t, db.StatusSuccess, ex.Status, "%v", res)
	require.Equal(t, "Hello, b", res["output"])
	workers, err := co.Workers(ctx, fv)
	require.NoError(t, err)
	require.Len(t, workers, 1, "engine b used engine a's worker")
	require.Equal(t, 1, specialised())

	// The worker's container dies: the next execution finds it gone,
	// forgets it and specialises another pod.
	// (Give the engine's kept-alive connection time to see the close, as
	// it would between two executions; a crash during a call is "lost".)
	cluster.KillServer(workers[0].Name)
	time.Sleep(300 * time.Millisecond)
	ex, res = run(b, "again")
	require.Equal(t, db.StatusSuccess, ex.Status, "%v", res)
	require.Equal(t, "Hello, again", res["output"])
	workers, err = co.Workers(ctx, fv)
	require.NoError(t, err)
	require.Len(t, workers, 1)
	require.Eventually(t, func() bool { return specialised() == 1 }, 5*time.Second, 20*time.Millisecond, "the dead worker's pod is deleted")

	// Either engine releases the function's pods.
	require.NoError(t, a.DeleteFunction(ctx, f.ID, 0))
	require.Equal(t, 0, specialised())
	require.Eventually(t, func() bool {
		cp, err := b.RuntimePool(ctx, rt.ID)
		return err == nil && cp.Available == 2 && cp.Total == 2
	}, 10*time.Second, 20*time.Millisecond, "the pool keeps its free pods")
}
