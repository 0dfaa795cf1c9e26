package jobs_test

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/errdefs"
	"github.com/qinling-go/qinling/pkg/jobs"
)

func TestParse(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, pattern string
		period        time.Duration // between two runs; 0 when it varies
		why           string        // in the refusal; "" means valid
	}{
		{name: "every minute", pattern: "* * * * *", period: time.Minute},
		{name: "every five minutes", pattern: "*/5 * * * *", period: 5 * time.Minute},
		{name: "hourly descriptor", pattern: "@hourly", period: time.Hour},
		{name: "every two minutes", pattern: "@every 2m", period: 2 * time.Minute},
		{name: "every minute exactly", pattern: "@every 1m", period: time.Minute},
		{name: "leap day", pattern: "0 0 29 2 *"},
		{name: "surrounding spaces", pattern: "  0 12 * * 1-5 ", period: 0},
		{name: "every second", pattern: "@every 1s", why: "at least one minute apart"},
		{name: "every 59 seconds", pattern: "@every 59s", why: "at least one minute apart"},
		{name: "negative period", pattern: "@every -1m", why: "at least one minute apart"},
		{name: "seconds field", pattern: "*/30 * * * * *", why: "seconds are not supported"},
		{name: "never: 30 February", pattern: "0 0 30 2 *", why: "never matches"},
		{name: "never: 31 April", pattern: "0 0 31 4 *", why: "never matches"},
		{name: "empty", pattern: "", why: "empty"},
		{name: "blank", pattern: "   ", why: "empty"},
		{name: "too long", pattern: "0,1,2,3,4,5,6,7,8,9,10,11,12 * * * *", why: "at most 32 characters"},
		{name: "time zone", pattern: "CRON_TZ=Asia/Tokyo 0 * * * *", why: "time zones are not supported"},
		{name: "time zone short", pattern: "TZ=UTC 0 * * * *", why: "time zones are not supported"},
		{name: "words", pattern: "every minute", why: "expected exactly 5 fields"},
		{name: "four fields", pattern: "* * * *", why: "expected exactly 5 fields"},
		{name: "minute out of range", pattern: "60 * * * *", why: "above maximum"},
		{name: "step zero", pattern: "*/0 * * * *", why: "step"},
		{name: "unknown descriptor", pattern: "@fortnightly", why: "unrecognized descriptor"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, err := jobs.Parse(tc.pattern)
			if tc.why != "" {
				require.Error(t, err)
				require.Equal(t, errdefs.KindInvalid, errdefs.KindOf(err))
				require.Contains(t, err.Error(), "The specified pattern is not valid: "+tc.pattern)
				require.Contains(t, err.Error(), tc.why)
				return
			}
			require.NoError(t, err)
			now := time.Now()
			first := s.Next(now)
			require.True(t, first.After(now), "next run %s is not after %s", first, now)
			require.Equal(t, time.UTC, first.Location())
			if tc.period != 0 {
				require.Equal(t, tc.period, s.Next(first).Sub(first))
			}
		})
	}
}

// FuzzParse: any text is either refused with an invalid-kind error that
// quotes it, or gives a schedule whose runs come in order, in UTC and at
// least MinPeriod apart. The seed corpus is in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{"* * * * *", "@daily", "@every 90s", "0 0 30 2 *", "1-5/2 */3 1,15 JAN-MAR MON-FRI"} {
		f.Add(seed)
	}
	base := time.Date(2030, 6, 15, 12, 34, 56, 0, time.UTC)
	f.Fuzz(func(t *testing.T, pattern string) {
		s, err := jobs.Parse(pattern)
		if err != nil {
			if errdefs.KindOf(err) != errdefs.KindInvalid {
				t.Fatalf("Parse(%q): error of kind %s: %v", pattern, errdefs.KindOf(err), err)
			}
			if utf8.ValidString(pattern) && !strings.Contains(err.Error(), pattern) {
				t.Fatalf("Parse(%q): the refusal does not quote the pattern: %v", pattern, err)
			}
			return
		}
		first := s.Next(base)
		if first.IsZero() {
			return // a pattern that matches, but not within five years of base
		}
		if !first.After(base) || first.Location() != time.UTC {
			t.Fatalf("Parse(%q): next after %s is %s", pattern, base, first)
		}
		if second := s.Next(first); !second.IsZero() && second.Sub(first) < jobs.MinPeriod {
			t.Fatalf("Parse(%q): runs %s and %s are closer than %s", pattern, first, second, jobs.MinPeriod)
		}
	})
}
