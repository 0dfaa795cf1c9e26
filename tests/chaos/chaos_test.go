//go:build chaos

package chaos

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/testutil"
)

// Knobs (environment variables) and their defaults.
const (
	envExecutions = "QINLING_CHAOS_EXECUTIONS" // executions to submit
	envClients    = "QINLING_CHAOS_CLIENTS"    // concurrent submitting clients
	envKills      = "QINLING_CHAOS_KILLS"      // all-in-one: kill -9 + restart cycles
	envInterval   = "QINLING_CHAOS_INTERVAL"   // between kills (all-in-one) or engine SIGKILLs (devstack)
	envSettle     = "QINLING_CHAOS_SETTLE"     // how long the executions get to end afterwards
)

// TestChaosAllInOne: async executions submitted by concurrent clients
// while the all-in-one is killed with SIGKILL and restarted on the same
// state a few times; afterwards every accepted execution has ended, none
// started twice, and each success returned its own token.
func TestChaosAllInOne(t *testing.T) {
	if testutil.RealStack() {
		t.Skipf("%s=1: the all-in-one part runs without it", testutil.EnvRealStack)
	}
	n := testutil.EnvInt(t, envExecutions, 2000)
	clients := testutil.EnvInt(t, envClients, 8)
	kills := testutil.EnvInt(t, envKills, 4)
	interval := testutil.EnvDuration(t, envInterval, 10*time.Second)
	aio := testutil.StartAllInOne(t)
	tgt := testutil.ServerTarget(aio)
	fid := setupFunction(t, tgt, "python3")
	run := newRun("aio", tgt, fid, aio.Log)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	submitted := make(chan struct{})
	go func() { defer close(submitted); run.submit(ctx, n, clients) }()

	// The first kill lands during the submission, the others while the
	// backlog runs; each restart waits until the API answers.
	for i := range kills {
		wait := interval
		if i == 0 {
			wait = 2 * time.Second
		}
		time.Sleep(wait)
		err := run.addFault(fmt.Sprintf("kill -9 all-in-one #%d", i+1), func() error {
			aio.Kill()
			return aio.Restart()
		})
		require.NoError(t, err)
	}
	<-submitted
	require.NoError(t, ctx.Err(), "submitting %d executions did not end in time", n)
	run.check(t, run.settle(t, testutil.EnvDuration(t, envSettle, 10*time.Minute)))
}

// The daemons of the stack the devstack test restarts, in the order it does.
var stackServices = []string{"rabbitmq", "mariadb", "etcd", "qinling-api"}

// TestChaosDevstack: the same on the devstack stack (two engines or more):
// an engine is killed with SIGKILL every 10 s (QINLING_CHAOS_INTERVAL) and
// restarted, and RabbitMQ,
// MariaDB, etcd and the API are each restarted once, while the executions
// are submitted.
func TestChaosDevstack(t *testing.T) {
	if !testutil.RealStack() {
		t.Skipf("needs the devstack stack (%s=1 after devstack/stack.sh)", testutil.EnvRealStack)
	}
	st, err := testutil.LoadStack()
	require.NoError(t, err)
	require.GreaterOrEqual(t, st.Engines, 2, "needs QINLING_ENGINES >= 2 in devstack/settings")
	engines := restoreStackAfter(t, st)
	n := testutil.EnvInt(t, envExecutions, 10000)
	clients := testutil.EnvInt(t, envClients, 8)
	interval := testutil.EnvDuration(t, envInterval, 10*time.Second)
	tgt := testutil.StackTarget(st)
	fid := setupFunction(t, tgt, st.PythonImage())
	run := newRun("devstack", tgt, fid, st.Logs)

	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	submitted := make(chan struct{})
	go func() { defer close(submitted); run.submit(ctx, n, clients) }()

	// The one-off restarts, spaced out; devstack/restart.sh holds the
	// stack's lock, so they and the engine restarts take turns.
	onceDone := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(onceDone)
		for _, svc := range stackServices {
			time.Sleep(15 * time.Second)
			_ = run.addFault("restart "+svc, func() error { return st.Restart(svc) })
		}
	}()
	// An engine killed every 10 s, in turn, and restarted, until both the
	// submission and the one-off restarts are over.
	for i := 0; ; i++ {
		select {
		case <-time.After(interval):
		case <-ctx.Done():
		}
		victim := engines[i%len(engines)]
		_ = run.addFault("SIGKILL "+victim, func() error {
			if err := st.KillDaemon(victim); err != nil {
				return err
			}
			return st.Restart(victim)
		})
		if isClosed(submitted) && isClosed(onceDone) || ctx.Err() != nil {
			break
		}
	}
	wg.Wait()
	<-submitted
	require.NoError(t, ctx.Err(), "submitting %d executions did not end in time", n)
	run.check(t, run.settle(t, testutil.EnvDuration(t, envSettle, 30*time.Minute)))
}

// restoreStackAfter undoes every fault when the test ends, whatever
// happened: each service and engine of the stack runs again. It returns the
// engines' names.
func restoreStackAfter(t *testing.T, st *testutil.Stack) []string {
	engines := make([]string, st.Engines)
	for i := range engines {
		engines[i] = fmt.Sprintf("engine-%d", i+1)
	}
	t.Cleanup(func() {
		for _, name := range append(append([]string{}, stackServices...), engines...) {
			if _, err := st.DaemonPID(name); err != nil {
				if err := st.Restart(name); err != nil {
					t.Errorf("bringing %s back: %v", name, err)
				}
			}
		}
	})
	return engines
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
