package metrics

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// UsageTotal is what one function of one project has used since it first
// ran: the usage rollup summed over all hours (docs/operations.md, "Usage").
type UsageTotal struct {
	ProjectID, FunctionID string
	Succeeded, Failed     int64
	Duration, CPU         time.Duration
	// MemoryByteSeconds is memory_size × duration, summed.
	MemoryByteSeconds float64
}

// ReadUsage reads the usage totals; it is called at most once per
// usageCacheFor, when Prometheus scrapes.
type ReadUsage func(context.Context) ([]UsageTotal, error)

// usageCacheFor spares the database a summing query per scrape when several
// Prometheus servers (or a short scrape interval) ask at once.
const usageCacheFor = 2 * time.Second

// WatchUsage serves the billing counters (qinling_usage_*) from read: the
// usage rollup, written in the transaction that ends each execution. Unlike
// the counters this process keeps in memory, they count every execution
// exactly once whichever process ended it, and survive restarts and kill -9:
// what Prometheus sees is the database's figure. Every API process serves
// the same figures, so aggregate them with max, not sum, across instances.
func (m *Metrics) WatchUsage(read ReadUsage) {
	if m == nil {
		return
	}
	desc := func(name, help string, extra ...string) *prometheus.Desc {
		return prometheus.NewDesc(namespace+"_usage_"+name, help, append([]string{"project_id", "function_id"}, extra...), nil)
	}
	m.reg.MustRegister(&usageCollector{
		read: read,
		executions: desc("executions_total",
			"Executions finished, by project, function and outcome (succeeded; failed: failed or error), from the usage rollup: exact across processes, restarts and kill -9.", "outcome"),
		duration: desc("duration_seconds_total",
			"The functions' own run time, summed, from the usage rollup."),
		cpu: desc("cpu_seconds_total",
			"CPU time of the workers during executions, summed, from the usage rollup (0 where the orchestrator cannot measure it)."),
		memory: desc("memory_byte_seconds_total",
			"memory_size × duration of executions, summed, from the usage rollup; divided by 2^30 it is Lambda's GB-seconds."),
	})
}

type usageCollector struct {
	read                              ReadUsage
	executions, duration, cpu, memory *prometheus.Desc

	mu     sync.Mutex
	at     time.Time
	cached []UsageTotal
}

func (c *usageCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.executions
	ch <- c.duration
	ch <- c.cpu
	ch <- c.memory
}

func (c *usageCollector) Collect(ch chan<- prometheus.Metric) {
	totals, err := c.totals()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.executions, err)
		return
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	for _, u := range totals {
		counter(c.executions, float64(u.Succeeded), u.ProjectID, u.FunctionID, "succeeded")
		counter(c.executions, float64(u.Failed), u.ProjectID, u.FunctionID, "failed")
		counter(c.duration, u.Duration.Seconds(), u.ProjectID, u.FunctionID)
		counter(c.cpu, u.CPU.Seconds(), u.ProjectID, u.FunctionID)
		counter(c.memory, u.MemoryByteSeconds, u.ProjectID, u.FunctionID)
	}
}

func (c *usageCollector) totals() ([]UsageTotal, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cached != nil && time.Since(c.at) < usageCacheFor {
		return c.cached, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), snapshotTimeout)
	defer cancel()
	totals, err := c.read(ctx)
	if err != nil {
		return nil, err
	}
	if totals == nil {
		totals = []UsageTotal{}
	}
	c.cached, c.at = totals, time.Now()
	return totals, nil
}
