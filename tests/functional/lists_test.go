//go:build functional

package functional

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/qinling-go/qinling/pkg/testutil"
)

// listFilters pairs each paged list with one filter it accepts.
var listFilters = [][2]string{
	{"/v1/runtimes", ""}, {"/v1/functions", "runtime_id"}, {"/v1/executions", "function_id"},
	{"/v1/jobs", "function_id"}, {"/v1/webhooks", "function_id"}, {"/v1/aliases", "function_id"},
}

// TestListFilterErrors: a filter with 40,000 values (upstream, and this
// server before, answered 500: too many SQL variables), an unknown filter
// (ignored before) and a malformed one are 400s naming the field, on every
// list.
func TestListFilterErrors(t *testing.T) {
	t.Parallel()
	many := "in:" + strings.TrimSuffix(strings.Repeat("running,", 40000), ",")
	for _, pf := range listFilters {
		path, filter := pf[0], pf[1]
		cases := []errCase{
			{name: path + " unknown filter", method: http.MethodGet, path: path + "?foo=bar", status: []int{400}, has: []string{`"foo"`}},
		}
		if filter != "" {
			cases = append(cases,
				errCase{name: path + " 40,000 values", method: http.MethodGet, path: path + "?" + filter + "=" + url.QueryEscape(many),
					status: []int{400}, fault: "Too many values for filter " + filter + ": 40000, at most 1000 are accepted."},
				errCase{name: path + " repeated filter", method: http.MethodGet, path: path + "?" + filter + "=a&" + filter + "=b",
					status: []int{400}, has: []string{"Argument " + filter + " is given 2 times"}},
			)
		}
		runCases(t, cases)
	}
	runCases(t, []errCase{
		{name: "integer filter not an integer", method: http.MethodGet, path: "/v1/executions?function_version=latest",
			status: []int{400}, fault: `Invalid value for filter function_version: "latest" is not an integer.`},
		{name: "boolean filter with has:", method: http.MethodGet, path: "/v1/executions?sync=has:tr",
			status: []int{400}, fault: "Invalid filter sync: has: does not apply to a boolean."},
	})
}

// TestListPages follows next links through the executions of one function,
// with the filters the CLI and tempest send.
func TestListPages(t *testing.T) {
	t.Parallel()
	fid := newFunction(t, "pages", "hello.main", map[string]string{"hello.py": helloPy})
	var want []string
	for i := range 3 {
		want = append(want, succeeds(t, srv, fid, fmt.Sprintf(`{"name": "p%d"}`, i), fmt.Sprintf("Hello, p%d", i))["id"].(string))
	}
	var got []string
	path := "/v1/executions?function_id=" + fid + "&status=in:success,failed&limit=2"
	for pages := 1; ; pages++ {
		r := call(t, srv, http.MethodGet, path, nil)
		expect(t, r, http.StatusOK)
		var page struct {
			Executions []map[string]any `json:"executions"`
			Next       string           `json:"next"`
		}
		r.Decode(t, &page)
		for _, e := range page.Executions {
			requireShape(t, e, executionFields)
			got = append(got, e["id"].(string))
		}
		if page.Next == "" {
			require.Equal(t, 2, pages)
			break
		}
		u, err := url.Parse(page.Next)
		require.NoError(t, err)
		path = u.RequestURI()
	}
	require.Equal(t, want, got)
}

// TestListMemoryBounded: 150 executions with 1 MB results, listed by three
// clients at once, took the API from 136 to 1,562 MiB when lists were built
// in memory. Streamed (docs/api.md, "Lists"), the server's peak RSS during
// the lists must stay within listMemoryBound of its RSS before them. The
// server is its own, so the tests beside it (it is parallel) change
// nothing of what it measures.
func TestListMemoryBounded(t *testing.T) {
	testutil.SkipIfReal(t, srv, "reads the server's memory from /proc")
	t.Parallel()
	priv, rt := privatePython(t)
	const resultSize, executions, clients = 1000 * 1000, 150, 3
	fn := createFunction(t, priv, packageForm(rt, "big", "big.main", testutil.Zip(t, map[string]string{
		"big.py": fmt.Sprintf("def main(**kwargs):\n    return 'x' * %d\n", resultSize),
	}), "memory_size", "134217728"))
	fid := fn["id"].(string)
	var g errgroup.Group
	g.SetLimit(3)
	for range executions {
		g.Go(func() error {
			r, err := priv.TryDo(http.MethodPost, "/v1/executions", map[string]any{"function_id": fid, "sync": true})
			if err == nil && (r.Status != http.StatusCreated || !bytes.Contains(r.Body, []byte(`"status":"success"`))) {
				err = fmt.Errorf("%s", r)
			}
			return err
		})
	}
	require.NoError(t, g.Wait())

	pid := serverPID(t, priv.Server)
	idle := procStatusKiB(t, pid, "VmRSS")
	// Reset the peak to the current RSS (proc(5), clear_refs), so VmHWM is
	// the peak of the lists alone.
	require.NoError(t, os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0))
	var wg sync.WaitGroup
	sizes := make([]int64, clients)
	errs := make([]error, clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sizes[i], errs[i] = readList(priv.URL + "/v1/executions")
		}()
	}
	wg.Wait()
	for i := range clients {
		require.NoError(t, errs[i])
		require.Greater(t, sizes[i], int64(executions*resultSize), "every execution is listed with its result")
	}
	peak := procStatusKiB(t, pid, "VmHWM")
	t.Logf("qinling-api RSS: %d MiB before the lists, peak %d MiB during %d concurrent lists of %d MB each (+%d MiB)",
		idle>>10, peak>>10, clients, sizes[0]/1000/1000, (peak-idle)>>10)
	assert.Less(t, peak-idle, int64(listMemoryBound>>10), "the lists grew the server by more than %d MiB", listMemoryBound>>20)
}

// listMemoryBound is generous: streamed lists measured +24 MiB here (121 to
// 146 MiB); the same test against the tree before streaming measured +1,600
// MiB (104 to 1,705 MiB), the whole answer once per client.
const listMemoryBound = 128 << 20

// readList GETs a list, reading it as it arrives without keeping it, and
// returns its size; the answer must be a complete 200.
func readList(u string) (int64, error) {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("X-Auth-Token", "notused")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	tail := &tailWriter{}
	n, err := io.Copy(tail, resp.Body)
	switch {
	case err != nil:
		return n, err
	case resp.StatusCode != http.StatusOK:
		return n, fmt.Errorf("GET %s: %d %s", u, resp.StatusCode, tail.b)
	case !bytes.HasSuffix(tail.b, []byte("]}")):
		return n, fmt.Errorf("GET %s: the answer does not end a list: …%s", u, tail.b)
	}
	return n, nil
}

// tailWriter keeps the last bytes written to it.
type tailWriter struct{ b []byte }

func (w *tailWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	if len(w.b) > 64 {
		w.b = append([]byte(nil), w.b[len(w.b)-64:]...)
	}
	return len(p), nil
}

// serverPID finds the all-in-one process started with s's config file.
func serverPID(t *testing.T, s *testutil.Server) int {
	t.Helper()
	cmdlines, err := filepath.Glob("/proc/[0-9]*/cmdline")
	require.NoError(t, err)
	for _, p := range cmdlines {
		b, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(b, []byte("--all-in-one\x00")) || !bytes.Contains(b, []byte(s.ConfigPath+"\x00")) {
			continue
		}
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		require.NoError(t, err)
		return pid
	}
	t.Fatalf("no process runs with %s", s.ConfigPath)
	return 0
}

// procStatusKiB reads a "<field>: N kB" line of /proc/<pid>/status.
func procStatusKiB(t *testing.T, pid int, field string) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			require.NoError(t, err)
			return n
		}
	}
	t.Fatalf("/proc/%d/status has no %s", pid, field)
	return 0
}
