package workerclient

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// An execution on a unix-socket worker (the local orchestrator's) runs in
// the goroutine that asks for it: the request is written and the answer read
// by that goroutine on a kept-alive connection, bounded by a deadline on the
// connection. net/http's Transport hands each round trip to two goroutines
// of its own (a writer and a reader per connection) and back, plus a timer
// for the deadline; each hand-over wakes another thread, and on a small VM
// those wake-ups cost more CPU than the call itself (docs/benchmarks.md,
// "The warm path: hand-overs"). The answer is still parsed by net/http
// (http.ReadResponse). Control requests (ping, preload, package) and TCP
// workers keep net/http's Transport.

// unixPool keeps idle connections to unix-socket workers, per socket path.
type unixPool struct {
	dial    func(ctx context.Context, path string) (net.Conn, error)
	maxIdle int           // per socket
	idleFor time.Duration // an idle connection older than this is closed

	mu    sync.Mutex
	idle  map[string][]*unixConn // most recently used last
	sweep *time.Timer            // runs while idle connections exist
}

type unixConn struct {
	net.Conn
	br    *bufio.Reader
	since time.Time // idle since
}

func newUnixPool(dial func(ctx context.Context, path string) (net.Conn, error), maxIdle int, idleFor time.Duration) *unixPool {
	return &unixPool{dial: dial, maxIdle: maxIdle, idleFor: idleFor, idle: map[string][]*unixConn{}}
}

// get returns an idle connection to path that is still good (reused), or a
// new one.
func (p *unixPool) get(ctx context.Context, path string) (c *unixConn, reused bool, err error) {
	for {
		p.mu.Lock()
		list := p.idle[path]
		if len(list) == 0 {
			p.mu.Unlock()
			break
		}
		c = list[len(list)-1]
		list[len(list)-1] = nil
		p.idle[path] = list[:len(list)-1]
		p.mu.Unlock()
		// A connection the worker closed, or on which it sent something
		// unasked (it is then not to be trusted with the next answer),
		// is thrown away.
		if time.Since(c.since) < p.idleFor && c.br.Buffered() == 0 && quiet(c.Conn) {
			return c, true, nil
		}
		_ = c.Close()
	}
	nc, err := p.dial(ctx, path)
	if err != nil {
		return nil, false, err
	}
	return &unixConn{Conn: nc, br: bufio.NewReader(nc)}, false, nil
}

// put keeps c, whose last answer was read to its end, for the next call.
func (p *unixPool) put(path string, c *unixConn) {
	if c.SetDeadline(time.Time{}) != nil {
		_ = c.Close()
		return
	}
	c.since = time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.idle[path]) >= p.maxIdle {
		_ = c.Close()
		return
	}
	p.idle[path] = append(p.idle[path], c)
	if p.sweep == nil {
		p.sweep = time.AfterFunc(p.idleFor, p.expire)
	}
}

// expire closes the connections idle for longer than idleFor (those of a
// worker that went, above all) and runs again while some are left.
func (p *unixPool) expire() {
	p.mu.Lock()
	defer p.mu.Unlock()
	cutoff := time.Now().Add(-p.idleFor)
	for path, list := range p.idle {
		kept := list[:0]
		for _, c := range list {
			if c.since.Before(cutoff) {
				_ = c.Close()
				continue
			}
			kept = append(kept, c)
		}
		clear(list[len(kept):])
		if len(kept) == 0 {
			delete(p.idle, path)
		} else {
			p.idle[path] = kept
		}
	}
	p.sweep = nil
	if len(p.idle) > 0 {
		p.sweep = time.AfterFunc(p.idleFor, p.expire)
	}
}

// closeIdle closes every idle connection.
func (p *unixPool) closeIdle() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, list := range p.idle {
		for _, c := range list {
			_ = c.Close()
		}
	}
	clear(p.idle)
}

// errStale is a write that failed on a reused connection before anything
// was sent: the worker had closed it while idle.
var errStale = errors.New("idle connection closed by the worker")

// roundTrip sends req to the worker at path and returns its answer, read
// by this goroutine. Writing and reading end at deadline, or when ctx ends
// (the connection's deadline is then moved to the past). Once the answer's
// body is read to its end and closed, the connection is kept for the next
// call; an answer not read to its end closes it.
func (p *unixPool) roundTrip(ctx context.Context, path string, req *http.Request, deadline time.Time) (*http.Response, error) {
	var wire bytes.Buffer
	if err := req.Write(&wire); err != nil {
		return nil, err
	}
	for {
		c, reused, err := p.get(ctx, path)
		if err != nil {
			return nil, err
		}
		resp, err := p.exchange(ctx, path, c, wire.Bytes(), deadline, reused)
		if errors.Is(err, errStale) {
			continue // nothing was sent: another connection, or a new one
		}
		return resp, err
	}
}

func (p *unixPool) exchange(ctx context.Context, path string, c *unixConn, wire []byte, deadline time.Time, reused bool) (*http.Response, error) {
	if err := c.SetDeadline(deadline); err != nil {
		_ = c.Close()
		return nil, err
	}
	// No goroutine and no timer unless ctx ends: then the blocked read or
	// write returns at once.
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	n, err := c.Write(wire)
	if err != nil {
		stop()
		_ = c.Close()
		if reused && n == 0 && ctx.Err() == nil && !errors.Is(err, net.ErrClosed) && !isTimeout(err) {
			return nil, errStale
		}
		return nil, err
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		stop()
		_ = c.Close()
		return nil, err
	}
	resp.Body = &unixBody{body: resp.Body, pool: p, path: path, conn: c, stop: stop, keep: !resp.Close}
	return resp, nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// unixBody is an answer's body; closing it hands its connection back to
// the pool when the body was read to its end, or closes it.
type unixBody struct {
	body   io.ReadCloser
	pool   *unixPool
	path   string
	conn   *unixConn
	stop   func() bool
	keep   bool // the worker keeps the connection open
	sawEOF bool
	failed bool
	closed bool
}

func (b *unixBody) Read(buf []byte) (int, error) {
	n, err := b.body.Read(buf)
	switch {
	case err == io.EOF:
		b.sawEOF = true
	case err != nil:
		b.failed = true
	}
	return n, err
}

func (b *unixBody) Close() error {
	if b.closed {
		return nil
	}
	b.closed = true
	// stop false: ctx ended and moved the deadline; the connection may be
	// half way through an answer.
	if b.stop() && b.keep && b.sawEOF && !b.failed {
		b.pool.put(b.path, b.conn)
		return nil
	}
	// The rest of the body is not read: the connection goes with it.
	return b.conn.Close()
}
