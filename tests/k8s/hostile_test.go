//go:build k8s

package k8s

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The hostile suite of the Kubernetes orchestrator (docs/isolation.md,
// "Kubernetes"): a function written by a determined author, in each
// runtime, tries from inside its pod everything a pod could reach. Each
// probe is a named case; a probe that gets through fails it.

//go:embed testdata/probe.py
var probePython string

//go:embed testdata/probe.js
var probeNode string

// probes are the attacks, by name: [kind, target] as testdata/probe.py and
// probe.js understand them. victim and free are pod IPs of the same
// runtime: a pod specialised for another function and a free pool pod.
func probes(env map[string]string, victim, free string) map[string][2]string {
	host, node := env["KUBE_HOST_IP"], env["KUBE_NODE_IP"]
	gateway := strings.TrimSuffix(strings.Split(env["KUBE_POD_CIDR"], "/")[0], ".0") + ".1"
	service := strings.TrimSuffix(strings.Split(env["KUBE_SERVICE_CIDR"], "/")[0], ".0") + ".1"
	p := map[string][2]string{
		"api server by its Service IP":               {"connect", service + ":443"},
		"api server on the host":                     {"connect", host + ":" + env["KUBE_APISERVER_PORT"]},
		"kubelet":                                    {"connect", node + ":10250"},
		"kubelet read-only port":                     {"connect", node + ":10255"},
		"kubelet through the pod gateway":            {"connect", gateway + ":10250"},
		"cluster etcd":                               {"connect", host + ":" + env["KUBE_ETCD_PORT"]},
		"another pod's runtime server (specialised)": {"post", victim + ":" + env["K8S_RUNTIME_PORT"]},
		"another pod's runtime server (free)":        {"post", free + ":" + env["K8S_RUNTIME_PORT"]},
		"another pod, any port":                      {"connect", victim + ":22"},
		"service account token":                      {"read", "/var/run/secrets/kubernetes.io/serviceaccount/token"},
		"node's kubelet configuration":               {"read", env["KUBE_DIR"] + "/kubelet/config.yaml"},
		"node's processes":                           {"ps", ""},
		"cluster DNS":                                {"resolve", "kubernetes.default.svc.cluster.local"},
		"privileges":                                 {"caps", ""},
		"cloud metadata service":                     {"connect", "169.254.169.254:80"},
	}
	// The host's services listen on 127.0.0.1: through the host's end of
	// the node link, the node and the pod gateway, they must stay out of
	// reach.
	for _, svc := range []struct{ name, port string }{
		{"MariaDB", env["MYSQL_PORT"]}, {"RabbitMQ", env["RABBIT_PORT"]}, {"etcd", env["ETCD_PORT"]},
		{"Keystone", env["KEYSTONE_PORT"]}, {"qinling-api", env["QINLING_API_PORT"]},
	} {
		for _, via := range []struct{ name, ip string }{{"host", host}, {"node", node}, {"gateway", gateway}} {
			p[fmt.Sprintf("host %s via the %s", svc.name, via.name)] = [2]string{"connect", via.ip + ":" + svc.port}
		}
	}
	return p
}

// podIP is the IP of the first running pod matching selector.
func (c *cluster) podIP(t *testing.T, selector string) string {
	t.Helper()
	var ip string
	require.Eventually(t, func() bool {
		ip = strings.Fields(c.kube(t, "get", "pods", "-l", selector, "--field-selector=status.phase=Running",
			"-o", "jsonpath={range .items[*]}{.status.podIP}{\" \"}{end}") + " ")[0]
		return ip != ""
	}, 2*time.Minute, time.Second, "a running pod %s", selector)
	return ip
}

// hostileRuntime is a runtime of the suite: its image, a function's file
// name, the probe function and a victim function returning "victim".
type hostileRuntime struct{ name, image, file, probe, victim string }

func (c *cluster) hostileRuntimes() []hostileRuntime {
	return []hostileRuntime{
		{"python3", c.stack.PythonImage(), "main.py", probePython, "def main(**kwargs):\n    return 'victim'\n"},
		{"nodejs", c.stack.Env["K8S_NODEJS_IMAGE"], "main.js", probeNode, "exports.main = () => 'victim';\n"},
	}
}

// runVictim creates a runtime of rt's image and a victim function on it,
// and runs the victim once so that a pod is specialised for it.
func (c *cluster) runVictim(t *testing.T, rt hostileRuntime) (runtimeID, victim string) {
	t.Helper()
	require.NotEmpty(t, rt.image)
	runtimeID = c.runtime(t, rt.image)
	victim = c.functionFile(t, runtimeID, rt.file, rt.victim)
	c.victimServes(t, victim)
	return runtimeID, victim
}

// victimServes: the victim function still answers its own callers.
func (c *cluster) victimServes(t *testing.T, victim string) {
	t.Helper()
	ex := c.execute(t, map[string]any{"function_id": victim, "sync": true})
	require.Equal(t, "success", ex["status"], "%v", ex)
	assert.Equal(t, "victim", output(t, ex)["output"])
}

// TestHostilePods: from inside its pod, a function reaches nothing of the
// cluster, the node, the host or other pods (probes), and the runtime
// servers refuse whoever lacks a pod's token (strangerRefused).
func TestHostilePods(t *testing.T) {
	c := loadCluster(t)
	for _, rt := range c.hostileRuntimes() {
		t.Run(rt.name, func(t *testing.T) {
			rtID, victim := c.runVictim(t, rt)
			attacker := c.functionFile(t, rtID, rt.file, rt.probe, "timeout", "120")
			// The attacker's own pod first, so that the free pod probed is
			// another one.
			ex := c.execute(t, map[string]any{"function_id": attacker, "sync": true})
			require.Equal(t, "success", ex["status"], "%v", ex)
			probes := probes(c.stack.Env, c.podIP(t, "function_id="+victim), c.podIP(t, "runtime_id="+rtID+",!function_id"))
			input, err := json.Marshal(map[string]any{"probes": probes})
			require.NoError(t, err)
			ex = c.execute(t, map[string]any{"function_id": attacker, "sync": true, "input": string(input)})
			require.Equal(t, "success", ex["status"], "%v", ex)
			res := output(t, ex)["output"].(map[string]any)
			for _, n := range slices.Sorted(maps.Keys(probes)) {
				got := fmt.Sprint(res[n])
				t.Logf("%-48s %s", n, got)
				assert.True(t, strings.HasPrefix(got, "closed:"), "%s (%v) got through: %s", n, probes[n], got)
			}
			c.strangerRefused(t, rtID, victim)
			c.strangerSendsGarbage(t, victim)
			c.victimServes(t, victim)
		})
	}
}

// strangerSendsGarbage: from where strangerRefused stands, bytes no engine
// sends, and requests begun and left hanging, against the victim's runtime
// server (the Python runtime's is its own: runtimes/python3/_qinling_runtime/wire.py).
// Nothing runs, and the victim keeps serving its callers while the
// hanging connections stay open.
func (c *cluster) strangerSendsGarbage(t *testing.T, victim string) {
	t.Helper()
	addr := net.JoinHostPort(c.podIP(t, "function_id="+victim), c.stack.Env["K8S_RUNTIME_PORT"])
	dial := func() net.Conn {
		conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
		require.NoError(t, err)
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	for _, tc := range []struct{ name, send string }{
		{"binary garbage", "\x00\x01\x02\xff\r\n\r\n"},
		{"a TLS hello", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + strings.Repeat("\x00", 40) + "\r\n\r\n"},
		{"a chunked execution", "POST /execute HTTP/1.1\r\nHost: w\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"},
		{"an execution of 100 GB", "POST /execute HTTP/1.1\r\nHost: w\r\nContent-Length: 100000000000\r\n\r\n{"},
		{"two lengths", "POST /execute HTTP/1.1\r\nHost: w\r\nContent-Length: 2\r\nContent-Length: 40\r\n\r\n{}"},
		{"a header flood", "POST /execute HTTP/1.1\r\nHost: w\r\n" + strings.Repeat("X-Flood: "+strings.Repeat("a", 4000)+"\r\n", 64) + "Content-Length: 2\r\n\r\n{}"},
	} {
		t.Run("garbage/"+tc.name, func(t *testing.T) {
			conn := dial()
			_, _ = conn.Write([]byte(tc.send)) // the server may close before reading it all
			require.NoError(t, conn.SetReadDeadline(time.Now().Add(30*time.Second)))
			answer, err := io.ReadAll(io.LimitReader(conn, 4096))
			var ne net.Error
			require.False(t, errors.As(err, &ne) && ne.Timeout(), "no answer and no close within 30 s: %q", answer)
			// An error status, or the connection closed without one.
			if len(answer) > 0 {
				assert.Regexp(t, `^HTTP/1\.[01] [45]\d\d `, string(answer))
			}
		})
	}
	// Half requests, held open while the victim is called.
	for i := 0; i < 8; i++ {
		_, err := dial().Write([]byte("POST /execute HTTP/1.1\r\nHost: w\r\nContent-Length: 100\r\n\r\n{"))
		require.NoError(t, err)
	}
	c.victimServes(t, victim)
}

// strangerRefused stands where a pod of a cluster whose CNI enforces no
// NetworkPolicy stands: on the pod network, outside the engine. The
// devstack node lets only the host through, so the calls come from the
// host, without the engine's token: the victim's pod runs nothing and
// names nothing, and a free pod of the runtime takes no package.
func (c *cluster) strangerRefused(t *testing.T, rtID, victim string) {
	t.Helper()
	port := c.stack.Env["K8S_RUNTIME_PORT"]
	hc := &http.Client{Timeout: 10 * time.Second}
	post := func(url, ctype, body string, header ...string) (int, string) {
		req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", ctype)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := hc.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		buf := make([]byte, 512)
		n, _ := resp.Body.Read(buf)
		return resp.StatusCode, string(buf[:n])
	}
	job := fmt.Sprintf(`{"execution_id": "stolen", "function_id": %q, "function_version": 0, "entry": "main.main", "input": null, "timeout": 5}`, victim)
	victimURL := "http://" + c.podIP(t, "function_id="+victim) + ":" + port
	for name, header := range map[string][]string{
		"no token": nil, "a guessed token": {"X-Qinling-Worker-Token", strings.Repeat("0", 64)},
	} {
		status, body := post(victimURL+"/execute", "application/json", job, header...)
		assert.Equal(t, http.StatusForbidden, status, "%s: %s", name, body)
		assert.NotContains(t, body, victim, "%s: the refusal does not name the function", name)
		status, body = post(victimURL+"/package?function_id=evil&function_version=0", "application/zip", "PK", header...)
		assert.Equal(t, http.StatusForbidden, status, "%s: %s", name, body)
	}
	freeURL := "http://" + c.podIP(t, "runtime_id="+rtID+",!function_id") + ":" + port
	status, body := post(freeURL+"/package?function_id=evil&function_version=0", "application/zip", "PK")
	assert.Equal(t, http.StatusForbidden, status, "a free pod takes no package without a token: %s", body)
	status, body = post(freeURL+"/execute", "application/json", job)
	assert.Equal(t, http.StatusForbidden, status, "%s", body)
}

// TestCluster_PodReachesNothing runs the probes in a pod of the Python
// runtime image started by hand (kubectl exec), so they run on the cluster
// alone too (K8S_ENABLED_SERVICES=kubernetes): the node's firewall, not
// qinling, stops them. The other pod probed is a second such pod, whose
// server requires no token.
func TestCluster_PodReachesNothing(t *testing.T) {
	c := loadDevCluster(t)
	ns := c.env["K8S_NAMESPACE"]
	attacker, other := podName("hostile"), podName("other")
	for _, n := range []string{attacker, other} {
		c.runPod(t, n, c.env["K8S_PYTHON_IMAGE"], nil, true)
	}
	ips := map[string]string{}
	for _, n := range []string{attacker, other} {
		c.waitPod(t, n, `{.status.conditions[?(@.type=="Ready")].status}`, "True", 90*time.Second)
		ips[n] = c.admin(t, "-n", ns, "get", "pod", n, "-o", "jsonpath={.status.podIP}")
	}
	p := probes(c.env, ips[other], ips[other])
	// This pod is not the orchestrator's (runPod: a service account
	// token, no seccomp profile): only the network is in question here.
	maps.DeleteFunc(p, func(_ string, v [2]string) bool { return v[0] != "connect" && v[0] != "post" && v[0] != "resolve" })
	in, err := json.Marshal(p)
	require.NoError(t, err)
	script := probePython + "\nimport sys\nprint(json.dumps(main(probes=json.loads(sys.argv[1]))))\n"
	out := c.admin(t, "-n", ns, "exec", attacker, "--", "/usr/bin/python3", "-c", script, string(in))
	var res map[string]string
	require.NoError(t, json.Unmarshal([]byte(out), &res), "%s", out)
	for _, n := range slices.Sorted(maps.Keys(p)) {
		t.Logf("%-48s %s", n, res[n])
		assert.True(t, strings.HasPrefix(res[n], "closed:"), "%s (%v) got through: %s", n, p[n], res[n])
	}
}

// hostileDiskSrc, by runtime: with input step "termination" it tries to
// write 1 MiB to the termination message file, where the kubelet puts it
// by default and where the orchestrator does (orchestrator/kubernetes,
// pool.go); with step "fill" it writes 1088 MiB into the packages
// emptyDir, past its 1 GiB sizeLimit.
var hostileDiskSrc = map[string]string{
	"python3": `import errno, os
def main(step=None, **kwargs):
    if step == 'termination':
        out = {}
        for p in ('/dev/termination-log', '/root/termination-log'):
            try:
                with open(p, 'ab') as f:
                    f.write(b'x' * (1 << 20))
                out[p] = 'written'
            except OSError as e:
                out[p] = errno.errorcode.get(e.errno, str(e.errno))
        return out
    chunk, mib = b'x' * (1 << 20), 0
    try:
        for i in range(17):
            with open('/var/qinling/packages/fill-%d' % i, 'wb') as f:
                for _ in range(64):
                    f.write(chunk)
                    mib += 1
    except OSError as e:
        return {'mib': mib, 'error': errno.errorcode.get(e.errno, str(e.errno))}
    return {'mib': mib}
`,
	"nodejs": `const fs = require('fs');
exports.main = (context, input) => {
  if (input && input.step === 'termination') {
    const out = {};
    for (const p of ['/dev/termination-log', '/root/termination-log']) {
      try { fs.appendFileSync(p, Buffer.alloc(1 << 20, 120)); out[p] = 'written'; } catch (e) { out[p] = e.code; }
    }
    return out;
  }
  const chunk = Buffer.alloc(1 << 20, 120);
  let mib = 0;
  try {
    for (let i = 0; i < 17; i++) {
      const fd = fs.openSync('/var/qinling/packages/fill-' + i, 'w');
      try { for (let j = 0; j < 64; j++) { fs.writeSync(fd, chunk); mib++; } } finally { fs.closeSync(fd); }
    }
  } catch (e) { return { mib, error: e.code }; }
  return { mib };
};
`,
}

// TestHostileDisk: what a function writes in its pod that lands on the
// node's disk is bounded. The kubelet's termination message file, bounded
// by nothing, is out of its reach; the packages emptyDir, its one
// disk-backed writable place, gets the pod evicted once past its
// sizeLimit (the kubelet checks it periodically, so the bound is the
// sizeLimit plus what is written until the next check), and the function
// is served by a new pod afterwards.
func TestHostileDisk(t *testing.T) {
	c := loadCluster(t)
	for _, rt := range c.hostileRuntimes() {
		t.Run(rt.name, func(t *testing.T) {
			require.NotEmpty(t, rt.image)
			rtID := c.runtime(t, rt.image)
			fn := c.functionFile(t, rtID, rt.file, hostileDiskSrc[rt.name], "timeout", "180", "memory_size", "134217728")
			termination := func() {
				t.Helper()
				ex := c.execute(t, map[string]any{"function_id": fn, "sync": true, "input": `{"step": "termination"}`})
				require.Equal(t, "success", ex["status"], "%v", ex)
				for p, got := range output(t, ex)["output"].(map[string]any) {
					assert.NotEqual(t, "written", got, "%s is out of the function's reach", p)
				}
			}
			termination()
			pods := c.livePods(t, "function_id="+fn)
			require.Len(t, pods, 1)

			ex := c.execute(t, map[string]any{"function_id": fn, "sync": true, "input": `{"step": "fill"}`})
			t.Logf("fill: %s %v", ex["status"], ex["result"])
			require.Eventually(t, func() bool {
				reason := c.kube(t, "get", "pod", pods[0], "--ignore-not-found", "-o", "jsonpath={.status.reason}")
				return reason == "Evicted" || !slices.Contains(c.livePods(t, "function_id="+fn), pods[0])
			}, 3*time.Minute, 2*time.Second, "the pod %s is evicted past its packages sizeLimit", pods[0])
			termination() // on a new pod
		})
	}
}
