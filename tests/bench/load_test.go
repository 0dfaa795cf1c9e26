//go:build bench

package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/testutil"
)

// The load rows (docs/scaling.md): a burst of asynchronous executions and
// the time it takes to drain, and a ramp of concurrent clients under each
// scaling policy. Named TestBench… so that ./tox -e bench runs them in the
// same invocation as the latency table.

// nap sleeps for the seconds it is given.
const nap = "import time\n\ndef main(seconds=1, **kwargs):\n    time.sleep(float(seconds))\n    return None\n"

var (
	burstN       = envInt("QINLING_BENCH_BURST", 900)
	burstSeconds = envInt("QINLING_BENCH_BURST_SECONDS", 5)
	rampStep     = time.Duration(envInt("QINLING_BENCH_RAMP_STEP_SECONDS", 5)) * time.Second
)

// rampClients are the concurrent clients of each ramp step; the ramp then
// drops to none.
var rampClients = []int{1, 2, 4, 8, 16, 32}

// startLoadServer starts an all-in-one whose functions may run a minute,
// with a short scale-down window so that a ramp's scale-down shows.
func startLoadServer(t *testing.T, policy string) (*testutil.Server, *client, []byte) {
	s := testutil.StartAllInOne(t,
		testutil.WithConfig("resource_limits", "default_timeout", "60"),
		testutil.WithConfig("engine", "scaling_policy", policy),
		testutil.WithConfig("engine", "scale_down_window", "10s"))
	return s, newClient(s), testutil.Zip(t, map[string]string{"main.py": nap})
}

// post sends one execution and reports whether it was taken (and, when
// sync, whether it ended success).
func (c *client) post(t testing.TB, fid string, sync bool, seconds float64) bool {
	body := fmt.Sprintf(`{"function_id": %q, "sync": %t, "input": "{\"seconds\": %g}"}`, fid, sync, seconds)
	status, b := c.do(t, http.MethodPost, "/v1/executions", "application/json", []byte(body))
	if status != http.StatusCreated {
		return false
	}
	var m map[string]any
	return json.Unmarshal(b, &m) == nil && (!sync || m["status"] == "success")
}

// count returns the number of fid's executions with status.
func (c *client) count(t testing.TB, fid, status string) int {
	m := c.object(t, http.MethodGet, "/v1/executions?limit=5000&function_id="+fid+"&status="+status, "", 200)
	list, _ := m["executions"].([]any)
	return len(list)
}

// workers returns the number of fid's workers.
func (c *client) workers(t testing.TB, fid string) int {
	m := c.object(t, http.MethodGet, "/v1/functions/"+fid+"/workers", "", 200)
	list, _ := m["workers"].([]any)
	return len(list)
}

// TestBenchBurst: burstN asynchronous executions of a burstSeconds function
// at default limits; every one must succeed, and the row says how long the
// drain took beside the least it could (all slots busy all the time).
func TestBenchBurst(t *testing.T) {
	s, c, pkg := startLoadServer(t, "queue")
	fid := c.function(t, c.runtime(t), pkg)
	start := time.Now()
	var refused atomic.Int64
	var wg sync.WaitGroup
	next := atomic.Int64{}
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(burstN) {
				if !c.post(t, fid, false, float64(burstSeconds)) {
					refused.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	submitted := time.Since(start)
	most := 0
	require.Eventually(t, func() bool {
		most = max(most, c.workers(t, fid))
		return c.count(t, fid, "running") == 0
	}, 30*time.Minute, time.Second)
	drain := time.Since(start)
	ok := c.count(t, fid, "success")
	require.NoError(t, s.Stop())
	slots := 10 * 3 // max_workers_per_function × function_concurrency, the defaults
	ideal := time.Duration(float64(burstN*burstSeconds)/float64(slots)) * time.Second
	fmt.Printf("\nburst: %d async × %d s, default limits: submitted in %s, drained in %s (all slots busy throughout: %s); "+
		"%d success, %d not success, %d refused; most workers %d\n",
		burstN, burstSeconds, submitted.Round(time.Millisecond), drain.Round(time.Second), ideal, ok, burstN-ok-int(refused.Load()), refused.Load(), most)
}

// rampRow is one function's ramp under one policy.
type rampRow struct {
	policy, function string
	lat              []time.Duration
	failed           int
	most             int           // workers at the peak
	need             int           // workers that run the peak at once
	down             time.Duration // from the end of the ramp to one worker; 0 if not within the wait
}

// TestBenchRamp: 1 → 32 sync clients of a 100 ms and a 2 s function at
// once, rampStep per step, then none, under the queue policy and upstream's
// +1 rule: latency, failures, workers at the peak against those needed,
// and the time back down to one worker.
func TestBenchRamp(t *testing.T) {
	var rows []rampRow
	for _, policy := range []string{"queue", "upstream"} {
		s, c, pkg := startLoadServer(t, policy)
		rt := c.runtime(t)
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, fn := range []struct {
			name    string
			seconds float64
		}{{"100 ms", 0.1}, {"2 s", 2}} {
			fid := c.function(t, rt, pkg)
			require.True(t, c.post(t, fid, true, 0), "first call")
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := ramp(t, c, fid, fn.seconds)
				r.policy, r.function = policy, fn.name
				mu.Lock()
				rows = append(rows, r)
				mu.Unlock()
			}()
		}
		wg.Wait()
		require.NoError(t, s.Stop())
	}
	var out bytes.Buffer
	fmt.Fprintf(&out, "\nramp: sync clients %v, %s each, then none (scale_down_window 10s)\n\n", rampClients, rampStep)
	tw := tabwriter.NewWriter(&out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "policy\tfunction\tcalls\tfailed\tp50\tp99\tpeak workers\tneeded\tback to 1 worker\t")
	for _, r := range rows {
		down := "not within 40s"
		if r.down > 0 {
			down = r.down.Round(time.Second).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\t%d\t%d\t%s\t\n", r.policy, r.function, len(r.lat), r.failed,
			percentile(r.lat, 0.5).Round(time.Millisecond), percentile(r.lat, 0.99).Round(time.Millisecond), r.most, r.need, down)
	}
	tw.Flush()
	fmt.Print(out.String())
}

// ramp runs the client steps against fid and watches its workers.
func ramp(t *testing.T, c *client, fid string, seconds float64) rampRow {
	var (
		mu     sync.Mutex
		row    rampRow
		most   atomic.Int64
		active atomic.Int64 // clients allowed to run now
		stop   = make(chan struct{})
		wg     sync.WaitGroup
	)
	watch := make(chan struct{})
	go func() {
		defer close(watch)
		for {
			select {
			case <-stop:
				return
			case <-time.After(250 * time.Millisecond):
				if n := int64(c.workers(t, fid)); n > most.Load() {
					most.Store(n)
				}
			}
		}
	}()
	peak := rampClients[len(rampClients)-1]
	for i := range peak {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if int64(i) >= active.Load() {
					time.Sleep(20 * time.Millisecond)
					continue
				}
				s := time.Now()
				ok := c.post(t, fid, true, seconds)
				d := time.Since(s)
				mu.Lock()
				row.lat = append(row.lat, d)
				if !ok {
					row.failed++
				}
				mu.Unlock()
			}
		}()
	}
	for _, n := range rampClients {
		active.Store(int64(n))
		time.Sleep(rampStep)
	}
	active.Store(0)
	close(stop)
	wg.Wait()
	<-watch
	end := time.Now()
	for time.Since(end) < 40*time.Second {
		if c.workers(t, fid) <= 1 {
			row.down = time.Since(end)
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	row.most = int(most.Load())
	row.need = min(10, (peak+2)/3)
	return row
}
