// Package execution starts executions. Whoever asks — the executions API, a
// webhook's invocation or a job's run — an execution starts the same way:
// resolve what to run (an alias, or a function version), check the function
// can run, count the run, record it as running and hand it to an engine.
// Start is that one operation; it knows nothing of HTTP, and its errors carry
// errdefs kinds that the API maps to statuses.
package execution

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"time"

	"github.com/qinling-go/qinling/pkg/db"
	"github.com/qinling-go/qinling/pkg/engine"
	"github.com/qinling-go/qinling/pkg/errdefs"
	"github.com/qinling-go/qinling/pkg/metrics"
	"github.com/qinling-go/qinling/pkg/reqctx"
	"github.com/qinling-go/qinling/pkg/rpc"
)

// Engine is what Start needs of the engine: engine.Client over RPC. A sync
// call's outcome, when the engine gives one, is what it stored as the
// execution's end.
type Engine interface {
	CreateExecution(ctx context.Context, a engine.ExecutionArgs, sync bool) (engine.ExecutionOutcome, error)
}

// Starter starts executions.
type Starter struct {
	DB     *db.DB
	Engine Engine
	Log    *slog.Logger
	// MaxPerFunction and MaxPerProject bound the running (in flight or
	// queued) executions of one function version and of one project; 0
	// means no bound. Beyond them Start refuses with KindTooMany. Checked
	// before the insert, so concurrent starts may pass a bound by as many
	// as there are of them.
	MaxPerFunction int
	MaxPerProject  int
	// Metrics counts refused requests and executions ended here; nil
	// counts none.
	Metrics *metrics.Metrics
}

// retryAfter is what a refused caller is told to wait: about the time a
// short function's queue needs to move.
const retryAfter = 5 * time.Second

// Target is what an execution runs: the function version an alias points at
// when Alias is set, else FunctionID at Version (0 is the function itself).
type Target struct {
	Alias string
	// AliasProject is the project Alias is looked up in; empty means the
	// execution's own. A name never resolves in a project nobody named.
	AliasProject string
	FunctionID   string
	Version      int
}

// Request is one execution to start.
type Request struct {
	// Project owns the execution.
	Project string
	// Functions is where Target.FunctionID may be: for an API caller, what
	// they may read (admins: any project, as upstream); for a webhook or a
	// job, its owner's project.
	Functions   db.Scope
	Target      Target
	Sync        bool
	Input       *string // as given; see NormaliseInput
	Description *string
	// Trigger is what started it (db.TriggerJob, db.TriggerWebhook); empty
	// is the API (db.TriggerAPI). Usage notifications report it.
	Trigger string
}

// engineWait bounds recording an engine's failure once the caller is gone.
const engineWait = 10 * time.Second

// Start records the execution and hands it to an engine: a call for a sync
// execution, which then comes back finished, and a cast for an async one,
// which comes back running. An engine that fails ends the execution as
// error and Start still returns it, as upstream answered 201; only an
// unreachable engine (kind unavailable) is returned as an error, so that
// clients know to retry. The execution is then removed when the request
// certainly never left (rpc.ErrNotSent), else recorded as error: an engine
// may have it.
func (s *Starter) Start(ctx context.Context, req Request) (*db.Execution, error) {
	e := &db.Execution{
		Base:        db.Base{ProjectID: req.Project},
		Description: req.Description,
		Status:      db.StatusRunning,
		Sync:        req.Sync,
		Input:       NormaliseInput(req.Input),
	}
	if e.Trigger = &req.Trigger; req.Trigger == "" {
		api := db.TriggerAPI
		e.Trigger = &api
	}
	if user := reqctx.From(ctx).UserID; user != "" {
		e.UserID = &user
	}
	r, err := s.resolve(ctx, req, e)
	if err == nil {
		err = s.admit(ctx, r, e.FunctionVersion, req.Project)
	}
	var f *db.Function
	if err == nil {
		f = &r.Function
		err = s.DB.CreateCountedExecution(ctx, e)
	}
	if err != nil {
		s.Metrics.ExecutionRejected(string(errdefs.KindOf(err)))
		return nil, err
	}
	var input json.RawMessage
	if e.Input != nil {
		input = json.RawMessage(*e.Input)
	}
	args := engine.ExecutionArgs{ExecutionID: e.ID, FunctionID: f.ID, FunctionVersion: e.FunctionVersion, Input: input}
	if e.Sync {
		// The rows as read and inserted, so that the engine need not read
		// them again (engine.ExecutionArgs); the input travels once.
		sent := *e
		sent.Input = nil
		args.Function, args.Execution = f, &sent
	}
	out, err := s.Engine.CreateExecution(ctx, args, e.Sync)
	if err != nil {
		reqctx.Logger(ctx, s.Log).Error("engine did not run the execution", "execution_id", e.ID, "error", err)
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), engineWait)
		defer cancel()
		// A request no engine can ever receive was refused, not run: the
		// caller is told to try again, and nothing of it is kept, counted
		// or billed.
		if errors.Is(err, rpc.ErrNotSent) && s.DB.WithdrawExecution(sctx, e.ID, f.ID, e.FunctionVersion) == nil {
			s.Metrics.ExecutionRejected(string(errdefs.KindOf(err)))
			return nil, err
		}
		result := mustJSON(map[string]any{"output": "Function execution failed: " + errdefs.PublicMessage(err), "duration": 0})
		if ended, _ := s.DB.FinishExecution(sctx, e.ID, db.StatusError, &result, nil); ended {
			s.Metrics.ExecutionFinished(metrics.Finished{ProjectID: e.ProjectID, FunctionID: f.ID, Status: db.StatusError, Reason: string(errdefs.KindOf(err))})
		}
		if errdefs.KindOf(err) == errdefs.KindUnavailable {
			return nil, err
		}
	}
	if !e.Sync {
		return e, nil
	}
	if err == nil && out.Status != "" {
		// What the engine stored: the row as inserted, ended.
		e.Status, e.Result, e.UpdatedAt = out.Status, out.Result, &out.UpdatedAt
		return e, nil
	}
	// The engine has written the outcome; read it even if the caller left.
	return s.DB.Execution(context.WithoutCancel(ctx), db.Internal, e.ID)
}

// admit refuses an execution beyond the bounds on waiting work: the
// engines queue what their workers cannot take yet, and the queue must not
// grow without end (an unauthenticated webhook caller could make it).
// The counts were read with the function (bounded, resolve).
func (s *Starter) admit(ctx context.Context, r *db.Runnable, version int, project string) error {
	if !s.bounded() {
		return nil
	}
	functionID, perFunction, perProject := r.ID, r.RunningOfFunction, r.RunningInProject
	if s.MaxPerFunction > 0 && perFunction >= s.MaxPerFunction {
		reqctx.Logger(ctx, s.Log).Warn("execution refused: function's queue full", "function_id", functionID, "version", version, "running", perFunction)
		return errdefs.TooMany(retryAfter, "Function %s (version %d) already has %d executions running or waiting for a worker, its limit; try again later.", functionID, version, perFunction)
	}
	if s.MaxPerProject > 0 && perProject >= s.MaxPerProject {
		reqctx.Logger(ctx, s.Log).Warn("execution refused: project's queue full", "project_id", project, "running", perProject)
		return errdefs.TooMany(retryAfter, "Project %s already has %d executions running or waiting for a worker, its limit; try again later.", project, perProject)
	}
	return nil
}

// bounded reports whether admit bounds the running executions at all.
func (s *Starter) bounded() bool { return s.MaxPerFunction > 0 || s.MaxPerProject > 0 }

// resolve fills e's function, version and alias from the request's target
// and returns the function once it is known to be able to run, read in one
// statement with its runtime's status and, if admit needs them, the
// running counts (db.RunnableFunction). Nothing of it is kept for the
// next execution: an updated or deleted function, a runtime no longer
// available and a changed project are each seen at once.
func (s *Starter) resolve(ctx context.Context, req Request, e *db.Execution) (*db.Runnable, error) {
	t := req.Target
	switch {
	case t.Alias != "":
		project := t.AliasProject
		if project == "" {
			project = req.Project
		}
		a, err := s.DB.FunctionAlias(ctx, project, t.Alias)
		if err != nil {
			return nil, err
		}
		e.FunctionID, e.FunctionVersion, e.FunctionAlias = &a.FunctionID, a.FunctionVersion, &a.Name
	case t.FunctionID != "":
		id := t.FunctionID
		e.FunctionID, e.FunctionVersion = &id, t.Version
	default:
		return nil, errdefs.Invalid("Either function_alias or function_id must be provided.")
	}
	if e.FunctionVersion < 0 {
		return nil, errdefs.Invalid("function_version must not be negative.")
	}
	f, err := s.DB.RunnableFunction(ctx, req.Functions, *e.FunctionID, e.FunctionVersion, req.Project, s.bounded())
	if err != nil {
		return nil, err
	}
	// Image functions have no runtime.
	if err := f.CheckRuntime(); err != nil {
		return nil, err
	}
	if e.FunctionVersion > 0 {
		if f.ParsedCode().Source != db.SourcePackage {
			return nil, errdefs.Invalid("Versions exist only for package type functions.")
		}
		if _, err := s.DB.FunctionVersion(ctx, db.Internal, f.ID, e.FunctionVersion); err != nil {
			return nil, errdefs.NotFound("FunctionVersion not found [function_id=%s, version_number=%d]", f.ID, e.FunctionVersion)
		}
	}
	return f, nil
}

// PositionalKey carries a non-object input as the function's single
// positional argument, upstream's convention shared with the runtimes.
const PositionalKey = "__function_input"

// NormaliseInput turns an execution's input string into the stored JSON
// object: an object stays as it is; anything else (a number, a bare word, a
// JSON string or list) becomes the positional argument. Upstream answered
// 500 for strings, floats, booleans and lists.
func NormaliseInput(in *string) *string {
	if in == nil || *in == "" {
		return nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal([]byte(*in), &obj); err == nil && obj != nil {
		// Kept as typed, so the user reads back exactly what they sent.
		return in
	}
	s := mustJSON(map[string]string{PositionalKey: *in})
	return &s
}

// mustJSON encodes maps of strings and numbers, which cannot fail.
func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// Trigger is one run of a stored trigger, a webhook or a job, which names
// its function by alias (resolved at each run, so re-pointing the alias
// changes what runs) or by id and version.
type Trigger struct {
	Project     string // the trigger's owner, who owns the execution
	RequestID   string // for the logs of the run
	Alias       *string
	FunctionID  *string
	Version     int
	Input       *string
	Description string
	// Kind is db.TriggerJob or db.TriggerWebhook.
	Kind string
}

// StartTriggered starts a trigger's run: asynchronous, as its owner — their
// project and nothing else, whoever invoked the trigger.
func (s *Starter) StartTriggered(ctx context.Context, tr Trigger) (*db.Execution, error) {
	owner := reqctx.Identity{RequestID: tr.RequestID, ProjectID: tr.Project, AuthEnabled: true}
	req := Request{
		Project:     tr.Project,
		Functions:   db.Scope{ProjectID: tr.Project},
		Input:       tr.Input,
		Description: &tr.Description,
		Trigger:     tr.Kind,
	}
	switch {
	case tr.Alias != nil:
		req.Target.Alias = *tr.Alias
	case tr.FunctionID != nil:
		req.Target = Target{FunctionID: *tr.FunctionID, Version: tr.Version}
	}
	return s.Start(reqctx.With(ctx, owner), req)
}
