//go:build bench

package bench

import (
	"database/sql"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/config"
	"github.com/qinling-go/qinling/pkg/testutil"
)

// realStackName is the real-stack row's name in QINLING_BENCH_MODES.
const realStackName = "real stack"

// realStackSelected reports whether QINLING_BENCH_MODES leaves the
// real-stack row in (it does when unset).
func realStackSelected() bool {
	names := os.Getenv("QINLING_BENCH_MODES")
	if names == "" {
		return true
	}
	for _, n := range strings.Split(names, ",") {
		if strings.TrimSpace(n) == realStackName {
			return true
		}
	}
	return false
}

// stackDaemons are the stack's processes whose CPU the real-stack row
// reports apart (devstack's PID files; each with its descendants: the
// engines' workers, Keystone's uwsgi workers, RabbitMQ's Erlang VM).
func stackDaemons(st *testutil.Stack) []string {
	names := []string{"qinling-api"}
	for i := 1; i <= st.Engines; i++ {
		names = append(names, fmt.Sprintf("engine-%d", i))
	}
	return append(names, "mariadb", "rabbitmq", "keystone", "etcd")
}

// daemonCPU returns the CPU seconds used so far by each daemon that runs.
func daemonCPU(st *testutil.Stack, names []string) map[string]float64 {
	out := map[string]float64{}
	for _, n := range names {
		if pid, err := st.DaemonPID(n); err == nil {
			out[n] = cpuSeconds(pid)
		}
	}
	return out
}

// realStack measures the no-op function through the devstack stack's API
// (RabbitMQ, MariaDB, the engines, Keystone): as the demo user with one
// token, issued once and sent with every request as a real client reuses
// its token. It returns the row and lines for the notes, or, without a
// stack (QINLING_REAL_STACK unset), why the row was skipped.
func realStack(t *testing.T, pkg []byte) (r row, extra []string, skipped string) {
	if !testutil.RealStack() {
		return row{}, nil, fmt.Sprintf("%s: skipped: set %s=1 (and %s if not %s) after devstack/stack.sh to run it",
			realStackName, testutil.EnvRealStack, testutil.EnvStackDir, testutil.DefaultStackDir)
	}
	st, err := testutil.LoadStack()
	require.NoError(t, err)
	admin, err := st.Token(testutil.Admin)
	require.NoError(t, err)
	demo, err := st.Token(testutil.Demo)
	require.NoError(t, err)

	transport := &http.Transport{MaxIdleConnsPerHost: 64}
	ac := &client{base: st.URL, token: admin.ID, http: &http.Client{Transport: transport, Timeout: 60 * time.Second}}
	c := &client{base: st.URL, token: demo.ID, http: &http.Client{Transport: transport, Timeout: 60 * time.Second}}
	for _, cl := range []*client{ac, c} {
		cl.validated(t)
	}
	rt := ac.runtime(t)
	t.Cleanup(func() { ac.do(t, http.MethodDelete, "/v1/runtimes/"+rt, "", nil) })
	coldStart := time.Now()
	fid := c.function(t, rt, pkg)
	t.Cleanup(func() { c.do(t, http.MethodDelete, "/v1/functions/"+fid, "", nil) })
	c.execute(t, fid)
	cold := time.Since(coldStart)

	names := stackDaemons(st)
	qinling := names[:1+st.Engines]
	cpu := func() float64 {
		total := 0.0
		for _, v := range daemonCPU(st, qinling) {
			total += v
		}
		return total
	}
	stmtsBefore := dbStatements(t, st)
	before := daemonCPU(st, names)
	r = measure(t, "API, "+realStackName, calls, func() phases { return c.execute(t, fid) }, cpu)
	after := daemonCPU(st, names)
	stmtsAfter := dbStatements(t, st)
	r.note = fmt.Sprintf("cold start %s; %d engines, RabbitMQ, MariaDB, Keystone (one token for every call); CPU columns: qinling-api and the engines with their workers",
		cold.Round(time.Millisecond), st.Engines)

	// Where the stack's CPU went, per execution, over the 20 warm-up calls
	// and both measured phases (measure's calls).
	n := float64(20 + calls + calls/concurrency*concurrency)
	var parts []string
	sort.SliceStable(names, func(i, j int) bool { return after[names[i]]-before[names[i]] > after[names[j]]-before[names[j]] })
	for _, name := range names {
		if _, ok := after[name]; ok {
			parts = append(parts, fmt.Sprintf("%s %.2fms", name, (after[name]-before[name])/n*1000))
		}
	}
	extra = append(extra, realStackName+": CPU per execution by daemon: "+strings.Join(parts, ", "))
	parts = parts[:0]
	for _, name := range statementCounters {
		parts = append(parts, fmt.Sprintf("%s %.2f", strings.TrimPrefix(name, "Com_"), float64(stmtsAfter[name]-stmtsBefore[name])/n))
	}
	extra = append(extra, realStackName+": MariaDB statements per execution (the whole server's): "+strings.Join(parts, ", "))
	return r, extra, ""
}

// statementCounters are MariaDB's counters of the statements an execution
// costs (SHOW GLOBAL STATUS): figures that, unlike times, do not depend on
// the machine's load.
// Com_insert_select counts the usage and outbox rows of the engine's end,
// written as INSERT … SELECT on MySQL (pkg/db/usage.go, finishPipelined).
var statementCounters = []string{"Com_select", "Com_insert", "Com_insert_select", "Com_update", "Com_delete", "Com_begin", "Com_commit", "Com_rollback", "Questions"}

// dbStatements reads statementCounters from the stack's MariaDB.
func dbStatements(t *testing.T, st *testutil.Stack) map[string]int64 {
	driver, dsn, err := config.ParseDatabaseURL(st.Env["DATABASE_URL"])
	require.NoError(t, err)
	conn, err := sql.Open(driver, dsn)
	require.NoError(t, err)
	defer conn.Close()
	rows, err := conn.Query("SHOW GLOBAL STATUS WHERE Variable_name IN ('" + strings.Join(statementCounters, "','") + "')")
	require.NoError(t, err)
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var name string
		var v int64
		require.NoError(t, rows.Scan(&name, &v))
		out[name] = v
	}
	require.NoError(t, rows.Err())
	return out
}

// validated sends one request with c's token until qinling-api has
// validated it: on a loaded machine Keystone may answer after the API's
// timeout, and the API a 503 that a client retries (its cache keeps
// Keystone's late answer, pkg/keystone).
func (c *client) validated(t *testing.T) {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		status, b := c.do(t, http.MethodGet, "/v1/functions?limit=1", "", nil)
		if status != http.StatusServiceUnavailable || time.Now().After(deadline) {
			require.Equal(t, http.StatusOK, status, string(b))
			return
		}
		time.Sleep(time.Second)
	}
}
