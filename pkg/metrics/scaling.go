package metrics

import "github.com/prometheus/client_golang/prometheus"

// Scaling and routing decisions (docs/scaling.md, "Reading the decisions").
type scaling struct {
	decisions *prometheus.CounterVec
	routed    *prometheus.CounterVec
}

func newScaling() scaling {
	return scaling{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "scale_decisions_total",
			Help: "Autoscaler decisions that changed a function's workers, by direction (up, down) and rule (target, burst, scale down, no worker, load above function_concurrency)."},
			[]string{"direction", "rule"}),
		routed: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "executions_routed_total",
			Help: "Executions passed on to the engine that owns the function's workers, by when: by qinling-api, straight to the owner's queue (api_owner), or by an engine on arrival (warm_owner) or from its queue once another engine had started workers (owner_scaled)."},
			[]string{"reason"}),
	}
}

func (s scaling) collectors() []prometheus.Collector {
	return []prometheus.Collector{s.decisions, s.routed}
}

// ScaleDecision counts one decision to add (up) or release (down) workers.
func (m *Metrics) ScaleDecision(direction, rule string) {
	if m == nil {
		return
	}
	m.scaling.decisions.WithLabelValues(direction, rule).Inc()
}

// ExecutionRouted counts an execution passed on to another engine.
func (m *Metrics) ExecutionRouted(reason string) {
	if m == nil {
		return
	}
	m.scaling.routed.WithLabelValues(reason).Inc()
}
