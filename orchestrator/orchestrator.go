// Package orchestrator defines how the engine gets function workers: a pool of
// prewarmed runtime workers per runtime, specialised on demand for one
// (function, version), and executions run on them. Backends live in
// subpackages (local, kubernetes); pkg/backends picks one by name.
package orchestrator

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"time"
)

// Orchestrator runs function workers. Implementations must be safe for
// concurrent use. Worker bookkeeping per function (which workers serve which
// function version) belongs to the engine, which keeps it in etcd; the
// orchestrator only creates, runs and destroys workers.
type Orchestrator interface {
	// CreatePool prepares the prewarmed pool for a runtime and returns when it
	// is ready. An image the backend cannot run is an error whose message says why.
	CreatePool(ctx context.Context, rt Runtime) error
	// DeletePool stops every worker of the runtime, free or specialised.
	DeletePool(ctx context.Context, runtimeID string) error
	// Pool reports the pool's capacity; ErrPoolNotFound if there is none.
	Pool(ctx context.Context, runtimeID string) (Capacity, error)
	// ScaleUp specialises count workers for fn (its package delivered, ready to
	// run) and returns them.
	ScaleUp(ctx context.Context, fn Function, count int) ([]Worker, error)
	// Run executes one invocation on a worker previously returned by ScaleUp.
	// A function that fails or times out is a Result with Success false, not an
	// error; errors mean the worker could not be used (ErrWorkerNotFound: it is
	// gone and nothing ran; ErrWorkerLost: it died while running).
	//
	// Run applies inv's CPU and MemorySize when they differ from the limits
	// the worker was specialised with, so an execution runs under its
	// function's limits as they are when it starts. The API deletes the
	// workers of a function's version 0 before it answers an update of its
	// code, entry, cpu or memory_size (qinling-api/internal/api/function.go),
	// so the next execution of the function gets a worker specialised from
	// the new row; the workers of its numbered versions are kept, and Run is
	// what moves them to the new limits. The local backend rewrites the
	// worker's cgroup before the call. The Kubernetes backend asks for an
	// in-place resize of the pod before the call (where the cluster can
	// resize pods, as at ScaleUp); the kubelet applies it asynchronously, so
	// the execution may start before the pod has its new limits.
	Run(ctx context.Context, w Worker, inv Invocation) (Result, error)
	// DeleteWorker stops one worker; unknown names are not an error.
	DeleteWorker(ctx context.Context, w Worker) error
	// DeleteFunction stops every worker specialised for (functionID, version)
	// and returns their capacity to the pool.
	DeleteFunction(ctx context.Context, functionID string, version int) error
	// Close stops everything the orchestrator started.
	Close() error
}

// EngineLocal is implemented by backends whose workers can only be used by
// the engine that created them (the local orchestrator: processes on that
// engine's machine). The engine then runs executions only on its own
// workers and measures their load by its own executions in flight, while
// the worker records stay shared for listing, scaling down and expiry.
type EngineLocal interface {
	EngineLocal()
}

// PoolUpdater is implemented by backends that can move an existing pool to
// a runtime's new image in place (Kubernetes: a rolling update of the pool's
// Deployment, so free workers are replaced gradually and the pool never
// stands empty). The engine then updates a runtime with UpdatePool, and
// rolls back with UpdatePool to the previous image when it fails, instead
// of deleting the pool and creating it again.
type PoolUpdater interface {
	// UpdatePool moves the pool to rt.Image and returns once the free
	// workers run it; an image that cannot run is an error whose message
	// says why.
	UpdatePool(ctx context.Context, rt Runtime) error
}

// ImageRunner is implemented by backends that run image functions
// (upstream's "image" code source): every execution is a fresh container
// of the function's own image, which runs to completion. Backends without
// it cannot run image functions, and the API refuses to create them.
type ImageRunner interface {
	// RunImage runs one execution of an image function. As with Run, a
	// container that fails or times out is a Result with Success false;
	// errors mean the execution could not be started or observed.
	RunImage(ctx context.Context, inv ImageInvocation) (Result, error)
}

// ImageInvocation is one execution of an image function.
type ImageInvocation struct {
	ExecutionID string
	FunctionID  string
	Image       string
	// Args are the container's arguments (upstream: the raw string input
	// split on whitespace; none without input).
	Args []string
	// CPU in millicores and MemorySize in bytes: the container's requests
	// and limits.
	CPU        int
	MemorySize int64
	Timeout    time.Duration
	RequestID  string
}

// Runtime is what a pool is built from.
type Runtime struct {
	ID      string
	Image   string
	Trusted bool
}

// Capacity of a runtime's pool.
type Capacity struct {
	Total     int `json:"total"`
	Available int `json:"available"`
}

// Function is what a worker is specialised for.
type Function struct {
	ID string
	// ProjectID owns the function (the local orchestrator's package cache
	// bounds what one project's packages take).
	ProjectID string
	Version   int
	RuntimeID string
	Entry     string
	// CPU in millicores and MemorySize in bytes, as the API stores them.
	CPU        int
	MemorySize int64
	Timeout    time.Duration
	Package    Package
}

// Package says how a worker gets the function's code.
type Package struct {
	// MD5 is the zip's checksum when known (empty for a function version's
	// package: the engine does not record it).
	MD5 string
	// Open returns the zip; backends that deliver the package themselves use it.
	Open func(ctx context.Context) (io.ReadCloser, error)
	// DownloadURL is where a remote worker can fetch the zip (upstream's sidecar).
	DownloadURL string
}

// Worker is one specialised worker. Name is unique within the backend; Address
// is how Run reaches it ("unix:///path/to/sock" or "http://host:port").
type Worker struct {
	Name    string `json:"name"`
	Address string `json:"address"`
}

// Invocation is one execution request, as upstream's /execute body, with
// the function's limits as they are now (see Orchestrator.Run).
type Invocation struct {
	ExecutionID string
	FunctionID  string
	Version     int
	Entry       string
	// Input is a JSON object or null; upstream's positional argument travels
	// as {"__function_input": "<raw>"}.
	Input      json.RawMessage
	CPU        int
	MemorySize int64
	Timeout    time.Duration
	RequestID  string
}

// Result of an execution as the worker reported it.
type Result struct {
	Success bool
	// Output is the function's return value, or the failure message.
	Output   json.RawMessage
	Duration float64 // seconds
	Logs     string
	// Timing holds the phases the worker measured itself, in milliseconds
	// (for instance how long it waited for a process to run the call in);
	// nil if it reports none. Informative only.
	Timing map[string]float64
	// CPUTime and PeakMemory (bytes) are what the worker's processes used
	// during the execution, where the backend can tell; zero is unknown.
	CPUTime    time.Duration
	PeakMemory int64
}

// Errors returned by backends; compare with errors.Is.
var (
	ErrPoolNotFound     = errors.New("orchestrator: pool not found")
	ErrNoCapacity       = errors.New("orchestrator: not enough workers available")
	ErrWorkerNotFound   = errors.New("orchestrator: worker not found")
	ErrWorkerLost       = errors.New("orchestrator: worker died during the execution")
	ErrImageNotRunnable = errors.New("orchestrator: image cannot be run by this orchestrator")
)

// ImageBaseName is an image reference without its registry, path, tag and
// digest: "openstackqinling/python3-runtime:0.0.2" is "python3-runtime".
// Backends use it to tell which runtime server an image holds.
func ImageBaseName(image string) string {
	name := strings.TrimSpace(image)
	if i := strings.IndexByte(name, '@'); i >= 0 { // digest
		name = name[:i]
	}
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	if i := strings.IndexByte(name, ':'); i >= 0 { // tag; a registry port sat before the last '/'
		name = name[:i]
	}
	return name
}
