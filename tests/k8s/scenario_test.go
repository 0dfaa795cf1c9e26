//go:build k8s

package k8s

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/testutil"
)

// cluster is the stack under test: qinling-go's API (Keystone auth, engines
// on the Kubernetes orchestrator) and kubectl on the cluster's admin identity
// to check what the engines did to it.
type cluster struct {
	stack     *testutil.Stack
	demo      *testutil.Target
	admin     *testutil.Target
	kubectl   []string
	namespace string
}

func loadCluster(t *testing.T) *cluster {
	t.Helper()
	st, err := testutil.LoadStack()
	require.NoError(t, err)
	if st.Env["QINLING_ORCHESTRATOR"] != "kubernetes" {
		t.Fatalf("the stack in %s runs the %q orchestrator: run QINLING_ORCHESTRATOR=kubernetes devstack/stack.sh (./tox -e k8s)", st.Dir, st.Env["QINLING_ORCHESTRATOR"])
	}
	ns := st.Env["K8S_NAMESPACE"]
	if ns == "" {
		ns = "qinling"
	}
	tgt := testutil.StackTarget(st)
	return &cluster{
		stack: st, demo: tgt, admin: tgt.As(testutil.Admin), namespace: ns,
		kubectl: []string{"/usr/bin/kubectl", "--kubeconfig", st.Env["KUBECONFIG_ADMIN"], "--namespace", ns},
	}
}

// kube runs kubectl and returns its standard output.
func (c *cluster) kube(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(c.kubectl[0], append(c.kubectl[1:], args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "kubectl %s: %s", strings.Join(args, " "), stderr.String())
	return string(out)
}

// livePods is pods without those already being deleted.
func (c *cluster) livePods(t *testing.T, selector string) []string {
	t.Helper()
	var doc struct {
		Items []struct {
			Metadata struct {
				Name              string  `json:"name"`
				DeletionTimestamp *string `json:"deletionTimestamp"`
			} `json:"metadata"`
		} `json:"items"`
	}
	require.NoError(t, json.Unmarshal([]byte(c.kube(t, "get", "pods", "-l", selector, "-o", "json")), &doc))
	var names []string
	for _, it := range doc.Items {
		if it.Metadata.DeletionTimestamp == nil {
			names = append(names, it.Metadata.Name)
		}
	}
	return names
}

func call(t *testing.T, tg *testutil.Target, method, path string, body any, want int) map[string]any {
	t.Helper()
	r := tg.Do(t, method, path, body)
	require.Equal(t, want, r.Status, "%s", r)
	if len(r.Body) == 0 {
		return nil
	}
	return r.Object(t)
}

// runtime creates a runtime (as admin) on the stack's Python image and waits
// until it is available; it is deleted at the end of the test.
func (c *cluster) runtime(t *testing.T, image string) string {
	t.Helper()
	rt := call(t, c.admin, "POST", "/v1/runtimes", map[string]any{"image": image, "name": "k8s-" + t.Name(), "is_public": true, "trusted": true}, http.StatusCreated)
	id := rt["id"].(string)
	t.Cleanup(func() { c.admin.Do(t, "DELETE", "/v1/runtimes/"+id, nil) })
	testutil.WaitFor(t, "runtime "+id+" available", 5*time.Minute, time.Second, func() (bool, any) {
		got := call(t, c.admin, "GET", "/v1/runtimes/"+id, nil, http.StatusOK)
		require.NotEqual(t, "error", got["status"], "runtime %v", got)
		return got["status"] == "available", got
	})
	return id
}

// function creates a package function from one main.py.
func (c *cluster) function(t *testing.T, runtimeID, source string, fields ...string) string {
	t.Helper()
	return c.functionFile(t, runtimeID, "main.py", source, fields...)
}

// functionFile creates a package function from one file.
func (c *cluster) functionFile(t *testing.T, runtimeID, file, source string, fields ...string) string {
	t.Helper()
	pkg := testutil.Zip(t, map[string]string{file: source})
	form := &testutil.Form{
		Fields: map[string]string{
			"runtime_id": runtimeID, "name": "k8s-fn", "entry": "main.main", "timeout": "20",
			"code": `{"source": "package"}`,
		},
		Files: map[string]testutil.File{"package": {Name: "main.zip", Data: pkg}},
	}
	for i := 0; i+1 < len(fields); i += 2 {
		form.Fields[fields[i]] = fields[i+1]
	}
	fn := call(t, c.demo, "POST", "/v1/functions", form, http.StatusCreated)
	id := fn["id"].(string)
	t.Cleanup(func() {
		c.admin.Do(t, "POST", "/v1/functions/"+id+"/detach", nil)
		c.demo.Do(t, "DELETE", "/v1/functions/"+id, nil)
	})
	return id
}

func (c *cluster) execute(t *testing.T, body map[string]any) map[string]any {
	t.Helper()
	return call(t, c.demo, "POST", "/v1/executions", body, http.StatusCreated)
}

func (c *cluster) waitExecution(t *testing.T, id string) map[string]any {
	t.Helper()
	var ex map[string]any
	testutil.WaitFor(t, "execution "+id, 3*time.Minute, 300*time.Millisecond, func() (bool, any) {
		ex = call(t, c.demo, "GET", "/v1/executions/"+id, nil, http.StatusOK)
		return ex["status"] != "running", ex
	})
	return ex
}

// log is an execution's log, as `function execution log show` prints it.
func (c *cluster) log(t *testing.T, id string) string {
	t.Helper()
	r := c.demo.Do(t, "GET", "/v1/executions/"+id+"/log", nil)
	require.Equal(t, http.StatusOK, r.Status, "%s", r)
	return string(r.Body)
}

// output decodes an execution's result (a JSON string holding an object).
func output(t *testing.T, ex map[string]any) map[string]any {
	t.Helper()
	s, ok := ex["result"].(string)
	require.True(t, ok, "result must be a JSON string: %v", ex)
	var res map[string]any
	require.NoError(t, json.Unmarshal([]byte(s), &res), "result %q", s)
	return res
}

func (c *cluster) workers(t *testing.T, fid string) []string {
	t.Helper()
	r := call(t, c.admin, "GET", "/v1/functions/"+fid+"/workers", nil, http.StatusOK)
	var names []string
	for _, w := range r["workers"].([]any) {
		names = append(names, w.(map[string]any)["worker_name"].(string))
	}
	return names
}

const sleeper = `import time


def main(**kwargs):
    print('sleeping')
    time.sleep(3)
    return 'slept'
`

// TestConcurrencyScaling is upstream's concurrency rule on real pods: six
// concurrent executions of a 3-second function leave two workers (three
// executions per worker), listed by the API as the pods that serve them;
// scaling down and idle expiry give the pods back to the pool.
func TestConcurrencyScaling(t *testing.T) {
	c := loadCluster(t)
	rt := c.runtime(t, c.stack.PythonImage())
	fid := c.function(t, rt, sleeper)

	var wg sync.WaitGroup
	results := make([]map[string]any, 6)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = c.execute(t, map[string]any{"function_id": fid, "sync": true})
		}()
		// Upstream's rule is applied per execution as it arrives: leave the
		// engine time to see the earlier ones running.
		time.Sleep(150 * time.Millisecond)
	}
	wg.Wait()
	for _, ex := range results {
		require.Equal(t, "success", ex["status"], "%v", ex)
		assert.Equal(t, "slept", output(t, ex)["output"])
	}
	// What `function execution log show` prints.
	assert.Contains(t, c.log(t, results[0]["id"].(string)), "sleeping")

	workers := c.workers(t, fid)
	require.Len(t, workers, 2, "six concurrent executions, three per worker")
	pods := c.livePods(t, "function_id="+fid)
	assert.ElementsMatch(t, workers, pods, "the workers are the pods labelled with the function")

	// scale down by one: one pod goes back (deleted; the pool refills).
	call(t, c.admin, "POST", "/v1/functions/"+fid+"/scale_down", map[string]any{"count": 1}, http.StatusAccepted)
	testutil.WaitFor(t, "one worker after scale_down", time.Minute, time.Second, func() (bool, any) {
		w := c.workers(t, fid)
		return len(w) == 1, w
	})
	testutil.WaitFor(t, "one pod labelled with the function", time.Minute, time.Second, func() (bool, any) {
		p := c.livePods(t, "function_id="+fid)
		return len(p) == 1, p
	})

	// Idle expiry (the stack sets a short function_service_expiration).
	expiry, err := time.ParseDuration(c.stack.Env["K8S_FUNCTION_EXPIRATION"] + "s")
	if err != nil || expiry <= 0 {
		expiry = 60 * time.Second
	}
	testutil.WaitFor(t, "the idle worker to expire", 3*expiry+time.Minute, 2*time.Second, func() (bool, any) {
		w := c.workers(t, fid)
		p := c.livePods(t, "function_id="+fid)
		return len(w) == 0 && len(p) == 0, fmt.Sprintf("workers %v pods %v", w, p)
	})
}

// TestImageFunction runs a function whose code is a container image: one
// pod per execution, the input as its arguments, its output as the result.
func TestImageFunction(t *testing.T) {
	c := loadCluster(t)
	image := c.stack.Env["K8S_HELLO_IMAGE"]
	require.NotEmpty(t, image, "stack.env has no K8S_HELLO_IMAGE")
	form := &testutil.Form{Fields: map[string]string{
		"name": "k8s-image", "code": fmt.Sprintf(`{"source": "image", "image": %q}`, image), "timeout": "60",
	}}
	fn := call(t, c.demo, "POST", "/v1/functions", form, http.StatusCreated)
	fid := fn["id"].(string)
	t.Cleanup(func() { c.demo.Do(t, "DELETE", "/v1/functions/"+fid, nil) })

	ex := c.execute(t, map[string]any{"function_id": fid, "sync": true, "input": "alpha beta"})
	require.Equal(t, "success", ex["status"], "%v", ex)
	res := output(t, ex)
	assert.Contains(t, fmt.Sprint(res["output"]), "alpha beta", "result %v", res)
	assert.Contains(t, c.log(t, ex["id"].(string)), "alpha beta", "the pod's log is the execution's log")
	// The execution's pod is gone afterwards (upstream left it behind).
	testutil.WaitFor(t, "the execution's pod to be deleted", time.Minute, time.Second, func() (bool, any) {
		p := c.livePods(t, "function_id="+fid)
		return len(p) == 0, p
	})
}

// TestUnrunnableImageRuntime: a runtime whose image the node does not have
// ends in error with the reason from the cluster.
func TestUnrunnableImageRuntime(t *testing.T) {
	c := loadCluster(t)
	rt := call(t, c.admin, "POST", "/v1/runtimes", map[string]any{"image": "localhost/qinling-go/no-such-image:latest", "name": "k8s-missing"}, http.StatusCreated)
	id := rt["id"].(string)
	t.Cleanup(func() { c.admin.Do(t, "DELETE", "/v1/runtimes/"+id, nil) })
	testutil.WaitFor(t, "runtime "+id+" in error", 10*time.Minute, 2*time.Second, func() (bool, any) {
		got := call(t, c.admin, "GET", "/v1/runtimes/"+id, nil, http.StatusOK)
		return got["status"] == "error", got
	})
}

// TestWorkerPodKilled: a specialised pod deleted behind the engine's back
// costs at most one failed execution with a clear message; the function then
// runs on a new worker.
func TestWorkerPodKilled(t *testing.T) {
	c := loadCluster(t)
	rt := c.runtime(t, c.stack.PythonImage())
	fid := c.function(t, rt, "def main(**kwargs):\n    return 'alive'\n")
	ex := c.execute(t, map[string]any{"function_id": fid, "sync": true})
	require.Equal(t, "success", ex["status"], "%v", ex)
	for _, p := range c.livePods(t, "function_id="+fid) {
		c.kube(t, "delete", "pod", p, "--grace-period=0", "--force", "--wait=false")
	}
	var last map[string]any
	testutil.WaitFor(t, "the function to run again", 2*time.Minute, time.Second, func() (bool, any) {
		last = c.execute(t, map[string]any{"function_id": fid, "sync": true})
		if last["status"] == "failed" {
			assert.NotEmpty(t, output(t, last)["output"], "a failure says why: %v", last)
		}
		return last["status"] == "success", last
	})
	assert.Equal(t, "alive", output(t, last)["output"])
}

// TestAPIServerOutage stops the Kubernetes API server for a while: a worker
// already specialised keeps serving (the engines reach pods directly); a
// function that needs a new worker ends in error within a bounded time (the
// backend's request_timeout) with a clear message, not a hang; once the API
// server is back it runs.
func TestAPIServerOutage(t *testing.T) {
	c := loadCluster(t)
	rt := c.runtime(t, c.stack.PythonImage())
	warm := c.function(t, rt, "def main(**kwargs):\n    return 'warm'\n")
	ex := c.execute(t, map[string]any{"function_id": warm, "sync": true})
	require.Equal(t, "success", ex["status"], "%v", ex)
	cold := c.function(t, rt, "def main(**kwargs):\n    return 'cold'\n")

	pidFile := filepath.Join(c.stack.Dir, "pids", "kube-apiserver.pid")
	b, err := os.ReadFile(pidFile)
	require.NoError(t, err)
	// devstack writes "PID STARTTIME".
	pid, err := strconv.Atoi(strings.Fields(string(b) + " ")[0])
	require.NoError(t, err)
	require.NoError(t, syscall.Kill(pid, syscall.SIGSTOP))
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			require.NoError(t, syscall.Kill(pid, syscall.SIGCONT))
		}
	}
	defer resume()
	t.Logf("kube-apiserver (PID %d) stopped", pid)

	ex = c.execute(t, map[string]any{"function_id": warm, "sync": true})
	assert.Equal(t, "success", ex["status"], "a specialised worker needs no API server: %v", ex)

	start := time.Now()
	ex = c.execute(t, map[string]any{"function_id": cold, "sync": true})
	took := time.Since(start)
	t.Logf("new worker with the API server stopped: %s after %s: %s", ex["status"], took.Round(time.Millisecond), ex["result"])
	// error, not failed: the function did not run (upstream's distinction).
	require.Equal(t, "error", ex["status"], "%v", ex)
	assert.Contains(t, output(t, ex)["output"], "Kubernetes API server is unavailable", "the failure says why: %v", ex)

	resume()
	t.Logf("kube-apiserver resumed")
	var last map[string]any
	testutil.WaitFor(t, "the cold function to run once the API server is back", 3*time.Minute, 2*time.Second, func() (bool, any) {
		last = c.execute(t, map[string]any{"function_id": cold, "sync": true})
		return last["status"] == "success", last
	})
	assert.Equal(t, "cold", output(t, last)["output"])
}

// TestRuntimeImageUpdate rolls a runtime's pool to another image (the same
// runtime code under a second name): the Deployment and its free pods move
// to it. An update to an image the node cannot run is rolled back: the
// runtime is available again on the image it had, and functions run on it.
// (As upstream, the image of a runtime that functions use cannot change.)
func TestRuntimeImageUpdate(t *testing.T) {
	c := loadCluster(t)
	alt := c.stack.Env["K8S_PYTHON_IMAGE_ALT"]
	require.NotEmpty(t, alt, "stack.env has no K8S_PYTHON_IMAGE_ALT")
	rt := c.runtime(t, c.stack.PythonImage())

	// settled waits for the update to end and returns the runtime.
	settled := func(what string) map[string]any {
		var got map[string]any
		testutil.WaitFor(t, what, 5*time.Minute, time.Second, func() (bool, any) {
			got = call(t, c.admin, "GET", "/v1/runtimes/"+rt, nil, http.StatusOK)
			return got["status"] != "upgrading", got
		})
		return got
	}
	call(t, c.admin, "PUT", "/v1/runtimes/"+rt, map[string]any{"image": alt}, http.StatusOK)
	got := settled("the runtime update to " + alt)
	require.Equal(t, "available", got["status"], "%v", got)
	require.Equal(t, alt, got["image"])
	image := strings.TrimSpace(c.kube(t, "get", "deployments", "-l", "runtime_id="+rt,
		"-o", "jsonpath={.items[*].spec.template.spec.containers[0].image}"))
	assert.Equal(t, alt, image, "the pool's Deployment runs the new image")
	testutil.WaitFor(t, "the free pods to run the new image", 2*time.Minute, time.Second, func() (bool, any) {
		images := strings.Fields(c.kube(t, "get", "pods", "-l", "runtime_id="+rt+",!function_id",
			"-o", "jsonpath={range .items[?(@.status.phase==\"Running\")]}{.spec.containers[0].image}{\" \"}{end}"))
		for _, im := range images {
			if im != alt {
				return false, images
			}
		}
		return len(images) > 0, images
	})

	call(t, c.admin, "PUT", "/v1/runtimes/"+rt, map[string]any{"image": "localhost/qinling-go/no-such-image:latest"}, http.StatusOK)
	got = settled("the failed runtime update to roll back")
	assert.Equal(t, "available", got["status"], "%v", got)
	assert.Equal(t, alt, got["image"], "rolled back to the image it had")

	fid := c.function(t, rt, "def main(**kwargs):\n    return 'after the updates'\n")
	ex := c.execute(t, map[string]any{"function_id": fid, "sync": true})
	require.Equal(t, "success", ex["status"], "%v", ex)
	assert.Equal(t, "after the updates", output(t, ex)["output"])
}

// TestNodeJSRuntime runs a Node.js function on pods of the Node.js runtime
// image: the package pushed to the pod, an async function, its console
// output as the log, at upstream's default memory_size (the pod gets the
// Node.js overhead on top).
func TestNodeJSRuntime(t *testing.T) {
	c := loadCluster(t)
	image := c.stack.Env["K8S_NODEJS_IMAGE"]
	require.NotEmpty(t, image, "stack.env has no K8S_NODEJS_IMAGE")
	rt := c.runtime(t, image)
	fid := c.functionFile(t, rt, "main.js", `exports.main = async (context, input) => {
  const name = (input && input.name) || 'World';
  console.log('Hello from node, ' + name);
  await new Promise((resolve) => setTimeout(resolve, 10));
  return 'Hello, ' + name;
};
`, "memory_size", "33554432")
	ex := c.execute(t, map[string]any{"function_id": fid, "sync": true, "input": `{"name": "pod"}`})
	require.Equal(t, "success", ex["status"], "%v", ex)
	assert.Equal(t, "Hello, pod", output(t, ex)["output"])
	assert.Contains(t, c.log(t, ex["id"].(string)), "Hello from node, pod")
}

func TestMain(m *testing.M) {
	if os.Getenv(testutil.EnvRealStack) == "" {
		os.Setenv(testutil.EnvRealStack, "1")
	}
	os.Exit(m.Run())
}
