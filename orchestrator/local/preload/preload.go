// Package preload decides, from recent traffic, what the local
// orchestrator's strict-isolation workers import before a call arrives.
//
// A strict worker runs every execution in a fresh process forked from a
// zygote (runtimes/python3/_qinling_runtime/zygote.py). What the zygote has imported is the
// preload level:
//
//   - Function: a function zygote has the function's modules imported, so
//     an execution process only calls the entry (the fastest);
//   - Runtime: the runtime zygote has only the runtime imported, and each
//     execution process imports the function's modules itself;
//   - None: no zygote is used; each execution starts a fresh interpreter
//     (the baseline strict isolation is measured against).
//
// A function zygote holds the function's modules and its prepared processes
// in memory, so an engine keeps a fixed number of them (slots). A Policy
// turns Stats (calls per runtime and per function version over a sliding
// window, kept by a Counter) into a plan: a list of Slots. The orchestrator
// refreshes the plan periodically and applies each worker's level.
package preload

import (
	"cmp"
	"fmt"
	"slices"
	"time"
)

// Level is what a strict worker's zygote has imported.
type Level int

// Levels, from least to most preloaded.
const (
	None Level = iota
	Runtime
	Function
)

var levelNames = [...]string{None: "none", Runtime: "runtime", Function: "function"}

func (l Level) String() string {
	if l < None || l > Function {
		return fmt.Sprintf("Level(%d)", int(l))
	}
	return levelNames[l]
}

// ParseLevel parses "none", "runtime" or "function".
func ParseLevel(s string) (Level, error) {
	for l, name := range levelNames {
		if name == s {
			return Level(l), nil
		}
	}
	return None, fmt.Errorf("preload level %q: unknown (want none, runtime or function)", s)
}

// Key names a function version.
type Key struct {
	Function string
	Version  int
}

// Stats are the calls seen during the last Window.
type Stats struct {
	Window time.Duration
	// Runtimes counts calls per runtime ID.
	Runtimes map[string]int
	// Functions counts calls per function version, and RuntimeOf gives
	// each one's runtime.
	Functions map[Key]int
	RuntimeOf map[Key]string
}

// Slot is one entry of a plan. A slot with a Function applies to that
// function version; one with only a Runtime to every function of the
// runtime that has no slot of its own; one with neither to everything else.
type Slot struct {
	Level    Level
	Runtime  string
	Function Key
}

// Policy plans preloading. Plan must return at most slots slots of Level
// Function (each one is a function zygote per worker of that function);
// runtime-wide and default slots are free, since every strict worker has
// its runtime zygote anyway. Implementations must be safe for concurrent use.
type Policy interface {
	Plan(stats Stats, slots int) []Slot
}

// Plan is a policy's answer, indexed for lookups.
type Plan struct {
	slots     []Slot
	functions map[Key]Level
	runtimes  map[string]Level
	fallback  Level
}

// NewPlan indexes slots. Function slots beyond limit are dropped (a policy
// that ignores its budget cannot exceed it); limit < 0 means no limit.
// Levels not planned default to Runtime.
func NewPlan(slots []Slot, limit int) Plan {
	p := Plan{functions: map[Key]Level{}, runtimes: map[string]Level{}, fallback: Runtime}
	used := 0
	for _, s := range slots {
		switch {
		case s.Function != (Key{}):
			if s.Level == Function {
				if limit >= 0 && used >= limit {
					continue
				}
				used++
			}
			p.functions[s.Function] = s.Level
		case s.Runtime != "":
			p.runtimes[s.Runtime] = min(s.Level, Runtime) // a runtime-wide slot cannot preload functions
		default:
			p.fallback = s.Level
		}
		p.slots = append(p.slots, s)
	}
	return p
}

// Level is the level planned for function version k of runtime rt.
func (p Plan) Level(k Key, rt string) Level {
	if l, ok := p.functions[k]; ok {
		return l
	}
	if l, ok := p.runtimes[rt]; ok {
		return l
	}
	if p.functions == nil { // the zero Plan
		return Runtime
	}
	return p.fallback
}

// FunctionSlots is the number of function versions planned at Function.
func (p Plan) FunctionSlots() int {
	n := 0
	for _, l := range p.functions {
		if l == Function {
			n++
		}
	}
	return n
}

// Slots returns the plan's slots as the policy gave them.
func (p Plan) Slots() []Slot { return slices.Clone(p.slots) }

// DefaultMinCalls is how many calls in the window a function version needs
// before Traffic gives it a function zygote.
const DefaultMinCalls = 2

// Traffic is the default policy. The function versions called most in the
// window (at least MinCalls times) get the slots, busiest first; ties go to
// the lower key so that plans are stable. Every runtime with calls is
// planned at Runtime, and so is everything else: forking a runtime zygote
// is cheaper than starting a fresh interpreter in every case, so this
// policy never chooses None.
type Traffic struct {
	// MinCalls defaults to DefaultMinCalls.
	MinCalls int
}

// Plan implements Policy.
func (t Traffic) Plan(st Stats, slots int) []Slot {
	minCalls := t.MinCalls
	if minCalls <= 0 {
		minCalls = DefaultMinCalls
	}
	type hot struct {
		k Key
		n int
	}
	var hots []hot
	for k, n := range st.Functions {
		if n >= minCalls {
			hots = append(hots, hot{k, n})
		}
	}
	slices.SortFunc(hots, func(a, b hot) int {
		if c := cmp.Compare(b.n, a.n); c != 0 {
			return c
		}
		if c := cmp.Compare(a.k.Function, b.k.Function); c != 0 {
			return c
		}
		return cmp.Compare(a.k.Version, b.k.Version)
	})
	var out []Slot
	for _, h := range hots[:min(len(hots), max(slots, 0))] {
		out = append(out, Slot{Level: Function, Function: h.k, Runtime: st.RuntimeOf[h.k]})
	}
	rts := make([]string, 0, len(st.Runtimes))
	for rt, n := range st.Runtimes {
		if n > 0 {
			rts = append(rts, rt)
		}
	}
	slices.Sort(rts)
	for _, rt := range rts {
		out = append(out, Slot{Level: Runtime, Runtime: rt})
	}
	return out
}

// Static plans one level for everything, whatever the traffic. With
// Function every function is preloaded, without a slot limit.
type Static struct {
	Level Level
}

// Plan implements Policy.
func (s Static) Plan(Stats, int) []Slot { return []Slot{{Level: s.Level}} }

// NewPolicy returns the policy named in configuration: "traffic" (the
// default), or "function", "runtime" or "none" for a Static one.
func NewPolicy(name string) (Policy, error) {
	if name == "" || name == "traffic" {
		return Traffic{}, nil
	}
	l, err := ParseLevel(name)
	if err != nil {
		return nil, fmt.Errorf("preload policy %q: unknown (want traffic, function, runtime or none)", name)
	}
	return Static{Level: l}, nil
}
