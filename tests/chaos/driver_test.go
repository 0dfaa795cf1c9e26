//go:build chaos

package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/testutil"
)

// The reasons an execution may end in error under these faults
// (pkg/engine/recovery.go, docs/reliability.md).
var knownErrors = map[string]bool{
	"Function execution failed: the engine stopped during the execution.": true,
}

// echoPy returns the token it was given: an execution whose result is not
// its own token ran someone else's input.
const echoPy = "def main(token='', **kwargs):\n    return token\n"

// fault is one fault injected, for the figures.
type fault struct {
	at, back time.Time
	what     string
	err      error
}

// chaosRun is one run of the suite: what was submitted, what the API
// accepted, which faults were injected.
type chaosRun struct {
	name   string
	tgt    *testutil.Target
	fid    string
	logs   func() string
	start  time.Time
	faults []fault

	mu         sync.Mutex
	accepted   map[string]string // execution id -> token it was given
	attempts   int
	refused    map[string]int // why a submission was retried
	unexpected []string       // answers that are neither 201 nor 503 nor 429
	submitEnd  time.Time
}

func newRun(name string, tgt *testutil.Target, fid string, logs func() string) *chaosRun {
	return &chaosRun{
		name: name, tgt: tgt.WithTimeout(30 * time.Second), fid: fid, logs: logs, start: time.Now(),
		accepted: map[string]string{}, refused: map[string]int{},
	}
}

// addFault records a fault; do injects it and returns when it is undone.
func (r *chaosRun) addFault(what string, do func() error) error {
	f := fault{at: time.Now(), what: what}
	f.err = do()
	f.back = time.Now()
	r.mu.Lock()
	r.faults = append(r.faults, f)
	r.mu.Unlock()
	return f.err
}

// submit sends n executions through clients concurrent clients. A
// submission answered 503 or 429 or lost to a transport error was not
// accepted and is sent again (with a new token) until the API answers 201 or ctx ends.
func (r *chaosRun) submit(ctx context.Context, n, clients int) {
	next := make(chan int)
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				r.submitOne(ctx, i)
			}
		}()
	}
	for i := 0; i < n && ctx.Err() == nil; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	r.mu.Lock()
	r.submitEnd = time.Now()
	r.mu.Unlock()
}

func (r *chaosRun) submitOne(ctx context.Context, i int) {
	for attempt := 0; ctx.Err() == nil; attempt++ {
		token := fmt.Sprintf("%s-%d-%d", r.name, i, attempt)
		input, _ := json.Marshal(map[string]string{"token": token})
		resp, err := r.tgt.TryDo(http.MethodPost, "/v1/executions", map[string]any{
			"function_id": r.fid, "function_version": 0, "function_alias": nil, "sync": false, "input": string(input),
		})
		r.mu.Lock()
		r.attempts++
		switch {
		case err != nil:
			r.refused["transport error"]++
		case resp.Status == http.StatusCreated:
			var ex struct{ ID string }
			if json.Unmarshal(resp.Body, &ex) != nil || ex.ID == "" {
				r.unexpected = append(r.unexpected, "201 without an id: "+string(resp.Body))
			} else {
				r.accepted[ex.ID] = token
			}
			r.mu.Unlock()
			return
		case resp.Status == http.StatusServiceUnavailable:
			r.refused["503"]++
		case resp.Status == http.StatusTooManyRequests:
			// The function's bound on waiting executions (docs/scaling.md):
			// refused, not accepted; sent again after Retry-After.
			r.refused["429"]++
			wait := time.Second
			if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
				wait = time.Duration(s) * time.Second
			}
			r.mu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(wait):
			}
			continue
		default:
			r.unexpected = append(r.unexpected, fmt.Sprintf("%d: %s", resp.Status, resp.Body))
			r.mu.Unlock()
			return
		}
		r.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// execView is what the check reads of an execution.
type execView struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Result string `json:"result"`
	Input  string `json:"input"`
	// Description says who started it (a job, a webhook).
	Description string `json:"description"`
}

// listAll reads every execution of the run's function.
func (r *chaosRun) listAll() (map[string]execView, error) { return listExecutions(r.tgt, r.fid) }

// listExecutions reads every execution of a function that tgt sees,
// following next links.
func listExecutions(tgt *testutil.Target, fid string) (map[string]execView, error) {
	out := map[string]execView{}
	path := "/v1/executions?function_id=" + fid + "&limit=1000"
	for path != "" {
		resp, err := tgt.TryDo(http.MethodGet, path, nil)
		if err != nil {
			return nil, err
		}
		if resp.Status != http.StatusOK {
			return nil, fmt.Errorf("GET %s: %d %s", path, resp.Status, resp.Body)
		}
		var page struct {
			Executions []execView `json:"executions"`
			Next       string     `json:"next"`
		}
		if err := json.Unmarshal(resp.Body, &page); err != nil {
			return nil, fmt.Errorf("GET %s: %w", path, err)
		}
		for _, e := range page.Executions {
			out[e.ID] = e
		}
		path = ""
		if page.Next != "" {
			u, err := url.Parse(page.Next)
			if err != nil {
				return nil, err
			}
			path = u.RequestURI()
		}
	}
	return out, nil
}

// settle waits, up to timeout, until no accepted execution is running or
// missing, and returns the last listing.
func (r *chaosRun) settle(t *testing.T, timeout time.Duration) map[string]execView {
	t.Helper()
	var all map[string]execView
	testutil.WaitFor(t, "every accepted execution to end", timeout, 5*time.Second, func() (bool, any) {
		got, err := r.listAll()
		if err != nil {
			return false, err
		}
		all = got
		running, missing := 0, 0
		for id := range r.accepted {
			e, ok := got[id]
			switch {
			case !ok:
				missing++
			case e.Status == "running":
				running++
			}
		}
		return running == 0 && missing == 0, fmt.Sprintf("%d of %d accepted executions running, %d missing", running, len(r.accepted), missing)
	})
	return all
}

var uuidRe = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)

// starts counts the "execution started" log lines (pkg/engine/recovery.go,
// one per run handed to a worker) of each accepted execution.
func (r *chaosRun) starts() map[string]int {
	n := map[string]int{}
	for _, line := range strings.Split(r.logs(), "\n") {
		if !strings.Contains(line, "execution started") {
			continue
		}
		for _, id := range uuidRe.FindAllString(line, -1) {
			if _, ok := r.accepted[id]; ok {
				n[id]++
			}
		}
	}
	return n
}

// output is the result's output, or the raw result when it is not the
// {"output": ..., "duration": ...} object.
func output(e execView) string {
	var res struct {
		Output any `json:"output"`
	}
	if json.Unmarshal([]byte(e.Result), &res) != nil {
		return e.Result
	}
	if s, ok := res.Output.(string); ok {
		return s
	}
	b, _ := json.Marshal(res.Output)
	return string(b)
}

// check asserts the promise over the final listing and prints the figures.
func (r *chaosRun) check(t *testing.T, all map[string]execView) {
	t.Helper()
	end := time.Now()
	starts := r.starts()
	outcomes := map[string]int{}
	var missing, running, mixed, twice, unlogged, badError, silentFail []string
	for id, token := range r.accepted {
		e, ok := all[id]
		if !ok {
			missing = append(missing, id)
			continue
		}
		if starts[id] > 1 {
			twice = append(twice, fmt.Sprintf("%s started %d times", id, starts[id]))
		}
		out := output(e)
		switch e.Status {
		case "running":
			running = append(running, id)
		case "success":
			outcomes["success"]++
			if starts[id] == 0 {
				// The start check above would prove nothing.
				unlogged = append(unlogged, id)
			}
			if out != token {
				mixed = append(mixed, fmt.Sprintf("%s returned %q, was given %q", id, out, token))
			}
		case "error":
			outcomes["error: "+out]++
			if !knownErrors[out] {
				badError = append(badError, fmt.Sprintf("%s: %q", id, out))
			}
		case "failed":
			outcomes["failed: "+out]++
			if out == "" {
				silentFail = append(silentFail, id)
			}
		default:
			outcomes["status "+e.Status]++
		}
	}
	// Rows of submissions that were not answered 201 (the API died under
	// them): not promised anything, counted for the record.
	orphans := map[string]int{}
	for id, e := range all {
		if _, ok := r.accepted[id]; !ok {
			orphans[e.Status]++
		}
	}

	var b strings.Builder
	fmt.Fprintf(&b, "chaos %s: figures\n", r.name)
	fmt.Fprintf(&b, "| figure | value |\n|---|---|\n")
	fmt.Fprintf(&b, "| executions accepted (201) | %d |\n", len(r.accepted))
	fmt.Fprintf(&b, "| submissions sent | %d |\n", r.attempts)
	for _, k := range sortedKeys(r.refused) {
		fmt.Fprintf(&b, "| submissions retried after %s | %d |\n", k, r.refused[k])
	}
	fmt.Fprintf(&b, "| answers neither 201 nor 503 nor 429 | %d |\n", len(r.unexpected))
	fmt.Fprintf(&b, "| submitting took | %s |\n", r.submitEnd.Sub(r.start).Round(time.Second))
	fmt.Fprintf(&b, "| all ended after | %s |\n", end.Sub(r.start).Round(time.Second))
	for _, k := range sortedKeys(outcomes) {
		fmt.Fprintf(&b, "| %s | %d |\n", k, outcomes[k])
	}
	fmt.Fprintf(&b, "| starts logged (one per run handed to a worker) | %d |\n", sumValues(starts))
	fmt.Fprintf(&b, "| started twice / result not its own / missing / running | %d / %d / %d / %d |\n", len(twice), len(mixed), len(missing), len(running))
	for _, k := range sortedKeys(orphans) {
		fmt.Fprintf(&b, "| rows not answered 201, %s | %d |\n", k, orphans[k])
	}
	fmt.Fprintf(&b, "faults (%d):\n", len(r.faults))
	for _, f := range r.faults {
		status := "ok"
		if f.err != nil {
			status = f.err.Error()
		}
		fmt.Fprintf(&b, "  +%6.1fs  %-28s back after %5.1fs  %s\n", f.at.Sub(r.start).Seconds(), f.what, f.back.Sub(f.at).Seconds(), status)
	}
	t.Log(b.String())

	require.Empty(t, r.unexpected, "answers to POST /v1/executions that were neither 201 nor 503 nor 429")
	require.NotEmpty(t, r.faults, "no fault was injected")
	for _, f := range r.faults {
		require.NoError(t, f.err, "fault %s", f.what)
	}
	require.Zerof(t, len(missing), "accepted executions missing from the list: %d, the first: %v", len(missing), few(missing))
	require.Zerof(t, len(running), "accepted executions still running: %d, the first: %v", len(running), few(running))
	require.Zerof(t, len(twice), "executions started more than once: %d, the first: %v", len(twice), few(twice))
	require.Zerof(t, len(unlogged), "successful executions whose start the log does not show: %d, the first: %v", len(unlogged), few(unlogged))
	require.Zerof(t, len(mixed), "successful executions whose result is not their own token: %d, the first: %v", len(mixed), few(mixed))
	require.Zerof(t, len(badError), "executions in error without a known reason: %d, the first: %v", len(badError), few(badError))
	require.Zerof(t, len(silentFail), "failed executions without a reason: %d, the first: %v", len(silentFail), few(silentFail))
}

// few is the first ten of a list, for failure messages that stay readable.
func few(s []string) []string {
	sort.Strings(s)
	return s[:min(len(s), 10)]
}

func sumValues(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// setupFunction makes a python runtime (as admin) and the echo function (as
// the target's identity), waits until the runtime is available and runs the
// function once, so that its worker is up before the faults.
func setupFunction(t *testing.T, tgt *testutil.Target, image string) string {
	t.Helper()
	rtID := setupRuntime(t, tgt, image, "chaos-python3")
	fid := setupPackageFunction(t, tgt, rtID, "chaos-echo", "echo.main", 60, map[string]string{"echo.py": echoPy})
	r := setupDo(t, tgt, http.MethodPost, "/v1/executions", map[string]any{
		"function_id": fid, "function_version": 0, "sync": true, "input": `{"token": "warm-up"}`,
	})
	require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
	var ex execView
	r.Decode(t, &ex)
	require.Equal(t, "success", ex.Status, "warm-up run: %s", r.Body)
	require.Equal(t, "warm-up", output(ex))
	// Out of the way of the check, which counts every row of the function.
	r = setupDo(t, tgt, http.MethodDelete, "/v1/executions/"+ex.ID, nil)
	require.Equal(t, http.StatusNoContent, r.Status, "%s", r.Body)
	return fid
}

// setupRuntime makes a public python runtime as admin and waits until it
// is available.
func setupRuntime(t *testing.T, tgt *testutil.Target, image, name string) string {
	t.Helper()
	admin := tgt.As(testutil.Admin)
	r := setupDo(t, admin, http.MethodPost, "/v1/runtimes", map[string]any{
		"image": image, "name": name, "is_public": true, "trusted": true,
	})
	require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
	rtID := r.Object(t)["id"].(string)
	testutil.WaitFor(t, "the runtime to become available", 5*time.Minute, time.Second, func() (bool, any) {
		r := admin.Do(t, http.MethodGet, "/v1/runtimes/"+rtID, nil)
		return r.Object(t)["status"] == "available", string(r.Body)
	})
	return rtID
}

// setupPackageFunction makes a function of files as tgt's identity.
func setupPackageFunction(t *testing.T, tgt *testutil.Target, rtID, name, entry string, timeout int, files map[string]string) string {
	t.Helper()
	pkg := testutil.Zip(t, files)
	r := setupDo(t, tgt, http.MethodPost, "/v1/functions", &testutil.Form{
		Fields: map[string]string{
			"runtime_id": rtID, "name": name, "entry": entry, "timeout": strconv.Itoa(timeout),
			"code": fmt.Sprintf(`{"source": "package", "md5sum": "%s"}`, testutil.MD5(pkg)),
		},
		Files: map[string]testutil.File{"package": {Name: name + ".zip", Data: pkg}},
	})
	require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
	return r.Object(t)["id"].(string)
}

// setupDo sends one of the setup's requests until it is answered other than
// 503: on a loaded machine Keystone can be slower than qinling-api's
// validation timeout, and the API then answers 503 "Identity service
// unavailable" without acting, so sending it again makes nothing twice.
func setupDo(t *testing.T, tgt *testutil.Target, method, path string, body any) *testutil.Response {
	t.Helper()
	var r *testutil.Response
	testutil.WaitFor(t, method+" "+path+" answered other than 503", 5*time.Minute, 2*time.Second, func() (bool, any) {
		r = tgt.Do(t, method, path, body)
		return r.Status != http.StatusServiceUnavailable, string(r.Body)
	})
	return r
}
