package preload

import (
	"sync"
	"time"
)

// Counter counts calls per runtime and per function version over a sliding
// window, in buckets: Stats sums the buckets of the last window, so a call
// leaves the window up to one bucket late. Add costs a mutex and two map
// updates. Safe for concurrent use.
type Counter struct {
	window, width time.Duration

	mu      sync.Mutex
	buckets []bucket
}

type bucket struct {
	start     time.Time // zero: unused
	runtimes  map[string]int
	functions map[Key]int
	runtimeOf map[Key]string
}

// NewCounter returns a Counter over window in n buckets (n >= 1).
func NewCounter(window time.Duration, n int) *Counter {
	n = max(n, 1)
	window = max(window, time.Duration(n))
	return &Counter{window: window, width: window / time.Duration(n), buckets: make([]bucket, n)}
}

// Window is the counter's window.
func (c *Counter) Window() time.Duration { return c.window }

// Add counts one call of function version k, of runtime rt, at now.
func (c *Counter) Add(now time.Time, rt string, k Key) int {
	start := now.Truncate(c.width)
	c.mu.Lock()
	defer c.mu.Unlock()
	b := &c.buckets[int(start.UnixNano()/int64(c.width))%len(c.buckets)]
	if !b.start.Equal(start) {
		*b = bucket{start: start, runtimes: map[string]int{}, functions: map[Key]int{}, runtimeOf: map[Key]string{}}
	}
	b.runtimes[rt]++
	b.functions[k]++
	b.runtimeOf[k] = rt
	return b.functions[k]
}

// Stats sums the calls of the buckets inside the window ending at now.
func (c *Counter) Stats(now time.Time) Stats {
	st := Stats{Window: c.window, Runtimes: map[string]int{}, Functions: map[Key]int{}, RuntimeOf: map[Key]string{}}
	oldest := now.Truncate(c.width).Add(-c.window + c.width)
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, b := range c.buckets {
		if b.start.IsZero() || b.start.Before(oldest) || b.start.After(now) {
			continue
		}
		for rt, n := range b.runtimes {
			st.Runtimes[rt] += n
		}
		for k, n := range b.functions {
			st.Functions[k] += n
			st.RuntimeOf[k] = b.runtimeOf[k]
		}
	}
	return st
}
