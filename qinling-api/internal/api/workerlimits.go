package api

import (
	"context"
	"strings"

	"github.com/qinling-go/qinling/pkg/db"
	"github.com/qinling-go/qinling/pkg/errdefs"
	"github.com/qinling-go/qinling/pkg/policy"
)

// maxWorkerLimit bounds what a function's min_workers and max_workers may
// say: far above what one engine can run, low enough to catch a typo.
const maxWorkerLimit = 1000

// workerLimits are a request's min_workers and max_workers (docs/scaling.md):
// given says which it sets; a nil value resets it to the deployment's
// default ([engine] min/max_workers_per_function).
type workerLimits struct {
	min, max   *int
	given      map[string]bool
	minC, maxC int // the bounds in force afterwards
}

// values are the columns an update sets.
func (w workerLimits) values() map[string]any {
	out := map[string]any{}
	if w.given["min_workers"] {
		out["min_workers"] = w.min
	}
	if w.given["max_workers"] {
		out["max_workers"] = w.max
	}
	return out
}

// parseWorkerLimits reads min_workers and max_workers, each an integer from
// 1 to maxWorkerLimit or "" for the default, for f (nil when creating).
// Setting either is admin-only (policy function:worker_limits); the minimum
// in force must not exceed the maximum.
func (s *Server) parseWorkerLimits(ctx context.Context, form *functionForm, f *db.Function) (workerLimits, error) {
	w := workerLimits{given: map[string]bool{}}
	if f != nil {
		w.min, w.max = f.MinWorkers, f.MaxWorkers
	}
	for _, c := range []struct {
		field string
		dst   **int
	}{{"min_workers", &w.min}, {"max_workers", &w.max}} {
		v, ok := form.get(c.field)
		if !ok {
			continue
		}
		w.given[c.field] = true
		if strings.TrimSpace(v) == "" {
			*c.dst = nil
			continue
		}
		n, _, err := formInt(c.field, v)
		if err != nil || n < 1 || n > maxWorkerLimit {
			return w, errdefs.Invalid("Invalid %s %q: an integer from 1 to %d is required (\"\" for the deployment's default).", c.field, v, maxWorkerLimit)
		}
		k := int(n)
		*c.dst = &k
	}
	if len(w.given) == 0 {
		return w, nil
	}
	if err := policy.Enforce(ctx, policy.FunctionWorkerLimits); err != nil {
		return w, err
	}
	w.minC, w.maxC = s.Limits.MinWorkers, s.Limits.MaxWorkers
	if w.min != nil {
		w.minC = *w.min
	}
	if w.max != nil {
		w.maxC = *w.max
	}
	if w.minC > w.maxC {
		return w, errdefs.Invalid("min_workers (%d) must not exceed max_workers (%d); a bound not given is the function's own or the deployment's default.", w.minC, w.maxC)
	}
	return w, nil
}
