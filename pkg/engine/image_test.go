package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/orchestrator"
	"github.com/qinling-go/qinling/orchestrator/fake"
	"github.com/qinling-go/qinling/pkg/coord/memory"
	"github.com/qinling-go/qinling/pkg/db"
	"github.com/qinling-go/qinling/pkg/engine"
)

// shared is the fake with the Kubernetes backend's optional abilities:
// image functions and in-place pool updates.
type shared struct {
	*fake.Orchestrator
	mu      sync.Mutex
	images  []orchestrator.ImageInvocation
	result  orchestrator.Result
	err     error
	updates []string
	bad     string // UpdatePool fails for this image
}

func (s *shared) RunImage(_ context.Context, inv orchestrator.ImageInvocation) (orchestrator.Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.images = append(s.images, inv)
	return s.result, s.err
}

func (s *shared) UpdatePool(_ context.Context, rt orchestrator.Runtime) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.updates = append(s.updates, rt.Image)
	if rt.Image == s.bad {
		return errors.New("image cannot be pulled")
	}
	return nil
}

func newSharedEngine(t *testing.T) (*db.DB, *shared, *engine.Engine) {
	t.Helper()
	d, err := db.Open("sqlite", filepath.Join(t.TempDir(), "q.sqlite"), db.Options{})
	require.NoError(t, err)
	_, _, err = d.Sync(context.Background())
	require.NoError(t, err)
	t.Cleanup(func() { d.Close() })
	o := &shared{Orchestrator: fake.New(fake.Config{PoolSize: 3})}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	return d, o, engine.New(d, o, memory.New(), nil, engine.Options{}, log)
}

func TestEngine_ImageFunctions(t *testing.T) {
	out, _ := json.Marshal("Function execution timeout.")
	for _, tc := range []struct {
		name     string
		input    string
		result   orchestrator.Result
		runErr   error
		status   string
		wantArgs []string
		output   string
	}{
		{name: "success with arguments", input: `{"__function_input": "echo  hello world"}`,
			result: orchestrator.Result{Success: true, Duration: 2, Logs: "hello world\n"},
			status: db.StatusSuccess, wantArgs: []string{"echo", "hello", "world"}},
		{name: "no input", result: orchestrator.Result{Success: true}, status: db.StatusSuccess},
		{name: "timeout", result: orchestrator.Result{Output: out, Duration: 5}, status: db.StatusFailed,
			output: "Function execution timeout."},
		{name: "keyword input refused", input: `{"name": "x"}`, status: db.StatusError,
			output: "plain string input"},
		{name: "pod cannot start", runErr: errors.New("boom"), status: db.StatusError,
			output: "Function execution failed."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, o, eng := newSharedEngine(t)
			o.result, o.err = tc.result, tc.runErr
			ctx := context.Background()
			f := &db.Function{Base: db.Base{ProjectID: "p"}, CPU: 100, MemorySize: 33554432, Timeout: 5}
			f.SetCode(db.Code{Source: db.SourceImage, Image: "busybox:1"})
			require.NoError(t, d.CreateFunction(ctx, f))
			e := &db.Execution{Base: db.Base{ProjectID: "p"}, FunctionID: &f.ID, Status: db.StatusRunning, Sync: true}
			require.NoError(t, d.CreateExecution(ctx, e))
			args := engine.ExecutionArgs{ExecutionID: e.ID, FunctionID: f.ID}
			if tc.input != "" {
				args.Input = json.RawMessage(tc.input)
			}
			require.NoError(t, eng.CreateExecution(ctx, args))
			got, err := d.Execution(ctx, db.Internal, e.ID)
			require.NoError(t, err)
			require.Equal(t, tc.status, got.Status)
			if tc.output != "" {
				require.Contains(t, *got.Result, tc.output)
			}
			if tc.status != db.StatusError || tc.runErr != nil {
				require.Len(t, o.images, 1)
				require.Equal(t, tc.wantArgs, o.images[0].Args)
				require.Equal(t, "busybox:1", o.images[0].Image)
			}
		})
	}
}

func TestEngine_UpdateRuntimeInPlace(t *testing.T) {
	d, o, eng := newSharedEngine(t)
	ctx := context.Background()
	rt := &db.Runtime{Base: db.Base{ProjectID: "p"}, Image: "old", Status: db.StatusCreating, IsPublic: true}
	require.NoError(t, d.CreateRuntime(ctx, rt))
	require.NoError(t, eng.CreateRuntime(ctx, rt.ID))

	o.bad = "broken"
	require.NoError(t, eng.UpdateRuntime(ctx, engine.UpdateRuntimeArgs{RuntimeID: rt.ID, Image: "broken", PreImage: "old"}))
	got, err := d.Runtime(ctx, db.Internal, rt.ID)
	require.NoError(t, err)
	require.Equal(t, db.StatusAvailable, got.Status)
	require.Equal(t, "old", got.Image, "rolled back")
	require.Equal(t, []string{"broken", "old"}, o.updates, "rolled in place, never deleted")
	require.Empty(t, o.Calls().DeletePool)
}
