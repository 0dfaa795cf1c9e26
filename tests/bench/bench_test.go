//go:build bench

// Package bench measures qinling-go on this machine and prints a table:
// sync execution latency and throughput through the API for each isolation
// mode, side by side with a baseline that starts a fresh interpreter per
// call (run in the same invocation, so ratios compare like with like), cold
// start, idle worker memory, and list latency for large projects. It asserts
// nothing about speed: targets are read off the table (docs/benchmarks.md).
//
//	./tox -e bench            (or: go test -tags bench -run TestBench -v ./tests/bench/)
package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/testutil"
)

// noop is the function every latency row runs.
const noop = "def main(**kwargs):\n    return None\n"

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

var (
	calls       = envInt("QINLING_BENCH_CALLS", 400)
	concurrency = envInt("QINLING_BENCH_CONCURRENCY", 4)
	nFunctions  = envInt("QINLING_BENCH_FUNCTIONS", 1000)
	nExecutions = envInt("QINLING_BENCH_EXECUTIONS", 10000)
	// baselineCalls sizes the fresh-interpreter row apart: a run comparing
	// two builds of the service needs many service calls but not as many
	// ~15 ms interpreters.
	baselineCalls = envInt("QINLING_BENCH_BASELINE_CALLS", calls)
)

type client struct {
	base  string
	token string // X-Auth-Token of every request, if set (the real stack)
	http  *http.Client
}

func (c *client) do(t testing.TB, method, path, ctype string, body []byte) (int, []byte) {
	req, err := http.NewRequest(method, c.base+path, bytes.NewReader(body))
	require.NoError(t, err)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if c.token != "" {
		req.Header.Set("X-Auth-Token", c.token)
	}
	resp, err := c.http.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, b
}

func (c *client) object(t testing.TB, method, path, body string, want int) map[string]any {
	status, b := c.do(t, method, path, "application/json", []byte(body))
	require.Equal(t, want, status, string(b))
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	return m
}

func (c *client) runtime(t testing.TB) string {
	id := c.object(t, "POST", "/v1/runtimes", `{"image": "python3"}`, 201)["id"].(string)
	require.Eventually(t, func() bool {
		return c.object(t, "GET", "/v1/runtimes/"+id, "", 200)["status"] == "available"
	}, 60*time.Second, 20*time.Millisecond)
	return id
}

func (c *client) function(t testing.TB, runtimeID string, pkg []byte) string {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	_ = mw.WriteField("runtime_id", runtimeID)
	_ = mw.WriteField("code", `{"source": "package"}`)
	_ = mw.WriteField("entry", "main.main")
	// The largest cpu and memory the API accepts: the benchmark measures
	// the service, not the per-function quota (docs/benchmarks.md).
	_ = mw.WriteField("cpu", "300")
	_ = mw.WriteField("memory_size", "134217728")
	w, _ := mw.CreateFormFile("package", "main.zip")
	_, _ = w.Write(pkg)
	require.NoError(t, mw.Close())
	status, b := c.do(t, "POST", "/v1/functions", mw.FormDataContentType(), buf.Bytes())
	require.Equal(t, 201, status, string(b))
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	return m["id"].(string)
}

// execute runs one sync execution, checks it succeeded and returns where
// its time went: the function's duration and every number of the result's
// timing (the worker's own phases prefixed "worker."), in milliseconds.
func (c *client) execute(t testing.TB, fid string) phases {
	m := c.object(t, "POST", "/v1/executions", `{"function_id": "`+fid+`", "sync": true}`, 201)
	if m["status"] != "success" {
		t.Fatalf("execution %v: %v", m["status"], m["result"])
	}
	var res struct {
		Duration float64        `json:"duration"`
		Timing   map[string]any `json:"timing"`
	}
	s, _ := m["result"].(string)
	require.NoError(t, json.Unmarshal([]byte(s), &res), "result %q", s)
	ph := phases{"duration_ms": res.Duration * 1000}
	for k, v := range res.Timing {
		switch v := v.(type) {
		case float64:
			ph[k] = v
		case map[string]any:
			for wk, wv := range v {
				if f, ok := wv.(float64); ok {
					ph[k+"."+wk] = f
				}
			}
		}
	}
	return ph
}

// phases are the named timings of one execution, in milliseconds.
type phases map[string]float64

// cpuSeconds is the CPU time used so far by pid and its live descendants
// (the server and its workers).
func cpuSeconds(pid int) float64 {
	total := 0.0
	for _, p := range append([]int{pid}, descendants(pid)...) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			continue
		}
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
		ut, _ := strconv.ParseFloat(f[11], 64)
		st, _ := strconv.ParseFloat(f[12], 64)
		cut, _ := strconv.ParseFloat(f[13], 64)
		cst, _ := strconv.ParseFloat(f[14], 64)
		total += (ut + st + cut + cst) / 100 // USER_HZ
	}
	return total
}

func descendants(pid int) []int {
	children := map[int][]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			continue
		}
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
		ppid, _ := strconv.Atoi(f[1])
		children[ppid] = append(children[ppid], p)
	}
	var out []int
	var walk func(int)
	walk = func(p int) {
		for _, c := range children[p] {
			out = append(out, c)
			walk(c)
		}
	}
	walk(pid)
	return out
}

// row is one line of the latency table.
type row struct {
	name       string
	p50, p99   time.Duration
	perSec     float64
	cpuPerCall time.Duration      // sequential calls
	cpuPerConc time.Duration      // calls over the clients
	phases     map[string]float64 // median of each phase over the latency calls, ms
	note       string
}

func percentile(d []time.Duration, p float64) time.Duration {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[min(len(d)-1, int(float64(len(d))*p))]
}

// medians returns the median of each phase over the calls that reported it.
func medians(all []phases) map[string]float64 {
	values := map[string][]float64{}
	for _, ph := range all {
		for k, v := range ph {
			values[k] = append(values[k], v)
		}
	}
	out := map[string]float64{}
	for k, v := range values {
		sort.Float64s(v)
		out[k] = v[len(v)/2]
	}
	return out
}

// measure runs fn calls times sequentially for latency, then calls times
// across concurrency goroutines for throughput; cpu reads the CPU seconds
// used by what is measured. fn returns the phases of its call, if any.
func measure(t *testing.T, name string, calls int, fn func() phases, cpu func() float64) row {
	for i := 0; i < 20; i++ {
		fn() // warm up: workers specialised, connections open
	}
	lat := make([]time.Duration, calls)
	var seen []phases
	c0 := cpu()
	for i := range lat {
		s := time.Now()
		ph := fn()
		lat[i] = time.Since(s)
		if ph != nil {
			seen = append(seen, ph)
		}
	}
	cpuPer := time.Duration((cpu() - c0) / float64(calls) * float64(time.Second))
	var wg sync.WaitGroup
	c1 := cpu()
	start := time.Now()
	per := calls / concurrency
	for g := 0; g < concurrency; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < per; i++ {
				fn()
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	cpuConc := time.Duration((cpu() - c1) / float64(per*concurrency) * float64(time.Second))
	return row{name: name, p50: percentile(lat, 0.5), p99: percentile(lat, 0.99),
		perSec: float64(per*concurrency) / took.Seconds(), cpuPerCall: cpuPer, cpuPerConc: cpuConc, phases: medians(seen)}
}

// baseline starts a fresh interpreter for every call, the way a design
// without warm workers pays for each execution.
func baseline(t *testing.T, dir string) row {
	script := "import sys; sys.path.insert(0, sys.argv[1]); import main; main.main()"
	run := func() phases {
		out, err := exec.Command("/usr/bin/python3", "-I", "-c", script, dir).CombinedOutput()
		if err != nil {
			t.Fatalf("baseline: %v: %s", err, out)
		}
		return nil
	}
	cpu := func() float64 {
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru)
		return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
	}
	r := measure(t, "fresh interpreter per call (baseline)", baselineCalls, run, cpu)
	r.note = "python3 -I, no API"
	return r
}

// memKB sums the resident and proportional set sizes of pids.
func memKB(pids []int) (rss, pss int) {
	for _, p := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", p))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			n, _ := strconv.Atoi(f[1])
			switch f[0] {
			case "Rss:":
				rss += n
			case "Pss:":
				pss += n
			}
		}
	}
	return rss, pss
}

// workerMemory describes the memory of the server's workers, from their
// worker.json records: a worker is its runtime process and everything it
// started (under strict isolation its zygotes and prepared processes).
func workerMemory(s *testutil.Server) []string {
	var out []string
	dirs, _ := filepath.Glob(filepath.Join(s.StateDir, "workers", "*", "worker.json"))
	type group struct{ workers, procs, rss, pss int }
	groups := map[string]*group{}
	var names []string
	for _, f := range dirs {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var rec struct {
			PID      int    `json:"pid"`
			Function string `json:"function"`
		}
		if json.Unmarshal(b, &rec) != nil || rec.PID <= 0 {
			continue
		}
		kind := "specialised"
		if rec.Function == "" {
			kind = "idle (pool)"
		}
		g := groups[kind]
		if g == nil {
			g = &group{}
			groups[kind] = g
			names = append(names, kind)
		}
		pids := append([]int{rec.PID}, descendants(rec.PID)...)
		rss, pss := memKB(pids)
		g.workers++
		g.procs += len(pids)
		g.rss += rss
		g.pss += pss
	}
	sort.Strings(names)
	for _, n := range names {
		g := groups[n]
		out = append(out, fmt.Sprintf("%d %s worker(s): %.1f processes, RSS %d KiB, PSS %d KiB per worker",
			g.workers, n, float64(g.procs)/float64(g.workers), g.rss/g.workers, g.pss/g.workers))
	}
	return out
}

func serverPID(t *testing.T, s *testutil.Server) int {
	b, err := os.ReadFile(filepath.Join(s.Dir, "pid"))
	if err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			return pid
		}
	}
	out, err := exec.Command("pgrep", "-f", "--", "--config-file "+s.ConfigPath).Output()
	require.NoError(t, err, "find the server's pid")
	pid, err := strconv.Atoi(strings.Fields(string(out))[0])
	require.NoError(t, err)
	return pid
}

func newClient(s *testutil.Server) *client {
	return &client{base: s.URL, http: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 60 * time.Second}}
}

// phaseOrder lists the engine's phases first, then the worker's.
func phaseOrder(rows []row) []string {
	engine := []string{"queue_ms", "acquire_ms", "run_ms", "duration_ms", "total_ms"}
	seen := map[string]bool{}
	for _, k := range engine {
		seen[k] = true
	}
	var worker []string
	for _, r := range rows {
		for k := range r.phases {
			if !seen[k] {
				seen[k] = true
				worker = append(worker, k)
			}
		}
	}
	sort.Strings(worker)
	return append(engine, worker...)
}

func TestBench(t *testing.T) {
	pkg := testutil.Zip(t, map[string]string{"main.py": noop})
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "main.py"), []byte(noop), 0o644))

	var rows []row
	var extra []string
	for _, mode := range selectedModes(t) {
		s := testutil.StartAllInOne(t, mode.options...)
		c := newClient(s)
		pid := serverPID(t, s)
		rt := c.runtime(t)

		coldStart := time.Now()
		fid := c.function(t, rt, pkg)
		c.execute(t, fid)
		cold := time.Since(coldStart)

		r := measure(t, "API, "+mode.name, calls, func() phases { return c.execute(t, fid) }, func() float64 { return cpuSeconds(pid) })
		r.note = fmt.Sprintf("cold start %s", cold.Round(time.Millisecond))
		rows = append(rows, r)
		for _, m := range workerMemory(s) {
			extra = append(extra, mode.name+": "+m)
		}
		if mode.lists && withLists {
			extra = append(extra, lists(t, c, rt, pkg, fid)...)
		}
		require.NoError(t, s.Stop())
	}
	if realStackSelected() {
		r, more, skipped := realStack(t, pkg)
		if skipped != "" {
			extra = append(extra, skipped)
		} else {
			rows = append(rows, r)
			extra = append(extra, more...)
		}
	}
	base := baseline(t, dir)
	rows = append(rows, base)

	var out bytes.Buffer
	fmt.Fprintf(&out, "\nqinling-go benchmark: %d sequential calls for latency, %d calls over %d clients for throughput\n\n", calls, calls/concurrency*concurrency, concurrency)
	tw := tabwriter.NewWriter(&out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "mode\tp50\tp99\tcalls/s\tCPU/call\tCPU/call (%d clients)\tp50 vs baseline\tcalls/s vs baseline\t\n", concurrency)
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.0f\t%s\t%s\t%.2fx\t%.2fx\t\n", r.name, r.p50.Round(10*time.Microsecond), r.p99.Round(10*time.Microsecond),
			r.perSec, r.cpuPerCall.Round(10*time.Microsecond), r.cpuPerConc.Round(10*time.Microsecond), float64(r.p50)/float64(base.p50), r.perSec/base.perSec)
	}
	tw.Flush()

	// Where the time goes: the median of each phase the result's timing
	// reports (engine phases, then the worker's own), over the latency calls.
	fmt.Fprintf(&out, "\nmedian per phase, ms (result timing; worker.* from the worker)\n\n")
	tw = tabwriter.NewWriter(&out, 0, 0, 2, ' ', tabwriter.AlignRight)
	order := phaseOrder(rows[:len(rows)-1])
	fmt.Fprint(tw, "mode\t")
	for _, k := range order {
		fmt.Fprintf(tw, "%s\t", strings.TrimSuffix(k, "_ms"))
	}
	fmt.Fprintln(tw)
	for _, r := range rows[:len(rows)-1] {
		fmt.Fprintf(tw, "%s\t", r.name)
		for _, k := range order {
			if v, ok := r.phases[k]; ok {
				fmt.Fprintf(tw, "%.3f\t", v)
			} else {
				fmt.Fprint(tw, "-\t")
			}
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
	fmt.Fprintln(&out)
	for _, r := range rows {
		if r.note != "" {
			fmt.Fprintf(&out, "%s: %s\n", r.name, r.note)
		}
	}
	for _, e := range extra {
		fmt.Fprintln(&out, e)
	}
	fmt.Print(out.String())
}

// lists fills one project with many functions and executions and times the
// list calls, with and without paging.
func lists(t *testing.T, c *client, rt string, pkg []byte, fid string) []string {
	var wg sync.WaitGroup
	work := make(chan int)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range work {
				c.function(t, rt, pkg)
			}
		}()
	}
	for i := 0; i < nFunctions; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	work = make(chan int)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range work {
				c.object(t, "POST", "/v1/executions", `{"function_id": "`+fid+`", "sync": false}`, 201)
			}
		}()
	}
	for i := 0; i < nExecutions; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	timeList := func(path string) (time.Duration, int) {
		best := time.Hour
		n := 0
		for i := 0; i < 5; i++ {
			s := time.Now()
			status, b := c.do(t, "GET", path, "", nil)
			require.Equal(t, 200, status)
			best = min(best, time.Since(s))
			n = len(b)
		}
		return best, n
	}
	var out []string
	for _, p := range []string{"/v1/functions", "/v1/functions?limit=100", "/v1/executions", "/v1/executions?limit=100", "/v1/executions?status=success&limit=100"} {
		d, n := timeList(p)
		out = append(out, fmt.Sprintf("GET %s: %s (%d KiB) with %d functions, %d+ executions", p, d.Round(100*time.Microsecond), n/1024, nFunctions, nExecutions))
	}
	return out
}
