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
)

type client struct {
	base string
	http *http.Client
}

func (c *client) do(t testing.TB, method, path, ctype string, body []byte) (int, []byte) {
	req, err := http.NewRequest(method, c.base+path, bytes.NewReader(body))
	require.NoError(t, err)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
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
	w, _ := mw.CreateFormFile("package", "main.zip")
	_, _ = w.Write(pkg)
	require.NoError(t, mw.Close())
	status, b := c.do(t, "POST", "/v1/functions", mw.FormDataContentType(), buf.Bytes())
	require.Equal(t, 201, status, string(b))
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	return m["id"].(string)
}

// execute runs one sync execution and checks it succeeded.
func (c *client) execute(t testing.TB, fid string) {
	m := c.object(t, "POST", "/v1/executions", `{"function_id": "`+fid+`", "sync": true}`, 201)
	if m["status"] != "success" {
		t.Fatalf("execution %v: %v", m["status"], m["result"])
	}
}

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
	cpuPerCall time.Duration
	note       string
}

func percentile(d []time.Duration, p float64) time.Duration {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[min(len(d)-1, int(float64(len(d))*p))]
}

// measure runs fn calls times sequentially for latency, then calls times
// across concurrency goroutines for throughput; cpu reads the CPU seconds
// used by what is measured.
func measure(t *testing.T, name string, fn func(), cpu func() float64) row {
	for i := 0; i < 20; i++ {
		fn() // warm up: workers specialised, connections open
	}
	lat := make([]time.Duration, calls)
	c0 := cpu()
	for i := range lat {
		s := time.Now()
		fn()
		lat[i] = time.Since(s)
	}
	cpuPer := time.Duration((cpu() - c0) / float64(calls) * float64(time.Second))
	var wg sync.WaitGroup
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
	return row{name: name, p50: percentile(lat, 0.5), p99: percentile(lat, 0.99),
		perSec: float64(per*concurrency) / time.Since(start).Seconds(), cpuPerCall: cpuPer}
}

// baseline starts a fresh interpreter for every call, the way a design
// without warm workers pays for each execution.
func baseline(t *testing.T, dir string) row {
	script := "import sys; sys.path.insert(0, sys.argv[1]); import main; main.main()"
	run := func() {
		out, err := exec.Command("/usr/bin/python3", "-I", "-c", script, dir).CombinedOutput()
		if err != nil {
			t.Fatalf("baseline: %v: %s", err, out)
		}
	}
	var ru0, ru1 syscall.Rusage
	cpu := func() float64 {
		_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru1)
		return float64(ru1.Utime.Nano()+ru1.Stime.Nano()) / 1e9
	}
	_ = ru0
	r := measure(t, "fresh interpreter per call (baseline)", run, cpu)
	r.note = "python3 -I, no API"
	return r
}

// rssKB sums the resident and proportional set sizes of pids.
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

func TestBench(t *testing.T) {
	pkg := testutil.Zip(t, map[string]string{"main.py": noop})
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "main.py"), []byte(noop), 0o644))

	var rows []row
	var extra []string
	for _, mode := range isolationModes() {
		s := testutil.StartAllInOne(t, mode.options...)
		c := newClient(s)
		pid := serverPID(t, s)
		rt := c.runtime(t)

		coldStart := time.Now()
		fid := c.function(t, rt, pkg)
		c.execute(t, fid)
		cold := time.Since(coldStart)

		r := measure(t, "API, "+mode.name, func() { c.execute(t, fid) }, func() float64 { return cpuSeconds(pid) })
		r.note = fmt.Sprintf("cold start %s", cold.Round(time.Millisecond))
		rows = append(rows, r)

		var workers []int
		for _, p := range descendants(pid) {
			if cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p)); bytes.Contains(cmd, []byte("python3")) {
				workers = append(workers, p)
			}
		}
		rss, pss := memKB(workers)
		if len(workers) > 0 {
			extra = append(extra, fmt.Sprintf("%s: %d worker processes, RSS %d KiB each, PSS %d KiB each",
				mode.name, len(workers), rss/len(workers), pss/len(workers)))
		}
		if mode.lists {
			extra = append(extra, lists(t, c, rt, pkg, fid)...)
		}
		require.NoError(t, s.Stop())
	}
	base := baseline(t, dir)
	rows = append(rows, base)

	var out bytes.Buffer
	fmt.Fprintf(&out, "\nqinling-go benchmark: %d sequential calls for latency, %d calls over %d clients for throughput\n\n", calls, calls/concurrency*concurrency, concurrency)
	tw := tabwriter.NewWriter(&out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "mode\tp50\tp99\tcalls/s\tCPU/call\tp50 vs baseline\tcalls/s vs baseline\t")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.0f\t%s\t%.2fx\t%.2fx\t\n", r.name, r.p50.Round(10*time.Microsecond), r.p99.Round(10*time.Microsecond),
			r.perSec, r.cpuPerCall.Round(10*time.Microsecond), float64(r.p50)/float64(base.p50), r.perSec/base.perSec)
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
