package engine_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/db"
	"github.com/qinling-go/qinling/pkg/engine"
	"github.com/qinling-go/qinling/pkg/rpc"
)

// A sync request may carry the function and execution rows (an API since
// docs/benchmarks.md's "The warm path") or not (an older API): the engine
// runs both, and answers both with the outcome it stored, over the wire
// format every transport carries (rpc.Dispatch).
func TestEngine_ExecutionRowsInRequest(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		// withRows sends the rows as the API read and inserted them.
		withRows bool
		// deleteFunction removes the function's row before the request:
		// only an engine that reads it again fails the execution.
		deleteFunction bool
		wantStatus     string
	}{
		{name: "old format: the engine reads the rows", wantStatus: db.StatusSuccess},
		{name: "rows sent: the engine runs from them", withRows: true, wantStatus: db.StatusSuccess},
		{name: "rows sent: the function row is not read again", withRows: true, deleteFunction: true, wantStatus: db.StatusSuccess},
		{name: "old format: the function row is read again", deleteFunction: true, wantStatus: db.StatusError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, engine.Options{})
			h.orch.Handle("hello.main", hello)
			f := h.function(t, "hello.main")
			args := h.execution(t, f)
			if tc.withRows {
				row, err := h.db.Execution(ctx, db.Internal, args.ExecutionID)
				require.NoError(t, err)
				args.Function, args.Execution = f, row
			}
			if tc.deleteFunction {
				require.NoError(t, h.db.DeleteFunction(ctx, f.ID))
			}
			out := dispatch(t, h, args)
			stored, res := h.stored(t, args.ExecutionID)
			require.Equal(t, tc.wantStatus, stored.Status)
			if tc.wantStatus == db.StatusSuccess {
				require.Equal(t, "Hello, x", res["output"])
			}
			require.Equal(t, stored.Status, out.Status, "the answer is what was stored")
			require.Equal(t, *stored.Result, *out.Result)
			require.NotNil(t, stored.UpdatedAt)
			require.True(t, stored.UpdatedAt.Equal(out.UpdatedAt), "stored %s, answered %s", stored.UpdatedAt, out.UpdatedAt)

			again := dispatch(t, h, args)
			require.Equal(t, engine.ExecutionOutcome{}, again, "a second delivery stores nothing, so answers nothing")
			if tc.wantStatus == db.StatusSuccess {
				require.Len(t, h.orch.Calls().Run, 1, "a second delivery is not run")
			}
		})
	}
}

// dispatch hands args to the engine as a transport does and decodes its answer.
func dispatch(t *testing.T, h *harness, args engine.ExecutionArgs) engine.ExecutionOutcome {
	t.Helper()
	req, err := rpc.NewRequest(context.Background(), engine.MethodCreateExecution, args)
	require.NoError(t, err)
	var out engine.ExecutionOutcome
	require.NoError(t, rpc.Dispatch(context.Background(), h.eng, req).Decode(&out))
	return out
}

// The rows travel as JSON: what the engine decodes is what the API sent.
func TestExecutionArgs_RowsRoundTrip(t *testing.T) {
	f := &db.Function{Base: db.Base{ID: "f1", ProjectID: "p"}, Entry: str("hello.main"), Timeout: 7, MemorySize: 1 << 25, Code: `{"source":"package","md5sum":"abc"}`}
	e := &db.Execution{Base: db.Base{ID: "e1", ProjectID: "p"}, FunctionID: &f.ID, Status: db.StatusRunning, Sync: true, Trigger: str(db.TriggerAPI)}
	b, err := json.Marshal(engine.ExecutionArgs{ExecutionID: e.ID, FunctionID: f.ID, Function: f, Execution: e})
	require.NoError(t, err)
	var got engine.ExecutionArgs
	require.NoError(t, json.Unmarshal(b, &got))
	require.Equal(t, f, got.Function)
	require.Equal(t, e, got.Execution)

	var old engine.ExecutionArgs
	require.NoError(t, json.Unmarshal([]byte(`{"execution_id":"e1","function_id":"f1","function_version":0,"input":null}`), &old))
	require.Nil(t, old.Function, "an older API's request carries no rows")
	require.Nil(t, old.Execution)
}

// A request for an execution its caller already ended (a sync call that gave
// up waiting) runs nothing. When its rows are old enough for that to be
// likely, the engine reads the row first and starts no worker for it.
func TestEngine_EndedExecutionWithRows(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name        string
		age         time.Duration
		wantScaleUp int
	}{
		{name: "recent rows: found out when starting it", age: 0, wantScaleUp: 1},
		{name: "old rows: read again, no worker started", age: time.Minute, wantScaleUp: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, engine.Options{})
			h.orch.Handle("hello.main", hello)
			f := h.function(t, "hello.main")
			args := h.execution(t, f)
			row, err := h.db.Execution(ctx, db.Internal, args.ExecutionID)
			require.NoError(t, err)
			row.CreatedAt = row.CreatedAt.Add(-tc.age)
			args.Function, args.Execution = f, row
			gaveUp := `{"output": "gave up", "duration": 0}`
			ended, err := h.db.FinishExecution(ctx, args.ExecutionID, db.StatusError, &gaveUp, nil)
			require.NoError(t, err)
			require.True(t, ended)

			require.Equal(t, engine.ExecutionOutcome{}, dispatch(t, h, args))
			require.Empty(t, h.orch.Calls().Run)
			require.Len(t, h.orch.Calls().ScaleUp, tc.wantScaleUp)
			stored, _ := h.stored(t, args.ExecutionID)
			require.Equal(t, gaveUp, *stored.Result)
		})
	}
}
