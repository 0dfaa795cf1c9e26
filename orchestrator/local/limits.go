package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/qinling-go/qinling/orchestrator"
	"github.com/qinling-go/qinling/orchestrator/local/cgroup"
	"github.com/qinling-go/qinling/orchestrator/local/preload"
	"github.com/qinling-go/qinling/orchestrator/workerclient"
)

// Run executes inv on w. A worker that does not answer within inv.Timeout
// plus RunGrace is killed, and the execution reported as timed out; one whose
// connection broke is killed and ErrWorkerLost returned, unless its cgroup
// says it was killed for its memory limit: that is the function's failure,
// reported as such. A failure after the function hit its pids or memory
// limit gets upstream's resource message as its output and the limit in
// its log, and the worker is replaced. The function's cpu and memory_size
// in inv are applied to the worker's cgroup first when they changed since
// it was specialised.
func (o *Orchestrator) Run(ctx context.Context, w orchestrator.Worker, inv orchestrator.Invocation) (orchestrator.Result, error) {
	o.mu.Lock()
	wk := o.workers[w.Name]
	if wk == nil || wk.state != stateSpecialised || wk.killed || wk.exited || wk.draining {
		o.mu.Unlock()
		return orchestrator.Result{}, fmt.Errorf("run %s on worker %s: %w", inv.ExecutionID, w.Name, orchestrator.ErrWorkerNotFound)
	}
	// The function's limits may have changed since it was specialised.
	change := wk.limitChangesLocked(inv.CPU, inv.MemorySize)
	preloads, key, rt := wk.preloads(), preload.Key{Function: wk.fnID, Version: wk.version}, wk.runtimeID
	o.mu.Unlock()
	change.apply(wk)
	if preloads {
		o.pre.record(rt, key)
	}

	meter := startMeter(wk.cg)
	start := time.Now()
	res, err := o.client.Execute(ctx, wk.addr, inv, o.cfg.RunGrace)
	meter.stop(&res)
	switch {
	case err == nil:
		if !res.Success {
			if !wk.strict && wk.kind != KindNodeJS && string(res.Output) == timeoutOutput {
				// The Python runtime cannot stop the timed-out thread: it drains
				// and exits. Sending it another execution would race its exit.
				// (The Node.js runtime terminates the thread and carries on.)
				o.mu.Lock()
				wk.draining = true
				o.mu.Unlock()
			}
			res = o.explainFailure(wk, res)
		}
		return res, nil
	case errors.Is(err, workerclient.ErrWorkerStuck):
		o.log.Warn("killing stuck worker", "worker", wk.name, "execution_id", inv.ExecutionID, "timeout", inv.Timeout, "grace", o.cfg.RunGrace)
		o.kill(wk)
		if detail, hit := o.limitAfterDeath(wk); hit {
			// Stuck because of a limit (a fork bomb, or the kernel busy
			// OOM-killing its children): say so rather than "timeout".
			res.Output, res.Logs = jsonString(msgResources), res.Logs+detail+"\n"
		}
		return res, nil
	case errors.Is(err, orchestrator.ErrWorkerLost):
		// Whatever it still is, it cannot be trusted with another execution.
		o.kill(wk)
		if res, ok := o.lostToLimit(wk, start); ok {
			o.log.Info("worker killed for its memory limit", "worker", wk.name, "function_id", wk.fnID, "execution_id", inv.ExecutionID)
			return res, nil
		}
	}
	return res, fmt.Errorf("run on worker %s: %w", wk.name, err)
}

// usageMeter reads what an execution used from its worker's cgroup: the CPU
// time between its start and its end, the peak memory since its start.
// Executions running at once on one worker (function_concurrency) share
// the worker's figures: each is charged all of them.
type usageMeter struct {
	cg    *cgroup.Group
	cpu   time.Duration
	known bool
}

func startMeter(cg *cgroup.Group) usageMeter {
	if cg == nil {
		return usageMeter{}
	}
	cg.ResetPeakMemory()
	cpu, known := cg.CPUTime()
	return usageMeter{cg: cg, cpu: cpu, known: known}
}

func (m usageMeter) stop(res *orchestrator.Result) {
	if m.cg == nil {
		return
	}
	if cpu, ok := m.cg.CPUTime(); ok && m.known && cpu > m.cpu {
		res.CPUTime = cpu - m.cpu
	}
	res.PeakMemory = m.cg.PeakMemory()
}

// timeoutOutput is a timed-out execution's output, as JSON.
var timeoutOutput = string(jsonString(workerclient.TimeoutOutput))

// msgResources is the output of an execution that hit a limit: upstream's
// runtime answered exactly this, and clients compare the string. Which
// limit it was goes to the execution's log (detailMemory, detailPids).
const (
	msgResources = "Function execution failed because of too much resource consumption"
	detailMemory = "The function exceeded its memory limit of %d bytes."
	detailPids   = "The function reached its limit of %d processes and threads."
)

// limitChange is what a worker's cgroup limits need to become.
type limitChange struct {
	cpu    int
	memory int64
}

// limitChangesLocked records cpu and memory as w's limits and returns the
// writes needed to apply them; zero leaves a limit as it is, and the hot
// path (nothing changed) costs two comparisons. o.mu must be held.
func (w *worker) limitChangesLocked(cpu int, memory int64) limitChange {
	var c limitChange
	if w.cg == nil {
		return c
	}
	if cpu > 0 && cpu != w.cpu {
		w.cpu, c.cpu = cpu, cpu
	}
	if memory > 0 && memory != w.memory {
		w.memory, c.memory = memory, memory
	}
	return c
}

func (c limitChange) apply(w *worker) {
	if c.cpu > 0 {
		w.cg.SetCPU(c.cpu)
	}
	if c.memory > 0 {
		w.cg.SetMemory(c.memory + w.memExtra)
	}
}

// limitHit tells whether w's cgroup counted a limit hit since the last
// look, and returns the detail for the execution's log. A worker that hit a limit is not
// trusted with another execution: what it left behind (processes, memory)
// is thrown away with it.
func (o *Orchestrator) limitHit(w *worker) (string, bool) {
	if w.cg == nil {
		return "", false
	}
	ev := w.cg.Events()
	o.mu.Lock()
	seen := w.seen
	w.seen = ev
	memory := w.memory
	o.mu.Unlock()
	switch {
	case ev.OOMKills > seen.OOMKills:
		return fmt.Sprintf(detailMemory, memory), true
	case ev.PidsMax > seen.PidsMax:
		return fmt.Sprintf(detailPids, o.cfg.MaxPids), true
	}
	return "", false
}

// explainFailure rewrites a failed result caused by a limit (the function
// saw, say, "Resource temporarily unavailable" from fork) into upstream's
// message, with which limit and the function's own error in the log, and
// retires the worker, unless it has strict isolation: then only the
// execution's processes hit the limit, and they are gone already.
func (o *Orchestrator) explainFailure(w *worker, res orchestrator.Result) orchestrator.Result {
	detail, hit := o.limitHit(w)
	if !hit {
		return res
	}
	if w.strict {
		// Only the execution's processes hit it, and they are gone: the
		// worker (its server and zygotes) is left as it was.
		o.log.Info("execution hit a limit", "worker", w.name, "function_id", w.fnID, "reason", detail)
	} else {
		o.log.Info("execution hit a limit; retiring the worker", "worker", w.name, "function_id", w.fnID, "reason", detail)
		o.kill(w)
	}
	note := detail + "\n"
	if len(res.Output) > 0 {
		note = fmt.Sprintf("%s (The function's own error: %s)\n", detail, res.Output)
	}
	res.Logs += note
	res.Output = jsonString(msgResources)
	return res
}

// deathWait bounds how long Run waits for a dead or killed worker to be
// reaped before reading its cgroup's counters.
const deathWait = 2 * time.Second

// limitAfterDeath waits (bounded) until w, which died or was killed, has
// exited, then tells whether it had hit a limit: its cgroup's counters are
// final once every task of it is gone (the kernel counts an OOM kill in
// the dying process's own context).
func (o *Orchestrator) limitAfterDeath(w *worker) (string, bool) {
	if w.cg == nil {
		return "", false
	}
	t := time.NewTimer(deathWait)
	defer t.Stop()
	select {
	case <-w.done:
	case <-t.C:
	}
	return o.limitHit(w)
}

// lostToLimit tells whether a worker that died during an execution was
// killed for its memory limit, and if so returns the execution's result.
func (o *Orchestrator) lostToLimit(w *worker, start time.Time) (orchestrator.Result, bool) {
	detail, hit := o.limitAfterDeath(w)
	if !hit {
		return orchestrator.Result{}, false
	}
	return orchestrator.Result{
		Output: jsonString(msgResources), Duration: time.Since(start).Seconds(), Logs: detail + "\n",
	}, true
}

func jsonString(s string) json.RawMessage {
	b, _ := json.Marshal(s)
	return b
}
