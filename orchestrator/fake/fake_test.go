package fake_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/orchestrator"
	"github.com/qinling-go/qinling/orchestrator/fake"
	"github.com/qinling-go/qinling/orchestrator/orchestratortest"
)

// handlers play the suite's test functions.
var handlers = map[string]fake.Handler{
	orchestratortest.Hello: func(inv orchestrator.Invocation) orchestrator.Result {
		var in map[string]any
		_ = json.Unmarshal(inv.Input, &in)
		name := "World"
		if v, ok := in["__function_input"].(string); ok {
			name = v
		} else if v, ok := in["name"].(string); ok {
			name = v
		}
		msg := "Hello, " + name
		out, _ := json.Marshal(msg)
		return orchestrator.Result{Success: true, Output: out, Logs: msg + "\n"}
	},
	orchestratortest.Fail: func(orchestrator.Invocation) orchestrator.Result {
		return orchestrator.Result{Success: false, Output: json.RawMessage(`"boom"`), Logs: "ValueError: boom\n"}
	},
	orchestratortest.Sleep: func(orchestrator.Invocation) orchestrator.Result {
		time.Sleep(5 * time.Second)
		return orchestrator.Result{Success: true, Output: json.RawMessage(`"woke up"`)}
	},
}

func newFake(t *testing.T) *fake.Orchestrator {
	t.Helper()
	f := fake.New(fake.Config{PoolSize: 2})
	for entry, h := range handlers {
		f.Handle(entry, h)
	}
	return f
}

func TestFake_Conformance(t *testing.T) {
	orchestratortest.Run(t, orchestratortest.Harness{
		New:      func(t *testing.T) orchestrator.Orchestrator { return newFake(t) },
		Image:    "python3",
		PoolSize: 2,
		Function: func(t *testing.T, name string) (orchestrator.Package, string) {
			// The entry selects the handler; the package is never opened.
			return orchestrator.Package{MD5: name}, name
		},
	})
}

func TestFake_ScriptedErrorsAndCalls(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFake(t)
	boom := errors.New("scripted")
	fn := orchestrator.Function{ID: "f", Version: 1, RuntimeID: "rt", Entry: orchestratortest.Hello}

	f.SetErrors(fake.Errors{CreatePoolErr: boom})
	require.ErrorIs(t, f.CreatePool(ctx, orchestrator.Runtime{ID: "rt", Image: "python3"}), boom)
	f.SetErrors(fake.Errors{})
	require.NoError(t, f.CreatePool(ctx, orchestrator.Runtime{ID: "rt", Image: "python3"}))

	f.SetErrors(fake.Errors{ScaleUpErr: orchestrator.ErrNoCapacity})
	_, err := f.ScaleUp(ctx, fn, 1)
	require.ErrorIs(t, err, orchestrator.ErrNoCapacity)
	f.SetErrors(fake.Errors{})
	ws, err := f.ScaleUp(ctx, fn, 2)
	require.NoError(t, err)
	require.Equal(t, []string{ws[0].Name, ws[1].Name}, f.Workers("f", 1))

	f.FailRuns(orchestrator.ErrWorkerNotFound, orchestrator.ErrWorkerLost)
	for _, want := range []error{orchestrator.ErrWorkerNotFound, orchestrator.ErrWorkerLost, nil} {
		_, err := f.Run(ctx, ws[0], orchestrator.Invocation{ExecutionID: "e", Entry: orchestratortest.Hello})
		if want == nil {
			require.NoError(t, err)
		} else {
			require.ErrorIs(t, err, want)
		}
	}

	f.Kill(ws[1].Name)
	_, err = f.Run(ctx, ws[1], orchestrator.Invocation{Entry: orchestratortest.Hello})
	require.ErrorIs(t, err, orchestrator.ErrWorkerNotFound)

	res, err := f.Run(ctx, ws[0], orchestrator.Invocation{Entry: "no.such"})
	require.NoError(t, err)
	require.False(t, res.Success)

	require.NoError(t, f.DeleteWorker(ctx, ws[0]))
	require.NoError(t, f.DeleteFunction(ctx, "f", 1))
	require.NoError(t, f.DeletePool(ctx, "rt"))

	calls := f.Calls()
	require.Len(t, calls.CreatePool, 2)
	require.Equal(t, []fake.ScaleUpCall{{FunctionID: "f", Version: 1, RuntimeID: "rt", Count: 1}, {FunctionID: "f", Version: 1, RuntimeID: "rt", Count: 2}}, calls.ScaleUp)
	require.Len(t, calls.Run, 5)
	require.Equal(t, []string{ws[0].Name}, calls.DeletedWorkers)
	require.Equal(t, []fake.FunctionVersion{{FunctionID: "f", Version: 1}}, calls.DeletedFunctions)
	require.Equal(t, []string{"rt"}, calls.DeletePool)
}

func TestFake_CallsAreConcurrencySafe(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFake(t)
	require.NoError(t, f.CreatePool(ctx, orchestrator.Runtime{ID: "rt", Image: "python3"}))
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 100 {
			_ = f.Calls()
		}
	}()
	for i := range 100 {
		_, err := f.ScaleUp(ctx, orchestrator.Function{ID: fmt.Sprint(i), RuntimeID: "rt"}, 1)
		require.NoError(t, err)
	}
	<-done
	require.Len(t, f.Calls().ScaleUp, 100)
}
