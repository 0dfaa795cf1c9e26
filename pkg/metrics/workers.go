package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Pool worker states of pool_workers.
const (
	// PoolAvailable: prewarmed, ready and not yet specialised.
	PoolAvailable = "available"
	// PoolUnavailable: the rest of the pool's live workers (specialised for
	// a function, or not ready yet).
	PoolUnavailable = "unavailable"
)

// Workers is an engine's workers at one moment.
type Workers struct {
	// PerFunction counts the workers this engine started, per function ID
	// (all versions).
	PerFunction map[string]int
	// Pools counts the pool's workers per runtime ID and state.
	Pools map[string]map[string]int
}

// ReadWorkers takes a Workers snapshot; it is called at every scrape.
type ReadWorkers func(context.Context) (Workers, error)

// snapshotTimeout bounds one snapshot, well inside Prometheus's default
// scrape timeout of 10 s.
const snapshotTimeout = 5 * time.Second

// WatchWorkers reports an engine's workers (function_workers, pool_workers)
// from read, called at scrape time so that the figures are never stale and
// cost nothing between scrapes. A failed read fails only these two metrics.
func (m *Metrics) WatchWorkers(read ReadWorkers) {
	m.reg.MustRegister(&workersCollector{
		read: read,
		function: prometheus.NewDesc(namespace+"_function_workers",
			"Workers this engine started for a function (all its versions).", []string{"function_id"}, nil),
		pool: prometheus.NewDesc(namespace+"_pool_workers",
			"Workers of a runtime's pool on this engine's orchestrator, by state (available: prewarmed and ready; unavailable: specialised or not ready).",
			[]string{"runtime_id", "state"}, nil),
	})
}

type workersCollector struct {
	read           ReadWorkers
	function, pool *prometheus.Desc
}

func (c *workersCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.function
	ch <- c.pool
}

func (c *workersCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), snapshotTimeout)
	defer cancel()
	w, err := c.read(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.function, err)
		return
	}
	for fn, n := range w.PerFunction {
		ch <- prometheus.MustNewConstMetric(c.function, prometheus.GaugeValue, float64(n), fn)
	}
	for rt, states := range w.Pools {
		for state, n := range states {
			ch <- prometheus.MustNewConstMetric(c.pool, prometheus.GaugeValue, float64(n), rt, state)
		}
	}
}
