package engine

import (
	"context"
	"encoding/json"
	"time"

	"github.com/qinling-go/qinling/orchestrator"
	"github.com/qinling-go/qinling/pkg/coord"
	"github.com/qinling-go/qinling/pkg/db"
	"github.com/qinling-go/qinling/pkg/metrics"
	"github.com/qinling-go/qinling/pkg/rpc"
)

// RPC method names, upstream's.
const (
	MethodCreateRuntime     = "create_runtime"
	MethodDeleteRuntime     = "delete_runtime"
	MethodUpdateRuntime     = "update_runtime"
	MethodGetRuntimePool    = "get_runtime_pool"
	MethodCreateExecution   = "create_execution"
	MethodDeleteFunction    = "delete_function"
	MethodScaleUpFunction   = "scaleup_function"
	MethodScaleDownFunction = "scaledown_function"
)

// RuntimeArgs names a runtime.
type RuntimeArgs struct {
	RuntimeID string `json:"runtime_id"`
}

// UpdateRuntimeArgs asks for a runtime's pool to move to a new image.
type UpdateRuntimeArgs struct {
	RuntimeID string `json:"runtime_id"`
	Image     string `json:"image"`
	PreImage  string `json:"pre_image"`
}

// ExecutionArgs asks for one execution; the row already exists as running.
// The engine reads everything else (runtime, entry, limits) from the
// function's row.
//
// Function and Execution, when set, are those rows as the API just read and
// inserted them (Execution without its input, which is Input), so that the
// engine need read neither again (docs/benchmarks.md, "The warm path"). The
// API sets them only for sync executions: an async request may wait in the
// broker long enough for its function to change. An engine given a request
// without them (from an API older than them, or the all-in-one's recovery)
// reads both rows as before.
type ExecutionArgs struct {
	ExecutionID     string          `json:"execution_id"`
	FunctionID      string          `json:"function_id"`
	FunctionVersion int             `json:"function_version"`
	Input           json.RawMessage `json:"input"`
	Function        *db.Function    `json:"function,omitempty"`
	Execution       *db.Execution   `json:"execution,omitempty"`
}

// ExecutionOutcome is an engine's answer to a sync create_execution: what
// it stored as the execution's end, the fields the API answers with, so
// that the API need not read the row back. Empty (an engine older than it,
// or an execution someone else ended) means the API reads the row.
type ExecutionOutcome struct {
	Status    string    `json:"status,omitempty"`
	Result    *string   `json:"result,omitempty"`
	UpdatedAt time.Time `json:"updated_at"`
}

// FunctionArgs names a function version, with a count for scaling.
type FunctionArgs struct {
	FunctionID      string `json:"function_id"`
	FunctionVersion int    `json:"function_version"`
	Count           int    `json:"count,omitempty"`
}

// Client is the API's typed view of the engine over any RPC transport.
type Client struct {
	RPC rpc.Client
	// Owners, when set (engine-local workers, several engines), sends a
	// sync execution straight to the queue of the engine owning its
	// function's warm workers (route.go), where the transport can address
	// one engine (rpc.EngineCaller).
	Owners coord.Coordinator
	// Metrics counts those executions (ExecutionRouted "api_owner"); nil
	// counts none.
	Metrics *metrics.Metrics
}

// CreateRuntime asks an engine to build the runtime's pool (cast).
func (c Client) CreateRuntime(ctx context.Context, id string) error {
	return c.RPC.Cast(ctx, MethodCreateRuntime, RuntimeArgs{RuntimeID: id})
}

// DeleteRuntime asks an engine to delete the pool and the runtime row (cast).
func (c Client) DeleteRuntime(ctx context.Context, id string) error {
	return c.RPC.Cast(ctx, MethodDeleteRuntime, RuntimeArgs{RuntimeID: id})
}

// UpdateRuntime asks an engine to roll the pool to a new image (cast).
func (c Client) UpdateRuntime(ctx context.Context, a UpdateRuntimeArgs) error {
	return c.RPC.Cast(ctx, MethodUpdateRuntime, a)
}

// RuntimePool returns the pool's capacity (call).
func (c Client) RuntimePool(ctx context.Context, id string) (orchestrator.Capacity, error) {
	var cp orchestrator.Capacity
	err := c.RPC.Call(ctx, MethodGetRuntimePool, RuntimeArgs{RuntimeID: id}, &cp)
	return cp, err
}

// CreateExecution runs an execution: a call when sync, a cast otherwise.
// A sync call's answer is the outcome the engine stored, when it gives one.
func (c Client) CreateExecution(ctx context.Context, a ExecutionArgs, sync bool) (ExecutionOutcome, error) {
	var out ExecutionOutcome
	if sync {
		if ec, engine := c.owner(ctx, a); engine != "" {
			c.Metrics.ExecutionRouted(routeAPIOwner)
			return out, ec.CallEngine(ctx, engine, MethodCreateExecution, a, &out)
		}
		return out, c.RPC.Call(ctx, MethodCreateExecution, a, &out)
	}
	return out, c.RPC.Cast(ctx, MethodCreateExecution, a)
}

// DeleteFunction releases a function version's workers (cast).
func (c Client) DeleteFunction(ctx context.Context, functionID string, version int) error {
	return c.RPC.Cast(ctx, MethodDeleteFunction, FunctionArgs{FunctionID: functionID, FunctionVersion: version})
}

// DeleteFunctionNow is DeleteFunction, answered once the workers are gone:
// for changes after which no execution may still reach a worker holding the
// old code.
func (c Client) DeleteFunctionNow(ctx context.Context, functionID string, version int) error {
	return c.RPC.Call(ctx, MethodDeleteFunction, FunctionArgs{FunctionID: functionID, FunctionVersion: version}, nil)
}

// ScaleUp adds count workers to a function version (cast).
func (c Client) ScaleUp(ctx context.Context, a FunctionArgs) error {
	return c.RPC.Cast(ctx, MethodScaleUpFunction, a)
}

// ScaleDown removes up to count workers, keeping one (cast).
func (c Client) ScaleDown(ctx context.Context, a FunctionArgs) error {
	return c.RPC.Cast(ctx, MethodScaleDownFunction, a)
}
