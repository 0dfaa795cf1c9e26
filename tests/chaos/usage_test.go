//go:build chaos

package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/testutil"
)

// The workload's functions: one that succeeds, one that raises, one that
// outlives its 1 s timeout.
const (
	usageOKPy   = "def main(**kwargs):\n    return 'ok'\n"
	usageFailPy = "def main(**kwargs):\n    raise ValueError('asked to fail')\n"
	usageSlowPy = "import time\n\ndef main(**kwargs):\n    time.sleep(5)\n    return 'late'\n"
)

// tally is what one source says one function used.
type tally struct {
	Succeeded, Failed int64
	GBSeconds         float64
}

func (a tally) String() string {
	return fmt.Sprintf("%d succeeded, %d failed, %.6f GB-s", a.Succeeded, a.Failed, a.GBSeconds)
}

// usageProject is one project's part of the workload.
type usageProject struct {
	tgt                     *testutil.Target
	id                      string
	ok, fail, slow, webhook string
	job                     string
	mu                      sync.Mutex
	accepted                map[string]bool
	refused                 map[int]int
}

// TestUsageSourcesAgree: after a workload on devstack — two projects,
// successes, failures, timeouts, a job and webhooks, with an engine killed
// by SIGKILL and RabbitMQ restarted in the middle — the four records of
// what ran agree exactly per project and function: the executions, GET
// /v1/usage, the usage counters in the real Prometheus, and the
// function.execution.end notifications on RabbitMQ, none missing and none
// twice (docs/operations.md).
func TestUsageSourcesAgree(t *testing.T) {
	if !testutil.RealStack() {
		t.Skipf("needs the devstack stack (%s=1 after devstack/stack.sh)", testutil.EnvRealStack)
	}
	st, err := testutil.LoadStack()
	require.NoError(t, err)
	require.Equal(t, "messagingv2", st.Env["QINLING_NOTIFICATIONS"], "needs QINLING_NOTIFICATIONS=messagingv2 (devstack/settings' default)")
	require.True(t, st.Enabled("prometheus"), "needs prometheus in ENABLED_SERVICES")
	restoreStackAfter(t, st)

	from := time.Now().UTC()
	tgt := testutil.StackTarget(st)
	rtID := setupRuntime(t, tgt, st.PythonImage(), "usage-python3")
	var projects []*usageProject
	for _, id := range []testutil.Identity{testutil.Demo, testutil.AltDemo} {
		projects = append(projects, newUsageProject(t, tgt.As(id), rtID))
	}

	// Faults in the middle of the submissions.
	faults := make(chan struct{})
	go func() {
		defer close(faults)
		time.Sleep(10 * time.Second)
		if err := st.KillDaemon("engine-1"); err != nil {
			t.Errorf("SIGKILL engine-1: %v", err)
		} else if err := st.Restart("engine-1"); err != nil {
			t.Errorf("restarting engine-1: %v", err)
		}
		time.Sleep(10 * time.Second)
		if err := st.Restart("rabbitmq"); err != nil {
			t.Errorf("restarting rabbitmq: %v", err)
		}
	}()
	var wg sync.WaitGroup
	for _, p := range projects {
		wg.Add(1)
		go func() { defer wg.Done(); p.submit(t) }()
	}
	wg.Wait()
	<-faults
	for _, p := range projects {
		p.waitJob(t)
	}

	// The executions: every accepted one has ended.
	tables := map[string]map[string]tally{}
	for _, p := range projects {
		tables[p.id] = p.settle(t)
	}
	usage := usageAPI(t, tgt.As(testutil.Admin), from)
	for _, p := range projects {
		for fid, want := range tables[p.id] {
			assertSame(t, "GET /v1/usage", p.id, fid, want, usage[p.id][fid])
			assertPrometheus(t, st, p.id, fid, want)
		}
	}
	fids := map[string]string{}
	for _, p := range projects {
		for _, fid := range []string{p.ok, p.fail, p.slow} {
			fids[fid] = p.id
		}
	}
	executions := 0
	for _, byFunction := range tables {
		for _, n := range byFunction {
			executions += int(n.Succeeded + n.Failed)
		}
	}
	notes := notifications(t, st, fids, executions)
	for _, p := range projects {
		for fid, want := range tables[p.id] {
			assertSame(t, "notifications", p.id, fid, want, notes[p.id][fid])
		}
	}
	for _, p := range projects {
		t.Logf("project %s: %d executions accepted, refusals by status %v; %v", p.id, len(p.accepted), p.refused, tables[p.id])
	}
}

// newUsageProject makes the project's functions, webhook and a job that
// runs once a minute from now (upstream's earliest).
func newUsageProject(t *testing.T, tgt *testutil.Target, rtID string) *usageProject {
	p := &usageProject{tgt: tgt, id: tgt.ProjectID(t), accepted: map[string]bool{}, refused: map[int]int{}}
	p.ok = setupPackageFunction(t, tgt, rtID, "usage-ok", "ok.main", 60, map[string]string{"ok.py": usageOKPy})
	p.fail = setupPackageFunction(t, tgt, rtID, "usage-fail", "fail.main", 60, map[string]string{"fail.py": usageFailPy})
	p.slow = setupPackageFunction(t, tgt, rtID, "usage-slow", "slow.main", 1, map[string]string{"slow.py": usageSlowPy})
	r := setupDo(t, tgt, http.MethodPost, "/v1/webhooks", map[string]any{"function_id": p.ok})
	require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
	p.webhook = r.Object(t)["id"].(string)
	first := time.Now().UTC().Add(70 * time.Second).Format("2006-01-02 15:04:05")
	r = setupDo(t, tgt, http.MethodPost, "/v1/jobs", map[string]any{"function_id": p.ok, "first_execution_time": first})
	require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
	p.job = r.Object(t)["id"].(string)
	return p
}

// submit sends the project's executions from four clients, spread over
// about 40 s so that the faults fall among them. A refusal (503 while a
// service restarts, 429) is sent again.
func (p *usageProject) submit(t *testing.T) {
	type call struct {
		fid  string
		sync bool
		hook bool
	}
	var calls []call
	add := func(n int, c call) {
		for range n {
			calls = append(calls, c)
		}
	}
	add(24, call{fid: p.ok})
	add(6, call{fid: p.ok, sync: true})
	add(8, call{fid: p.fail})
	add(2, call{fid: p.fail, sync: true})
	add(3, call{fid: p.slow})
	add(8, call{hook: true})
	work := make(chan call)
	var wg sync.WaitGroup
	anonymous := p.tgt.As(testutil.Anonymous)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range work {
				path, body, key := "/v1/executions", any(map[string]any{"function_id": c.fid, "sync": c.sync}), "id"
				sender := p.tgt
				if c.hook {
					path, body, key, sender = "/v1/webhooks/"+p.webhook+"/invoke", map[string]any{}, "execution_id", anonymous
				}
				p.send(t, sender, path, body, key)
			}
		}()
	}
	// Interleaved so that each kind is in flight during the faults.
	for i := range calls {
		work <- calls[(i*7)%len(calls)]
		time.Sleep(time.Second)
	}
	close(work)
	wg.Wait()
}

// send submits one execution until it is accepted (201, or 202 from a
// webhook) and records its id.
func (p *usageProject) send(t *testing.T, tgt *testutil.Target, path string, body any, key string) {
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		r, err := tgt.TryDo(http.MethodPost, path, body)
		if err == nil && (r.Status == http.StatusCreated || r.Status == http.StatusAccepted) {
			var out map[string]any
			if json.Unmarshal(r.Body, &out) == nil {
				if id, ok := out[key].(string); ok {
					p.mu.Lock()
					p.accepted[id] = true
					p.mu.Unlock()
					return
				}
			}
			t.Errorf("POST %s: %d without %s: %s", path, r.Status, key, r.Body)
			return
		}
		status := 0
		if err == nil {
			status = r.Status
			if status != http.StatusServiceUnavailable && status != http.StatusTooManyRequests {
				t.Errorf("POST %s: %d %s", path, r.Status, r.Body)
				return
			}
		}
		p.mu.Lock()
		p.refused[status]++
		p.mu.Unlock()
		time.Sleep(2 * time.Second)
	}
	t.Errorf("POST %s: not accepted within 5 minutes", path)
}

// waitJob waits for the job's one run to have been started.
func (p *usageProject) waitJob(t *testing.T) {
	testutil.WaitFor(t, "job "+p.job+" to run", 5*time.Minute, 2*time.Second, func() (bool, any) {
		r, err := p.tgt.TryDo(http.MethodGet, "/v1/jobs/"+p.job, nil)
		if err != nil || r.Status != http.StatusOK {
			return false, err
		}
		var job map[string]any
		require.NoError(t, json.Unmarshal(r.Body, &job))
		return job["status"] == "done", job
	})
}

// settle waits until every execution of the project's functions has ended,
// checks that none accepted is missing, and tallies them per function: the
// executions table's account.
func (p *usageProject) settle(t *testing.T) map[string]tally {
	var all map[string]map[string]execView
	testutil.WaitFor(t, "project "+p.id+"'s executions to end", 10*time.Minute, 3*time.Second, func() (bool, any) {
		all = map[string]map[string]execView{}
		running := 0
		for _, fid := range []string{p.ok, p.fail, p.slow} {
			got, err := listExecutions(p.tgt, fid)
			if err != nil {
				return false, err
			}
			all[fid] = got
			for _, e := range got {
				if e.Status == "running" {
					running++
				}
			}
		}
		return running == 0, fmt.Sprintf("%d running", running)
	})
	out := map[string]tally{}
	seen := map[string]bool{}
	for fid, execs := range all {
		var n tally
		for id, e := range execs {
			seen[id] = true
			switch e.Status {
			case "success":
				n.Succeeded++
			case "failed", "error":
				n.Failed++
			default:
				t.Errorf("execution %s ended %q", id, e.Status)
			}
			n.GBSeconds += resultGBSeconds(e)
		}
		out[fid] = n
	}
	for id := range p.accepted {
		assert.True(t, seen[id], "accepted execution %s is missing", id)
	}
	// Besides the accepted ones and the job's run, the only executions are
	// requests answered 503 because no engine could be reached: they are
	// recorded as error (pkg/execution's Start) and count as failed
	// everywhere.
	refused := 0
	for fid, execs := range all {
		for id, e := range execs {
			if p.accepted[id] || fid == p.ok && isJobRun(e, p.job) {
				continue
			}
			refused++
			assert.Equal(t, "error", e.Status, "execution %s was not accepted: %s", id, e.Result)
			assert.Contains(t, e.Result, "Try again later", "execution %s was not accepted", id)
		}
	}
	assert.LessOrEqual(t, refused, p.refused[http.StatusServiceUnavailable], "executions recorded for refused requests")
	assert.Equal(t, len(p.accepted)+1+refused, len(seen))
	return out
}

// isJobRun tells the job's run from the other executions of its function.
func isJobRun(e execView, job string) bool {
	return e.Description == "Created by Job "+job
}

// resultGBSeconds is the GB-seconds an execution's result reports (0 for an
// execution that no engine saw to its end).
func resultGBSeconds(e execView) float64 {
	var res struct {
		Timing struct {
			GBSeconds float64 `json:"gb_seconds"`
		} `json:"timing"`
	}
	_ = json.Unmarshal([]byte(e.Result), &res)
	return res.Timing.GBSeconds
}

// usageAPI reads GET /v1/usage for every project since from.
func usageAPI(t *testing.T, admin *testutil.Target, from time.Time) map[string]map[string]tally {
	q := url.Values{
		"all_projects": {"true"},
		"start":        {from.Truncate(time.Hour).Format(time.RFC3339)},
		"end":          {time.Now().UTC().Add(time.Hour).Format(time.RFC3339)},
	}
	r := setupDo(t, admin, http.MethodGet, "/v1/usage?"+q.Encode(), nil)
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	var body struct {
		Usages []struct {
			ProjectID string `json:"project_id"`
			Functions []struct {
				FunctionID string  `json:"function_id"`
				Succeeded  int64   `json:"succeeded"`
				Failed     int64   `json:"failed"`
				GBSeconds  float64 `json:"gb_seconds"`
			} `json:"function_usages"`
		} `json:"usages"`
	}
	r.Decode(t, &body)
	out := map[string]map[string]tally{}
	for _, u := range body.Usages {
		out[u.ProjectID] = map[string]tally{}
		for _, f := range u.Functions {
			out[u.ProjectID][f.FunctionID] = tally{Succeeded: f.Succeeded, Failed: f.Failed, GBSeconds: f.GBSeconds}
		}
	}
	return out
}

// assertPrometheus waits for the stack's Prometheus to hold the function's
// usage counters at the executions table's figures (it scrapes every few
// seconds); max, not sum, over API instances, which all serve the same.
func assertPrometheus(t *testing.T, st *testutil.Stack, project, fid string, want tally) {
	query := func(metric, extra string) string {
		return fmt.Sprintf(`max(qinling_usage_%s{project_id=%q,function_id=%q%s})`, metric, project, fid, extra)
	}
	var got tally
	testutil.WaitFor(t, "Prometheus to hold "+fid+"'s usage at "+want.String(), 2*time.Minute, 2*time.Second, func() (bool, any) {
		var vals [3]float64
		for i, q := range []string{
			query("executions_total", `,outcome="succeeded"`),
			query("executions_total", `,outcome="failed"`),
			query("memory_byte_seconds_total", ""),
		} {
			v, have, err := st.PrometheusQuery(q)
			if err != nil || !have {
				return false, fmt.Sprintf("%s: %v (has a sample: %v)", q, err, have)
			}
			vals[i] = v
		}
		got = tally{Succeeded: int64(vals[0]), Failed: int64(vals[1]), GBSeconds: vals[2] / (1 << 30)}
		return got.Succeeded == want.Succeeded && got.Failed == want.Failed, got
	})
	assertSame(t, "Prometheus", project, fid, want, got)
}

// assertSame compares another source's tally with the executions table's:
// counts exactly, GB-seconds to the rounding of the executions' results.
func assertSame(t *testing.T, source, project, fid string, want, got tally) {
	t.Helper()
	assert.Equal(t, want.Succeeded, got.Succeeded, "%s, project %s, function %s: %v, executions: %v", source, project, fid, got, want)
	assert.Equal(t, want.Failed, got.Failed, "%s, project %s, function %s: %v, executions: %v", source, project, fid, got, want)
	assert.InDelta(t, want.GBSeconds, got.GBSeconds, 1e-3+want.GBSeconds*1e-3, "%s, project %s, function %s: %v, executions: %v", source, project, fid, got, want)
}

// notifications drains the stack's notifications.info queue (where
// Ceilometer would read them) until the function.execution.end of the
// want executions of fids has arrived, or two minutes pass, and tallies them per
// project and function. A message delivered again (the same message_id) is
// counted once; two messages for one execution fail the test.
func notifications(t *testing.T, st *testutil.Stack, fids map[string]string, want int) map[string]map[string]tally {
	conn, err := amqp.Dial(st.Env["RABBIT_URL"])
	require.NoError(t, err, "RABBIT_URL in stack.env")
	defer conn.Close()
	ch, err := conn.Channel()
	require.NoError(t, err)
	byMessage := map[string]bool{}
	byExecution := map[string]string{} // execution id -> message_id
	out := map[string]map[string]tally{}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for len(byExecution) < want && ctx.Err() == nil {
		d, ok, err := ch.Get("notifications.info", true)
		require.NoError(t, err)
		if !ok {
			time.Sleep(time.Second)
			continue
		}
		var env struct {
			Message string `json:"oslo.message"`
		}
		require.NoError(t, json.Unmarshal(d.Body, &env), "%s", d.Body)
		var msg struct {
			MessageID string `json:"message_id"`
			EventType string `json:"event_type"`
			Payload   struct {
				ExecutionID string   `json:"execution_id"`
				ProjectID   string   `json:"project_id"`
				FunctionID  string   `json:"function_id"`
				Status      string   `json:"status"`
				GBSeconds   *float64 `json:"gb_seconds"`
			} `json:"payload"`
		}
		require.NoError(t, json.Unmarshal([]byte(env.Message), &msg), "%s", env.Message)
		pl := msg.Payload
		if msg.EventType != "function.execution.end" || fids[pl.FunctionID] == "" || byMessage[msg.MessageID] {
			continue
		}
		byMessage[msg.MessageID] = true
		if prev, dup := byExecution[pl.ExecutionID]; dup {
			t.Errorf("execution %s notified twice: messages %s and %s", pl.ExecutionID, prev, msg.MessageID)
			continue
		}
		byExecution[pl.ExecutionID] = msg.MessageID
		require.Equal(t, fids[pl.FunctionID], pl.ProjectID, "the notification names the function's project")
		if out[pl.ProjectID] == nil {
			out[pl.ProjectID] = map[string]tally{}
		}
		n := out[pl.ProjectID][pl.FunctionID]
		if pl.Status == "success" {
			n.Succeeded++
		} else {
			n.Failed++
		}
		if pl.GBSeconds != nil {
			n.GBSeconds += *pl.GBSeconds
		}
		out[pl.ProjectID][pl.FunctionID] = n
	}
	if len(byExecution) < want {
		t.Errorf("%d of %d executions' function.execution.end arrived within 2 minutes", len(byExecution), want)
	}
	return out
}
