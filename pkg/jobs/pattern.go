// Package jobs runs jobs, upstream's cron triggers: it checks their
// patterns (Parse) and, in every API process that enables it, fires the
// runs that are due (Handler). A run starts its execution through
// pkg/execution, as the API and webhooks do.
package jobs

import (
	"strings"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/qinling-go/qinling/pkg/errdefs"
)

// MaxPatternLength is the jobs.pattern column's size (upstream's).
const MaxPatternLength = 32

// MinPeriod is the shortest time between two runs of a job: upstream's
// croniter patterns have minutes as their finest field.
const MinPeriod = time.Minute

// Schedule is a valid pattern.
type Schedule struct{ cron cron.Schedule }

// Next is the first run strictly after t, in UTC; zero when there is none
// within the five years that robfig/cron searches.
func (s Schedule) Next(t time.Time) time.Time {
	n := s.cron.Next(t.UTC())
	if n.IsZero() {
		return n
	}
	return n.UTC()
}

// Parse checks a cron pattern — five fields (minute, hour, day of month,
// month, day of week) or a descriptor such as @daily or @every 5m — in UTC.
// A pattern that never matches or that runs more often than MinPeriod is
// refused. Every refusal is an invalid-kind error whose message starts as
// upstream's, "The specified pattern is not valid: <pattern>", and says why.
func Parse(pattern string) (Schedule, error) {
	invalid := func(why string) (Schedule, error) {
		return Schedule{}, errdefs.Invalid("The specified pattern is not valid: %s (%s).", pattern, why)
	}
	p := strings.TrimSpace(pattern)
	fields := strings.Fields(p)
	switch {
	case p == "":
		return invalid("it is empty")
	case len(pattern) > MaxPatternLength:
		return invalid("at most 32 characters")
	case strings.HasPrefix(p, "TZ=") || strings.HasPrefix(p, "CRON_TZ="):
		return invalid("time zones are not supported: patterns are in UTC")
	case !strings.HasPrefix(p, "@") && len(fields) == 6:
		return invalid("seconds are not supported: use five fields, minute hour day-of-month month day-of-week")
	}
	c, err := cron.ParseStandard(p)
	if err != nil {
		return invalid(err.Error())
	}
	s := Schedule{cron: c}
	first := s.Next(time.Now())
	if first.IsZero() {
		return invalid("it never matches a date")
	}
	if second := s.Next(first); !second.IsZero() && second.Sub(first) < MinPeriod {
		return invalid("runs must be at least one minute apart")
	}
	return s, nil
}
