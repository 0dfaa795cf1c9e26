// Package coord is the engines' shared memory: which workers serve which
// function version, locks that serialise scaling decisions across engines,
// and which engines are alive.
// The etcd backend (pkg/coord/etcd) is used by every deployment (the
// all-in-one runs an embedded etcd); pkg/coord/memory is the unit-test fake.
package coord

import (
	"context"
)

// WorkerRecord is one worker serving a function version.
type WorkerRecord struct {
	Name    string `json:"name"`
	Address string `json:"address"`
	// Owner names the engine whose orchestrator created the worker.
	Owner string `json:"owner,omitempty"`
}

// FunctionVersion identifies the workers' key space of one function version.
type FunctionVersion struct {
	FunctionID string
	Version    int
}

// Coordinator is implemented by every coordination backend; safe for
// concurrent use.
type Coordinator interface {
	// Workers lists the workers of a function version, oldest first.
	Workers(ctx context.Context, fv FunctionVersion) ([]WorkerRecord, error)
	// AddWorker records a worker; re-adding the same name overwrites it.
	AddWorker(ctx context.Context, fv FunctionVersion, w WorkerRecord) error
	// RemoveWorker forgets one worker; unknown names are not an error.
	RemoveWorker(ctx context.Context, fv FunctionVersion, name string) error
	// DeleteFunction forgets every worker of exactly this function version
	// (upstream's prefix delete also hit version 10 when deleting version 1).
	DeleteFunction(ctx context.Context, fv FunctionVersion) error
	// Functions lists the function versions that have at least one worker.
	Functions(ctx context.Context) ([]FunctionVersion, error)
	// Lock takes the named lock, waiting until ctx ends. The lock is tied to
	// this process's lease, so a crashed engine's locks expire by themselves.
	Lock(ctx context.Context, name string) (unlock func(), err error)
	// Register announces an engine instance as alive for as long as this
	// coordinator lives: the registration hangs off the same lease as the
	// locks, so a crashed engine's one expires by itself, and a closed
	// coordinator's goes at once.
	Register(ctx context.Context, engine string) error
	// Engines lists the registered (live) engine instances, sorted, as of
	// the call: what decides to end another engine's work (recovery) reads
	// this.
	Engines(ctx context.Context) ([]string, error)
	// RecentEngines is Engines as this process last saw it, with no round
	// trip: it always includes this process's own registrations, but may
	// lag another engine's registration or lease end by the time its news
	// takes to arrive. For routing (pkg/engine/route.go), where a stale
	// answer costs an execution a detour, never a wrong end.
	RecentEngines(ctx context.Context) ([]string, error)
	Close() error
}
