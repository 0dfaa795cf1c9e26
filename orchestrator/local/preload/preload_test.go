package preload

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func key(f string) Key { return Key{Function: f} }

func TestTraffic_Plan(t *testing.T) {
	t.Parallel()
	stats := Stats{
		Window:    time.Minute,
		Runtimes:  map[string]int{"py": 13, "idle": 0},
		Functions: map[Key]int{key("hot"): 7, key("warm"): 3, key("tie-b"): 3, key("once"): 1},
		RuntimeOf: map[Key]string{key("hot"): "py", key("warm"): "py", key("tie-b"): "py", key("once"): "py"},
	}
	for _, tc := range []struct {
		name  string
		slots int
		want  map[Key]Level
	}{
		{name: "no slots: everything at runtime", slots: 0,
			want: map[Key]Level{key("hot"): Runtime, key("warm"): Runtime, key("once"): Runtime}},
		{name: "one slot goes to the busiest", slots: 1,
			want: map[Key]Level{key("hot"): Function, key("warm"): Runtime, key("tie-b"): Runtime}},
		{name: "ties go to the lower key", slots: 2,
			want: map[Key]Level{key("hot"): Function, key("tie-b"): Function, key("warm"): Runtime}},
		{name: "a single call is not enough", slots: 10,
			want: map[Key]Level{key("hot"): Function, key("warm"): Function, key("tie-b"): Function, key("once"): Runtime}},
		{name: "unknown functions stay at runtime", slots: 10,
			want: map[Key]Level{key("never-called"): Runtime}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			slots := Traffic{}.Plan(stats, tc.slots)
			plan := NewPlan(slots, tc.slots)
			require.LessOrEqual(t, plan.FunctionSlots(), tc.slots)
			for k, want := range tc.want {
				require.Equal(t, want, plan.Level(k, "py"), "level of %s", k.Function)
			}
		})
	}
}

func TestTraffic_PlanMinCalls(t *testing.T) {
	t.Parallel()
	stats := Stats{Functions: map[Key]int{key("a"): 4}, RuntimeOf: map[Key]string{key("a"): "py"}}
	require.Equal(t, Runtime, NewPlan(Traffic{MinCalls: 5}.Plan(stats, 3), 3).Level(key("a"), "py"))
	require.Equal(t, Function, NewPlan(Traffic{MinCalls: 4}.Plan(stats, 3), 3).Level(key("a"), "py"))
}

// greedy ignores its budget; NewPlan enforces it.
type greedy struct{}

func (greedy) Plan(st Stats, _ int) []Slot {
	var out []Slot
	for k := range st.Functions {
		out = append(out, Slot{Level: Function, Function: k})
	}
	return out
}

func TestNewPlan_EnforcesTheSlotLimit(t *testing.T) {
	t.Parallel()
	st := Stats{Functions: map[Key]int{key("a"): 1, key("b"): 1, key("c"): 1}}
	require.Equal(t, 2, NewPlan(greedy{}.Plan(st, 2), 2).FunctionSlots())
	require.Equal(t, 3, NewPlan(greedy{}.Plan(st, 2), -1).FunctionSlots())
}

func TestPlan_Precedence(t *testing.T) {
	t.Parallel()
	plan := NewPlan([]Slot{
		{Level: None},                         // everything else
		{Level: Runtime, Runtime: "py"},       // this runtime
		{Level: Function, Function: key("f")}, // this function
		{Level: Function, Runtime: "nodejs"},  // runtime-wide slots cannot preload functions
		{Level: None, Function: key("plain")}, // a function may be planned lower than its runtime
	}, 1)
	require.Equal(t, Function, plan.Level(key("f"), "py"))
	require.Equal(t, None, plan.Level(key("plain"), "py"))
	require.Equal(t, Runtime, plan.Level(key("g"), "py"))
	require.Equal(t, Runtime, plan.Level(key("g"), "nodejs"))
	require.Equal(t, None, plan.Level(key("g"), "other"))
	require.Equal(t, Runtime, Plan{}.Level(key("g"), "py"), "the zero plan")
}

func TestStaticAndNewPolicy(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		want Level
	}{{"", Runtime}, {"traffic", Runtime}, {"runtime", Runtime}, {"none", None}, {"function", Function}} {
		p, err := NewPolicy(tc.name)
		require.NoError(t, err, tc.name)
		plan := NewPlan(p.Plan(Stats{}, 0), 0)
		require.Equal(t, tc.want, plan.Level(key("x"), "py"), "policy %q", tc.name)
	}
	_, err := NewPolicy("sometimes")
	require.ErrorContains(t, err, "want traffic, function, runtime or none")
}

func TestParseLevel(t *testing.T) {
	t.Parallel()
	for _, l := range []Level{None, Runtime, Function} {
		got, err := ParseLevel(l.String())
		require.NoError(t, err)
		require.Equal(t, l, got)
	}
	_, err := ParseLevel("all")
	require.Error(t, err)
	require.Equal(t, "Level(7)", Level(7).String())
}

func TestCounter_SlidingWindow(t *testing.T) {
	t.Parallel()
	c := NewCounter(time.Minute, 6) // 10 s buckets
	t0 := time.Unix(1_000_000, 0)
	c.Add(t0, "py", key("a"))
	c.Add(t0.Add(5*time.Second), "py", key("a"))
	c.Add(t0.Add(25*time.Second), "py", key("b"))
	c.Add(t0.Add(25*time.Second), "js", key("c"))

	st := c.Stats(t0.Add(30 * time.Second))
	require.Equal(t, map[Key]int{key("a"): 2, key("b"): 1, key("c"): 1}, st.Functions)
	require.Equal(t, map[string]int{"py": 3, "js": 1}, st.Runtimes)
	require.Equal(t, "js", st.RuntimeOf[key("c")])
	require.Equal(t, time.Minute, st.Window)

	// a's bucket leaves the window, b's is still in it.
	st = c.Stats(t0.Add(65 * time.Second))
	require.Equal(t, map[Key]int{key("b"): 1, key("c"): 1}, st.Functions)

	// A bucket is reused after a full turn of the ring, not added to.
	c.Add(t0.Add(60*time.Second), "py", key("d"))
	st = c.Stats(t0.Add(61 * time.Second))
	require.Equal(t, map[Key]int{key("b"): 1, key("c"): 1, key("d"): 1}, st.Functions)

	require.Empty(t, c.Stats(t0.Add(10*time.Minute)).Functions, "everything has left the window")
}

func TestCounter_Concurrent(t *testing.T) {
	t.Parallel()
	c := NewCounter(time.Minute, 12)
	done := make(chan struct{})
	now := time.Now()
	for g := 0; g < 8; g++ {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := 0; i < 1000; i++ {
				c.Add(now, "py", key("f"))
				_ = c.Stats(now)
			}
		}()
	}
	for g := 0; g < 8; g++ {
		<-done
	}
	require.Equal(t, 8000, c.Stats(now).Functions[key("f")])
}
