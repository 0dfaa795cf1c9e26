// Package workerclient speaks upstream Qinling's worker protocol (GET /ping,
// POST /execute; POST /package for remote workers) over HTTP, to workers reached by a unix socket
// ("unix:///abs/path.sock") or by TCP ("http://host:port"). Every backend whose
// workers serve HTTP shares it.
//
// Execution is the hot path of the whole service, so a Client keeps one
// keep-alive Transport per address kind for its lifetime and Execute does not
// ping first: a dead worker shows up as a dial error, which is reported as
// orchestrator.ErrWorkerNotFound so the caller can retry elsewhere.
package workerclient

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/qinling-go/qinling/orchestrator"
)

// ErrWorkerStuck is returned, together with a timeout Result, when a worker did
// not answer within the invocation's timeout plus the grace period. The
// function is reported as timed out; the worker must be killed, since it
// is no longer trusted to enforce timeouts.
var ErrWorkerStuck = errors.New("orchestrator: worker did not answer within the timeout")

// TimeoutOutput is upstream's output for an execution that ran out of time.
const TimeoutOutput = "Function execution timeout."

// unixPrefix marks an address that is a unix socket path.
const unixPrefix = "unix://"

// DefaultMaxResponseBytes bounds a worker's /execute answer when Options
// leaves it unset: the runtime caps logs and results at 1 MiB each by default,
// and JSON escaping can multiply that several times.
const DefaultMaxResponseBytes = 32 << 20

// noDeadlineTimeout is the answer deadline for an invocation without a timeout:
// upstream's engine reads worker answers for at most 180 s.
const noDeadlineTimeout = 180 * time.Second

// Options tune a Client; the zero value is usable.
type Options struct {
	// DialTimeout bounds connecting to a worker (default 3 s, as upstream).
	DialTimeout time.Duration
	// MaxResponseBytes bounds an /execute answer (default: room for
	// MaxResultBytes and MaxLogBytes, JSON-escaped, when they are set;
	// DefaultMaxResponseBytes otherwise).
	MaxResponseBytes int64
	// MaxResultBytes and MaxLogBytes, when positive, are the limits the
	// engine enforces on what a worker answers, whatever the runtime
	// claims (a function in a reuse worker controls its runtime; see
	// limits.go): a larger JSON result fails the execution, a longer log
	// is cut with a note.
	MaxResultBytes, MaxLogBytes int
	// MaxIdleConnsPerWorker is how many idle keep-alive connections are kept
	// per worker (default 16); concurrent executions on one worker each need
	// their own connection.
	MaxIdleConnsPerWorker int
	// Dial, if set, connects to "http://host:port" workers instead of a
	// plain TCP dial (tests map a pod's IP to a local worker with it).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// TokenHeader carries a worker's token (WithToken).
const TokenHeader = "X-Qinling-Worker-Token"

// Client reaches workers. It is safe for concurrent use; create one per
// process (or per backend) and reuse it.
type Client struct {
	unix    *http.Client
	direct  *unixPool // executions on unix-socket workers (unixconn.go)
	tcp     *http.Client
	maxResp int64
	limits  limits
	token   string
}

// WithToken returns a Client, sharing c's connections, whose requests carry
// token in TokenHeader: a runtime server on a network other workers reach
// (a pod's) serves only the engine that gave it its package with that
// token (runtimes/python3/_qinling_runtime/workertoken.py).
func (c *Client) WithToken(token string) *Client {
	cp := *c
	cp.token = token
	return &cp
}

// authorize adds the token, if any, to req.
func (c *Client) authorize(req *http.Request) {
	if c.token != "" {
		req.Header.Set(TokenHeader, c.token)
	}
}

// New returns a Client.
func New(opts Options) *Client {
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = 3 * time.Second
	}
	if opts.MaxResponseBytes <= 0 && opts.MaxResultBytes > 0 && opts.MaxLogBytes > 0 {
		// Logs may be JSON-escaped up to 6 bytes per byte; results are
		// measured as JSON already.
		opts.MaxResponseBytes = 6*int64(opts.MaxLogBytes) + int64(opts.MaxResultBytes) + 64<<10
	}
	if opts.MaxResponseBytes <= 0 {
		opts.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if opts.MaxIdleConnsPerWorker <= 0 {
		opts.MaxIdleConnsPerWorker = 16
	}
	dialer := &net.Dialer{Timeout: opts.DialTimeout}
	tcpDial := dialer.DialContext
	if opts.Dial != nil {
		tcpDial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			ctx, cancel := context.WithTimeout(ctx, opts.DialTimeout)
			defer cancel()
			return opts.Dial(ctx, network, addr)
		}
	}
	const idleFor = 60 * time.Second
	transport := func(dial func(ctx context.Context, network, addr string) (net.Conn, error)) *http.Transport {
		return &http.Transport{
			DialContext:         dial,
			MaxIdleConns:        0, // no global cap: the per-worker cap bounds it
			MaxIdleConnsPerHost: opts.MaxIdleConnsPerWorker,
			IdleConnTimeout:     idleFor,
			// Workers answer small JSON documents on a local link;
			// gzip would only cost CPU on both ends.
			DisableCompression: true,
		}
	}
	return &Client{
		direct: newUnixPool(func(ctx context.Context, path string) (net.Conn, error) {
			return dialUnix(ctx, dialer, path)
		}, opts.MaxIdleConnsPerWorker, idleFor),
		// The transport pools connections by URL host, so each socket gets
		// its own host name: the socket path, hex-encoded (see unixURL).
		// The dialer decodes it back; nothing is looked up in DNS.
		unix: &http.Client{Transport: transport(func(ctx context.Context, _, addr string) (net.Conn, error) {
			host, _, err := net.SplitHostPort(addr)
			if err != nil {
				host = addr
			}
			path, err := hex.DecodeString(host)
			if err != nil {
				return nil, fmt.Errorf("bad unix socket host %q: %w", host, err)
			}
			return dialUnix(ctx, dialer, string(path))
		})},
		tcp:     &http.Client{Transport: transport(tcpDial)},
		maxResp: opts.MaxResponseBytes,
		limits:  limits{result: opts.MaxResultBytes, log: opts.MaxLogBytes},
	}
}

// Close drops idle connections. The Client stays usable.
func (c *Client) Close() {
	c.unix.CloseIdleConnections()
	c.tcp.CloseIdleConnections()
	c.direct.closeIdle()
}

// target returns the HTTP client and URL for path on the worker at addr.
func (c *Client) target(addr, path string) (*http.Client, string, error) {
	switch {
	case strings.HasPrefix(addr, unixPrefix):
		sock := addr[len(unixPrefix):]
		if !strings.HasPrefix(sock, "/") {
			return nil, "", fmt.Errorf("worker address %q: unix socket path must be absolute", addr)
		}
		return c.unix, "http://" + hex.EncodeToString([]byte(sock)) + path, nil
	case strings.HasPrefix(addr, "http://"):
		return c.tcp, strings.TrimSuffix(addr, "/") + path, nil
	}
	return nil, "", fmt.Errorf("worker address %q: want unix:///path or http://host:port", addr)
}

// UnixAddress returns the worker address of a unix socket path.
func UnixAddress(sockPath string) string { return unixPrefix + sockPath }

// Ping checks that the worker at addr answers GET /ping with 200. A worker
// that cannot be reached or is draining is an error wrapping
// orchestrator.ErrWorkerNotFound.
func (c *Client) Ping(ctx context.Context, addr string) error {
	hc, url, err := c.target(addr, "/ping")
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("ping %s: %w", addr, err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		if isDialError(err) {
			return fmt.Errorf("ping %s: %w: %v", addr, orchestrator.ErrWorkerNotFound, err)
		}
		return fmt.Errorf("ping %s: %w", addr, err)
	}
	defer drainClose(resp.Body)
	switch resp.StatusCode {
	case http.StatusOK:
		return nil
	case http.StatusServiceUnavailable:
		return fmt.Errorf("ping %s: %w: worker draining", addr, orchestrator.ErrWorkerNotFound)
	}
	return fmt.Errorf("ping %s: unexpected status %s", addr, resp.Status)
}

// executeRequest is upstream's /execute body (engine/utils get_request_data),
// minus the sidecar and keystone fields the local runtime does not use.
type executeRequest struct {
	ExecutionID     string          `json:"execution_id"`
	FunctionID      string          `json:"function_id"`
	FunctionVersion int             `json:"function_version"`
	Entry           string          `json:"entry"`
	Input           json.RawMessage `json:"input"`
	Timeout         float64         `json:"timeout"`
	CPU             int             `json:"cpu"`
	MemorySize      int64           `json:"memory_size"`
	RequestID       string          `json:"request_id"`
}

// executeResponse is the runtime's answer. Success is a pointer because
// upstream treats a missing "success" as true.
type executeResponse struct {
	Output   json.RawMessage    `json:"output"`
	Duration float64            `json:"duration"`
	Logs     string             `json:"logs"`
	Success  *bool              `json:"success"`
	Timing   map[string]float64 `json:"timing"`
}

// nullJSON stands for an absent input, as upstream sends None.
var nullJSON = json.RawMessage("null")

// Execute runs inv on the worker at addr and returns what the worker answered.
//
// Errors say what happened to the worker:
//   - orchestrator.ErrWorkerNotFound: it could not be reached, or it is
//     draining (503); nothing ran and the caller may retry on another worker;
//   - orchestrator.ErrWorkerLost: the connection broke after the request was
//     sent, or the answer was not the protocol's JSON; the function may have run;
//   - ErrWorkerStuck: no answer within inv.Timeout+grace. The returned Result
//     is then upstream's timeout failure, ready to be reported as the outcome,
//     and the caller should kill the worker;
//   - the context's error if ctx ended first.
func (c *Client) Execute(ctx context.Context, addr string, inv orchestrator.Invocation, grace time.Duration) (orchestrator.Result, error) {
	hc, url, err := c.target(addr, "/execute")
	if err != nil {
		return orchestrator.Result{}, err
	}
	input := inv.Input
	if len(input) == 0 {
		input = nullJSON
	}
	body, err := json.Marshal(executeRequest{
		ExecutionID:     inv.ExecutionID,
		FunctionID:      inv.FunctionID,
		FunctionVersion: inv.Version,
		Entry:           inv.Entry,
		Input:           input,
		Timeout:         inv.Timeout.Seconds(),
		CPU:             inv.CPU,
		MemorySize:      inv.MemorySize,
		RequestID:       inv.RequestID,
	})
	if err != nil {
		return orchestrator.Result{}, fmt.Errorf("execute %s on %s: encode request: %w", inv.ExecutionID, addr, err)
	}

	limit := inv.Timeout
	if limit <= 0 {
		limit = noDeadlineTimeout
	}
	deadline := time.Now().Add(limit + grace)
	runCtx := ctx
	if hc != c.unix {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithDeadlineCause(ctx, deadline, ErrWorkerStuck)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(runCtx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return orchestrator.Result{}, fmt.Errorf("execute %s on %s: %w", inv.ExecutionID, addr, err)
	}
	req.Header.Set("Content-Type", "application/json")
	c.authorize(req)

	var resp *http.Response
	if hc == c.unix {
		resp, err = c.direct.roundTrip(ctx, addr[len(unixPrefix):], req, deadline)
	} else {
		resp, err = hc.Do(req)
	}
	if err != nil {
		return c.failure(ctx, runCtx, addr, inv, err)
	}
	defer drainClose(resp.Body)
	switch resp.StatusCode {
	case http.StatusServiceUnavailable:
		return orchestrator.Result{}, fmt.Errorf("execute %s on %s: %w: worker draining", inv.ExecutionID, addr, orchestrator.ErrWorkerNotFound)
	case http.StatusGone, http.StatusForbidden:
		// The address now belongs to a worker of another function (a pod
		// IP reused by a new pod), or to one that another engine's token
		// (or a stranger's) specialised: nothing ran, and this worker is
		// not ours.
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return orchestrator.Result{}, fmt.Errorf("execute %s on %s: %w: %s", inv.ExecutionID, addr, orchestrator.ErrWorkerNotFound, snippet(data))
	}
	// Upstream parses the JSON body whatever the status (the Node.js runtime
	// reports failures as 500 with the usual fields), so the status is only
	// used for the error detail.
	data, err := io.ReadAll(io.LimitReader(resp.Body, c.maxResp+1))
	if err != nil {
		return c.failure(ctx, runCtx, addr, inv, err)
	}
	if int64(len(data)) > c.maxResp {
		if c.limits.result > 0 {
			// Only a runtime the function took over answers this much:
			// its result (or log) is past the limit, the function's own
			// failure. The rest of the answer is not read (drainClose
			// gives up on the connection).
			return c.limits.oversized(c.maxResp), nil
		}
		return orchestrator.Result{}, fmt.Errorf("execute %s on %s: %w: answer larger than %d bytes", inv.ExecutionID, addr, orchestrator.ErrWorkerLost, c.maxResp)
	}
	var out executeResponse
	if err := json.Unmarshal(data, &out); err != nil {
		return orchestrator.Result{}, fmt.Errorf("execute %s on %s: %w: status %s, answer is not JSON (%v): %q",
			inv.ExecutionID, addr, orchestrator.ErrWorkerLost, resp.Status, err, snippet(data))
	}
	if out.Success == nil && resp.StatusCode != http.StatusOK {
		// Not an execution result but the runtime refusing the request (400
		// for a malformed body, 404 for a wrong path): our bug, not the
		// function's outcome, and the worker itself is fine.
		return orchestrator.Result{}, fmt.Errorf("execute %s on %s: worker refused the request: status %s: %q",
			inv.ExecutionID, addr, resp.Status, snippet(data))
	}
	res := orchestrator.Result{
		Success:  out.Success == nil || *out.Success,
		Output:   out.Output,
		Duration: out.Duration,
		Logs:     out.Logs,
		Timing:   out.Timing,
	}
	return c.limits.enforce(res), nil
}

// Preload is a /preload request: the level of preloading a worker with
// strict isolation should use, for the function it serves.
type Preload struct {
	Level           string  `json:"level"`
	FunctionID      string  `json:"function_id"`
	FunctionVersion int     `json:"function_version"`
	Entry           string  `json:"entry"`
	Timeout         float64 `json:"timeout"`
}

// PreloadResult is a worker's answer to /preload: the level in force
// (lower than asked if the function's modules could not be imported in
// advance, with the reason in Error; "reuse" for a worker without strict
// isolation).
type PreloadResult struct {
	Level string `json:"level"`
	Error string `json:"error"`
}

// Preload asks the worker at addr to switch its preload level. An
// unreachable worker is an error wrapping orchestrator.ErrWorkerNotFound.
func (c *Client) Preload(ctx context.Context, addr string, p Preload) (PreloadResult, error) {
	var res PreloadResult
	body, err := json.Marshal(p)
	if err != nil {
		return res, fmt.Errorf("preload on %s: %w", addr, err)
	}
	status, data, err := c.post(ctx, addr, "/preload", "application/json", body)
	if err != nil {
		return res, fmt.Errorf("preload on %s: %w", addr, err)
	}
	if status != http.StatusOK {
		return res, fmt.Errorf("preload on %s: status %d: %q", addr, status, snippet(data))
	}
	if err := json.Unmarshal(data, &res); err != nil {
		return res, fmt.Errorf("preload on %s: answer is not JSON (%v): %q", addr, err, snippet(data))
	}
	return res, nil
}

// post sends a small control request (not an execution) to the worker at
// addr and returns the status and up to 64 KiB of the answer. A worker that
// cannot be reached is an error wrapping orchestrator.ErrWorkerNotFound.
func (c *Client) post(ctx context.Context, addr, path, contentType string, body []byte) (int, []byte, error) {
	hc, u, err := c.target(addr, path)
	if err != nil {
		return 0, nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", contentType)
	c.authorize(req)
	resp, err := hc.Do(req)
	if err != nil {
		if isDialError(err) {
			return 0, nil, fmt.Errorf("%w: %v", orchestrator.ErrWorkerNotFound, err)
		}
		return 0, nil, err
	}
	defer drainClose(resp.Body)
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return 0, nil, err
	}
	return resp.StatusCode, data, nil
}

// Package is a function package pushed to a remote worker with Deliver.
type Package struct {
	FunctionID string
	Version    int
	// MD5 is the hex MD5 of Zip; the worker checks it.
	MD5 string
	Zip []byte
}

// Deliver pushes a function package to the worker at addr (POST /package,
// runtimes/python3/README.md), which extracts it and from then on serves
// only that function version. An unreachable worker is an error wrapping
// orchestrator.ErrWorkerNotFound; a refused package (bad zip, too large,
// checksum) is an error with the worker's reason.
func (c *Client) Deliver(ctx context.Context, addr string, p Package) error {
	q := url.Values{"function_id": {p.FunctionID}, "function_version": {strconv.Itoa(p.Version)}, "md5": {p.MD5}}
	status, data, err := c.post(ctx, addr, "/package?"+q.Encode(), "application/zip", p.Zip)
	if err != nil {
		return fmt.Errorf("deliver package to %s: %w", addr, err)
	}
	if status == http.StatusOK {
		return nil
	}
	var e struct {
		Error string `json:"error"`
	}
	msg := snippet(data)
	if json.Unmarshal(data, &e) == nil && e.Error != "" {
		msg = e.Error
	}
	if status == http.StatusServiceUnavailable || status == http.StatusGone || status == http.StatusForbidden {
		return fmt.Errorf("deliver package to %s: %w: %s", addr, orchestrator.ErrWorkerNotFound, msg)
	}
	return fmt.Errorf("deliver package to %s: %w", addr, &RefusedError{Status: status, Reason: msg})
}

// RefusedError is a worker's refusal of a package (bad zip, checksum, too
// large): the package's fault, not the worker's. Reason is the worker's.
type RefusedError struct {
	Status int
	Reason string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("worker refused it: status %d: %s", e.Status, e.Reason)
}

// failure classifies a transport error of Execute.
func (c *Client) failure(parent, runCtx context.Context, addr string, inv orchestrator.Invocation, err error) (orchestrator.Result, error) {
	switch {
	case parent.Err() != nil:
		return orchestrator.Result{}, fmt.Errorf("execute %s on %s: %w", inv.ExecutionID, addr, context.Cause(parent))
	case isDialError(err):
		// Before the deadline's case: a connection that timed out (a pod
		// whose address no longer answers, once evicted or deleted) sent
		// nothing, so the function did not run and another worker may
		// serve the call; it is not a function past its timeout.
		return orchestrator.Result{}, fmt.Errorf("execute %s on %s: %w: %v", inv.ExecutionID, addr, orchestrator.ErrWorkerNotFound, err)
	case context.Cause(runCtx) == ErrWorkerStuck || errors.Is(err, os.ErrDeadlineExceeded):
		// The deadline of the context (TCP workers) or of the connection
		// (unix-socket ones, unixconn.go); not the caller's, checked above.
		out, _ := json.Marshal(TimeoutOutput)
		return orchestrator.Result{Success: false, Output: out, Duration: inv.Timeout.Seconds()},
			fmt.Errorf("execute %s on %s: %w", inv.ExecutionID, addr, ErrWorkerStuck)
	}
	return orchestrator.Result{}, fmt.Errorf("execute %s on %s: %w: %v", inv.ExecutionID, addr, orchestrator.ErrWorkerLost, err)
}

// isDialError reports whether err happened while connecting, so no request
// reached the worker.
func isDialError(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	return errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED)
}

// drainClose reads a little of what is left so the connection can be reused.
func drainClose(body io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(body, 64<<10))
	_ = body.Close()
}

// snippet shortens a bad answer for an error message.
func snippet(b []byte) string {
	const max = 200
	if len(b) > max {
		return string(b[:max]) + "..."
	}
	return string(b)
}
