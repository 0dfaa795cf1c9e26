//go:build functional

package functional

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/testutil"
)

// Tests that break a part of the real stack on purpose: an engine is killed,
// the broker restarted. They are not parallel, so Go runs them before every
// parallel test resumes and nothing else feels the breakage; each leaves
// the stack whole again (devstack/restart.sh) even when it fails.

// sleeperPy runs long enough to be caught mid-way.
const sleeperPy = "import time\n\ndef main(seconds=3, **kwargs):\n    time.sleep(seconds)\n    return 'slept %s' % seconds\n"

// settled is the final state of an execution: success, failed with a
// reason in its result's output, or error because the engine that started
// it stopped (it is never run twice).
func requireSettled(t *testing.T, ex map[string]any) {
	t.Helper()
	switch ex["status"] {
	case "success":
	case "error":
		out, _ := result(t, ex)
		assert.Equal(t, engineStoppedMsg, out, "execution %s ended in error for another reason", ex["id"])
	case "failed":
		s, _ := ex["result"].(string)
		var res map[string]any
		require.NoError(t, json.Unmarshal([]byte(s), &res), "failed execution %s: result %q is not JSON", ex["id"], s)
		out, _ := res["output"].(string)
		assert.NotEmpty(t, out, "failed execution %s must say why: result %s", ex["id"], s)
	default:
		t.Errorf("execution %s ended %q, want success, failed or error: %v", ex["id"], ex["status"], ex)
	}
}

// waitAllSettled polls executions until none is running or the deadline
// passes, and returns the last view of each.
func waitAllSettled(t *testing.T, ids []string, timeout time.Duration) map[string]map[string]any {
	t.Helper()
	last := map[string]map[string]any{}
	testutil.WaitFor(t, "every execution to settle (none lost or stuck)", timeout, 500*time.Millisecond, func() (bool, any) {
		var stuck []string
		for _, id := range ids {
			if ex := last[id]; ex != nil && ex["status"] != "running" {
				continue
			}
			r := call(t, srv, http.MethodGet, "/v1/executions/"+id, nil)
			expect(t, r, http.StatusOK)
			ex := r.Object(t)
			last[id] = ex
			if ex["status"] == "running" {
				stuck = append(stuck, id)
			}
		}
		return len(stuck) == 0, fmt.Sprintf("%d of %d executions still running: %v", len(stuck), len(ids), stuck)
	})
	return last
}

// engineVictim skips the test unless it runs on a real stack with two
// engines or more, and returns the stack and the engine to kill, which is
// brought back when the test ends if it is still down.
func engineVictim(t *testing.T, why string) (*testutil.Stack, string) {
	testutil.SkipUnlessReal(t, srv, why)
	st := srv.Stack
	require.GreaterOrEqual(t, st.Engines, 2, "needs QINLING_ENGINES >= 2 in devstack/settings")
	const victim = "engine-1"
	runsAgainAfter(t, st, victim)
	return st, victim
}

// runsAgainAfter restarts the stack's daemon name when t ends, if it is
// not running then.
func runsAgainAfter(t *testing.T, st *testutil.Stack, name string) {
	t.Cleanup(func() {
		if _, err := st.DaemonPID(name); err != nil {
			if err := st.Restart(name); err != nil {
				t.Errorf("bringing %s back: %v", name, err)
			}
		}
	})
}

// startedOn is the engine an "execution started" log line names.
var startedOn = regexp.MustCompile(`engine=(engine-\d+)#`)

// TestEngineCrash: with two engines on one queue, SIGKILL one while async
// executions are in flight; every execution still ends success or failed
// with a reason (none lost, none stuck running), then the engine comes back.
func TestEngineCrash(t *testing.T) {
	st, victim := engineVictim(t, "the all-in-one has one in-process engine")

	fid := newFunction(t, "sleeper", "sleeper.main", map[string]string{"sleeper.py": sleeperPy}, "timeout", "30")
	// One run first, so that both engines have had the package and the
	// runtime's pool long before the crash.
	succeeds(t, srv, fid, `{"seconds": 0}`, "slept 0")

	const n = 10
	ids := make([]string, 0, n)
	for range n {
		ex := execute(t, srv, fid, `{"seconds": 3}`, false)
		ids = append(ids, ex["id"].(string))
	}
	// Let both engines pick some up and start them.
	time.Sleep(1500 * time.Millisecond)
	pid, err := st.DaemonPID(victim)
	require.NoError(t, err)
	t.Logf("SIGKILL %s (PID %d) with %d async executions in flight", victim, pid, n)
	require.NoError(t, st.KillDaemon(victim))

	// Redelivery is at once (the broker sees the connection drop); a lock
	// the dead engine held lives at most [etcd] lock_ttl (30 s).
	final := waitAllSettled(t, ids, 2*time.Minute)
	counts := map[any]int{}
	for _, id := range ids {
		requireSettled(t, final[id])
		counts[final[id]["status"]]++
	}
	t.Logf("after the crash: %d success, %d failed, %d error", counts["success"], counts["failed"], counts["error"])

	require.NoError(t, st.Restart(victim), "devstack/restart.sh %s", victim)
	_, err = st.DaemonPID(victim)
	require.NoError(t, err, "%s after restart.sh", victim)
	// Both engines serve again: a handful of runs all succeed.
	for range 4 {
		succeeds(t, srv, fid, `{"seconds": 0}`, "slept 0")
	}
}

// TestEngineCrashSettled: SIGKILL an engine while executions run on it;
// the other engine ends them in error saying the engine stopped (once the
// dead engine's registration has expired) and does not run them again,
// while those running on the surviving engine end normally. The victim is
// the engine that runs most of them: executions go to the engine that owns
// the function's workers (docs/scaling.md), usually all to one.
func TestEngineCrashSettled(t *testing.T) {
	testutil.SkipUnlessReal(t, srv, "the all-in-one has one in-process engine (its case is TestCrashRecovery)")
	st := srv.Stack
	require.GreaterOrEqual(t, st.Engines, 2, "needs QINLING_ENGINES >= 2 in devstack/settings")
	fid := newFunction(t, "sleeper", "sleeper.main", map[string]string{"sleeper.py": sleeperPy}, "timeout", "120")
	for range 4 {
		succeeds(t, srv, fid, `{"seconds": 0}`, "slept 0")
	}
	const n = 8
	ids := make([]string, 0, n)
	for range n {
		ids = append(ids, execute(t, srv, fid, `{"seconds": 40}`, false)["id"].(string))
	}
	started := waitStarted(t, st.Logs, ids)
	byEngine := map[string][]string{}
	for id, line := range started {
		m := startedOn.FindStringSubmatch(line)
		require.NotNil(t, m, "the engine of %q", line)
		byEngine[m[1]] = append(byEngine[m[1]], id)
	}
	var victim string
	for name, on := range byEngine {
		if len(on) > len(byEngine[victim]) {
			victim = name
		}
	}
	onVictim := byEngine[victim]
	runsAgainAfter(t, st, victim)
	t.Logf("SIGKILL %s with %d of %d executions running on it", victim, len(onVictim), n)
	require.NoError(t, st.KillDaemon(victim))

	final := waitAllSettled(t, ids, 3*time.Minute)
	for _, id := range ids {
		ex := final[id]
		if slices.Contains(onVictim, id) {
			requireOutput(t, ex, "error", engineStoppedMsg)
		} else {
			requireOutput(t, ex, "success", "slept 40")
		}
	}
	require.NoError(t, st.Restart(victim), "devstack/restart.sh %s", victim)
}

// brokerProbe is one answer (or failure) of the API during TestBrokerRestart.
type brokerProbe struct {
	at     time.Time
	status int
	body   string
	fault  string
	err    error
	id     string // the execution's id when accepted
}

// TestBrokerRestart: while a loop creates async executions, restart
// RabbitMQ. During the outage the API answers 503 with a JSON fault (not a
// hang, not a 500); afterwards it recovers by itself; every execution it
// accepted (201) ends success or failed.
func TestBrokerRestart(t *testing.T) {
	testutil.SkipUnlessReal(t, srv, "the all-in-one has no message broker")
	st := srv.Stack
	t.Cleanup(func() {
		if _, err := st.DaemonPID("rabbitmq"); err != nil {
			if err := st.Restart("rabbitmq"); err != nil {
				t.Errorf("bringing rabbitmq back: %v", err)
			}
		}
	})
	fid := helloFunction(t)
	succeeds(t, srv, fid, `{"name": "before"}`, "Hello, before")

	// Far below rpc_response_timeout: an answer that slow is a hang.
	const hang = 20 * time.Second
	client := srv.WithTimeout(hang)
	var (
		mu     sync.Mutex
		probes []brokerProbe
	)
	probe := func() brokerProbe {
		p := brokerProbe{at: time.Now()}
		r, err := client.TryDo(http.MethodPost, "/v1/executions", map[string]any{
			"function_id": fid, "function_version": 0, "function_alias": nil, "sync": false, "input": `{"name": "loop"}`,
		})
		if err != nil {
			p.err = err
			return p
		}
		p.status, p.body = r.Status, string(r.Body)
		var m map[string]any
		if json.Unmarshal(r.Body, &m) == nil {
			p.fault, _ = m["faultstring"].(string)
			p.id, _ = m["id"].(string)
		}
		if ct := r.Header.Get("Content-Type"); r.Status >= 400 && !strings.HasPrefix(ct, "application/json") {
			p.err = fmt.Errorf("%d with Content-Type %q, want application/json", r.Status, ct)
		}
		return p
	}
	ctx, stop := context.WithCancel(context.Background())
	loopDone := make(chan struct{})
	go func() {
		defer close(loopDone)
		for ctx.Err() == nil {
			p := probe()
			mu.Lock()
			probes = append(probes, p)
			mu.Unlock()
			time.Sleep(150 * time.Millisecond)
		}
	}()
	defer func() { stop(); <-loopDone }()

	time.Sleep(2 * time.Second)
	outageStart := time.Now()
	restartCtx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd, out := st.RestartCommand(restartCtx, "rabbitmq", "--down", "8")
	require.NoError(t, cmd.Run(), "devstack/restart.sh rabbitmq:\n%s", out)
	brokerBack := time.Now()
	t.Logf("rabbitmq was restarted: %.1fs from stop to ready", brokerBack.Sub(outageStart).Seconds())

	// Recovery by itself: within a minute of the broker being back, the
	// API accepts executions again.
	recovered := false
	for deadline := brokerBack.Add(time.Minute); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		mu.Lock()
		n := len(probes)
		ok := n > 0 && probes[n-1].at.After(brokerBack) && probes[n-1].status == http.StatusCreated
		mu.Unlock()
		if ok {
			recovered = true
			break
		}
	}
	time.Sleep(time.Second)
	stop()
	<-loopDone

	var accepted []string
	unavailable := 0
	for _, p := range probes {
		switch {
		case p.err != nil:
			t.Errorf("POST /v1/executions at %s: %v", p.at.Format("15:04:05.000"), p.err)
		case p.status == http.StatusCreated:
			accepted = append(accepted, p.id)
		case p.status == http.StatusServiceUnavailable:
			unavailable++
			assert.NotEmpty(t, p.fault, "503 without a JSON faultstring: %s", p.body)
		default:
			t.Errorf("POST /v1/executions at %s answered %d, want 201 or 503: %s", p.at.Format("15:04:05.000"), p.status, p.body)
		}
	}
	t.Logf("%d requests: %d accepted, %d answered 503", len(probes), len(accepted), unavailable)
	assert.Positive(t, unavailable, "the API never answered 503 while the broker was down")
	require.True(t, recovered, "the API did not accept executions again within a minute of the broker's return")
	require.NotEmpty(t, accepted)

	// Nothing accepted is lost: each one ends.
	final := waitAllSettled(t, accepted, 2*time.Minute)
	for _, id := range accepted {
		requireSettled(t, final[id])
	}
}
