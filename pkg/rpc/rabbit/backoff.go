package rabbit

import "time"

// jitter is the largest fraction taken off a reconnection wait at random, so
// that engines cut off together by a broker restart do not all knock again
// in the same instant.
const jitter = 0.25

// backoff is the wait before reconnection attempt n (0 for the first retry
// after a failure): base doubled n times, capped at max, less up to a quarter
// of it as r (in [0, 1)) says. It never exceeds max and is never below
// three quarters of min(base, max).
func backoff(n int, base, max time.Duration, r float64) time.Duration {
	if base <= 0 {
		base = time.Millisecond
	}
	if max < base {
		max = base
	}
	d := base
	for i := 0; i < n && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	return d - time.Duration(float64(d)*jitter*r)
}
