//go:build k8s

package k8s

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/qinling-go/qinling/pkg/testutil"
)

// kubectlPath is Debian's (Google Cloud SDK's) kubectl; kubectl on PATH may
// be another.
const kubectlPath = "/usr/bin/kubectl"

// devCluster is the devstack cluster as its stack.env describes it.
type devCluster struct {
	dir string
	env map[string]string
}

// loadDevCluster reads STACK_DIR/stack.env and checks it describes a cluster.
func loadDevCluster(t *testing.T) *devCluster {
	t.Helper()
	dir := os.Getenv("STACK_DIR")
	if dir == "" {
		dir = os.Getenv("K8S_STACK_DIR")
	}
	if dir == "" {
		dir = "/opt/qinling-k8s-stack"
	}
	env, err := testutil.ReadEnvFile(filepath.Join(dir, "stack.env"))
	if err != nil {
		t.Fatalf("no devstack stack in %s (%v): run ./tox -e k8s, or QINLING_ORCHESTRATOR=kubernetes devstack/stack.sh with that STACK_DIR", dir, err)
	}
	for _, k := range []string{"KUBECONFIG_ADMIN", "KUBECONFIG_QINLING", "K8S_NAMESPACE", "K8S_PYTHON_IMAGE",
		"K8S_NODEJS_IMAGE", "K8S_HELLO_IMAGE", "KUBE_NODE_NAME"} {
		if env[k] == "" {
			t.Fatalf("%s/stack.env has no %s: the stack has no kubernetes service (QINLING_ORCHESTRATOR=kubernetes)", dir, k)
		}
	}
	if _, err := os.Stat(kubectlPath); err != nil {
		t.Fatalf("%s: %v", kubectlPath, err)
	}
	return &devCluster{dir: dir, env: env}
}

// kubectl runs kubectl as the identity of kubeconfig (KUBECONFIG_ADMIN or
// KUBECONFIG_QINLING) with stdin, and returns its stdout; a failure is
// returned with stderr.
func (c *devCluster) kubectl(t *testing.T, kubeconfig, stdin string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// Its discovery cache goes to KUBECACHEDIR (./tox -e k8s sets it) or
	// a temporary directory, not ~/.kube.
	cache := os.Getenv("KUBECACHEDIR")
	if cache == "" {
		cache = filepath.Join(os.TempDir(), "qinling-k8s-test-kubectl-cache")
	}
	full := append([]string{"--kubeconfig", c.env[kubeconfig], "--cache-dir", cache}, args...)
	cmd := exec.CommandContext(ctx, kubectlPath, full...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("kubectl %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

func (c *devCluster) admin(t *testing.T, args ...string) string {
	t.Helper()
	out, err := c.kubectl(t, "KUBECONFIG_ADMIN", "", args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// podSpec is a pod of image in the test namespace, with the settings the
// kubernetes orchestrator uses (local images only, non-root).
func (c *devCluster) podSpec(name, image string, args []string, ready bool) string {
	pod := map[string]any{
		"apiVersion": "v1",
		"kind":       "Pod",
		"metadata":   map[string]any{"name": name, "namespace": c.env["K8S_NAMESPACE"], "labels": map[string]string{"qinling-k8s-test": "1"}},
		"spec": map[string]any{
			"restartPolicy":                 "Never",
			"terminationGracePeriodSeconds": 1,
			"securityContext":               map[string]any{"runAsNonRoot": true, "runAsUser": 65534},
			"containers": []map[string]any{{
				"name":            "main",
				"image":           image,
				"imagePullPolicy": "Never",
				"args":            args,
			}},
		},
	}
	if ready {
		pod["spec"].(map[string]any)["containers"].([]map[string]any)[0]["readinessProbe"] = map[string]any{
			"httpGet":       map[string]any{"path": "/ping", "port": 9090},
			"periodSeconds": 1,
		}
	}
	b, _ := json.Marshal(pod)
	return string(b)
}

// runPod creates the pod and deletes it when the test ends.
func (c *devCluster) runPod(t *testing.T, name, image string, args []string, ready bool) {
	t.Helper()
	if _, err := c.kubectl(t, "KUBECONFIG_ADMIN", c.podSpec(name, image, args, ready), "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = c.kubectl(t, "KUBECONFIG_ADMIN", "", "-n", c.env["K8S_NAMESPACE"], "delete", "pod", name, "--wait=false", "--ignore-not-found")
	})
}

// waitPod polls the pod's jsonpath expression until it equals want.
func (c *devCluster) waitPod(t *testing.T, name, jsonpath, want string, timeout time.Duration) {
	t.Helper()
	t.Cleanup(func() { // before runPod's cleanup deletes the pod
		if t.Failed() {
			out, _ := c.kubectl(t, "KUBECONFIG_ADMIN", "", "-n", c.env["K8S_NAMESPACE"], "describe", "pod", name)
			t.Logf("pod %s:\n%s", name, out)
		}
	})
	testutil.WaitFor(t, fmt.Sprintf("pod %s: %s to be %q", name, jsonpath, want), timeout, 250*time.Millisecond, func() (bool, any) {
		got := c.admin(t, "-n", c.env["K8S_NAMESPACE"], "get", "pod", name, "-o", "jsonpath="+jsonpath)
		return got == want, got
	})
}

func podName(prefix string) string {
	return fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano()%1_000_000_000)
}

func TestCluster_NodeReadyWithTheDevstackImages(t *testing.T) {
	c := loadDevCluster(t)
	var node struct {
		Status struct {
			Conditions []struct{ Type, Status string }
			Images     []struct{ Names []string }
			NodeInfo   struct{ KubeletVersion string }
		}
	}
	if err := json.Unmarshal([]byte(c.admin(t, "get", "node", c.env["KUBE_NODE_NAME"], "-o", "json")), &node); err != nil {
		t.Fatal(err)
	}
	ready := false
	for _, cond := range node.Status.Conditions {
		if cond.Type == "Ready" {
			ready = cond.Status == "True"
		}
	}
	if !ready {
		t.Fatalf("node %s is not Ready: %+v", c.env["KUBE_NODE_NAME"], node.Status.Conditions)
	}
	if v := node.Status.NodeInfo.KubeletVersion; !strings.HasPrefix(v, "v1.34.") {
		t.Errorf("kubelet version %s, want v1.34.x", v)
	}
	have := map[string]bool{}
	for _, img := range node.Status.Images {
		for _, n := range img.Names {
			have[n] = true
		}
	}
	for _, k := range []string{"K8S_PAUSE_IMAGE", "K8S_PYTHON_IMAGE", "K8S_NODEJS_IMAGE", "K8S_HELLO_IMAGE"} {
		if !have[c.env[k]] {
			t.Errorf("the node has no %s %s (it has %v)", k, c.env[k], have)
		}
	}
}

// An image function's pod: the input, split on whitespace, as arguments;
// its output is the pod's log.
func TestCluster_HelloImagePodLog(t *testing.T) {
	c := loadDevCluster(t)
	name := podName("hello")
	start := time.Now()
	c.runPod(t, name, c.env["K8S_HELLO_IMAGE"], []string{"from", "the", "k8s", "tier"}, false)
	c.waitPod(t, name, "{.status.phase}", "Succeeded", 60*time.Second)
	t.Logf("pod %s Succeeded %.2fs after creation", name, time.Since(start).Seconds())
	log := c.admin(t, "-n", c.env["K8S_NAMESPACE"], "logs", name)
	if want := "Hello from image, args: from the k8s tier\n"; log != want {
		t.Fatalf("log %q, want %q", log, want)
	}
}

// The runtime images' servers answer on the pod IP, straight from the host
// (the devstack routes the pod network via the node's namespace).
func TestCluster_RuntimePodsAnswerOnTheirPodIP(t *testing.T) {
	c := loadDevCluster(t)
	for _, rt := range []struct{ name, image string }{
		{"python3", c.env["K8S_PYTHON_IMAGE"]},
		{"nodejs", c.env["K8S_NODEJS_IMAGE"]},
	} {
		t.Run(rt.name, func(t *testing.T) {
			t.Parallel()
			name := podName("rt-" + rt.name)
			start := time.Now()
			c.runPod(t, name, rt.image, nil, true)
			c.waitPod(t, name, `{.status.conditions[?(@.type=="Ready")].status}`, "True", 90*time.Second)
			t.Logf("pod %s Ready %.2fs after creation", name, time.Since(start).Seconds())
			ip := c.admin(t, "-n", c.env["K8S_NAMESPACE"], "get", "pod", name, "-o", "jsonpath={.status.podIP}")
			resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + ip + ":9090/ping")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET %s:9090/ping: %d %q", ip, resp.StatusCode, body)
			}
		})
	}
}

// The engines' identity: the Role of docs/kubernetes.md in its namespace
// (plus reading ReplicaSets and events), nothing cluster-wide.
func TestCluster_QinlingIdentityRights(t *testing.T) {
	c := loadDevCluster(t)
	ns := c.env["K8S_NAMESPACE"]
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"create", "deployments.apps", "-n", ns}, "yes"},
		{[]string{"patch", "pods", "-n", ns}, "yes"},
		{[]string{"delete", "pods", "-n", ns}, "yes"},
		{[]string{"patch", "pods", "--subresource=resize", "-n", ns}, "yes"},
		{[]string{"get", "pods", "--subresource=log", "-n", ns}, "yes"},
		{[]string{"list", "events", "-n", ns}, "yes"},
		{[]string{"create", "pods", "-n", "default"}, "no"},
		{[]string{"get", "nodes"}, "no"},
		{[]string{"create", "namespaces"}, "no"},
		{[]string{"get", "secrets", "-n", ns}, "no"},
		{[]string{"create", "services", "-n", ns}, "no"},
		{[]string{"create", "pods", "--subresource=exec", "-n", ns}, "no"},
	} {
		out, _ := c.kubectl(t, "KUBECONFIG_QINLING", "", append([]string{"auth", "can-i"}, tc.args...)...)
		if got := strings.TrimSpace(out); got != tc.want {
			t.Errorf("qinling: can-i %s = %q, want %q", strings.Join(tc.args, " "), got, tc.want)
		}
	}
}
