package metrics

import "time"

// Finished is what is known of an execution when its outcome is stored.
type Finished struct {
	ProjectID  string
	FunctionID string
	// Status is the final status: success, failed or error.
	Status string
	// Reason says why a failed or error execution did not succeed (Reason*
	// constants, or an error kind); ignored on success.
	Reason string
	// Duration is the function's own run time; Wait the time before a
	// worker received it (0 when it never reached one, and then not
	// observed).
	Duration time.Duration
	Wait     time.Duration
	// MemorySize is the function's memory_size in bytes.
	MemorySize int64
}

// ExecutionFinished counts one stored outcome. Call it only when this
// process's write ended the execution, so that each execution is counted
// once across all processes.
func (m *Metrics) ExecutionFinished(f Finished) {
	if m == nil {
		return
	}
	m.executions.WithLabelValues(f.ProjectID, f.FunctionID, f.Status).Inc()
	m.duration.WithLabelValues(f.Status).Observe(f.Duration.Seconds())
	if f.Wait > 0 {
		m.wait.Observe(f.Wait.Seconds())
	}
	if f.Status != "success" {
		m.failed.WithLabelValues(f.Reason).Inc()
	}
	if f.MemorySize > 0 && f.Duration > 0 {
		m.memorySeconds.WithLabelValues(f.ProjectID).Add(float64(f.MemorySize) * f.Duration.Seconds())
	}
}

// ExecutionRunning counts an execution in flight until the returned
// function is called.
func (m *Metrics) ExecutionRunning() (done func()) {
	if m == nil {
		return func() {}
	}
	m.inFlight.Inc()
	return m.inFlight.Dec
}

// ExecutionRejected counts a request for an execution refused before one
// was recorded; reason is the error's kind.
func (m *Metrics) ExecutionRejected(reason string) {
	if m == nil {
		return
	}
	m.rejected.WithLabelValues(reason).Inc()
}

// ColdStart counts workers specialised for a function and the time it took.
func (m *Metrics) ColdStart(projectID, functionID string, workers int, took time.Duration) {
	if m == nil || workers <= 0 {
		return
	}
	m.coldStarts.WithLabelValues(projectID, functionID).Add(float64(workers))
	m.coldStart.Observe(took.Seconds())
}
