// Package etcd is the coordination backend on etcd v3: worker records under
// /qinling/workers/<function>/<version>/<worker>, and locks and engine
// registrations (/qinling/engines/<engine>) held through a lease, so a
// crashed engine's locks and registration expire after the lease TTL.
package etcd

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/qinling-go/qinling/pkg/coord"
	"github.com/qinling-go/qinling/pkg/errdefs"
)

const (
	workersPrefix = "/qinling/workers/"
	locksPrefix   = "/qinling/locks/"
	enginesPrefix = "/qinling/engines/"
)

// Config says how to reach etcd.
type Config struct {
	Endpoints   []string
	TLS         *tls.Config
	DialTimeout time.Duration
	LockTTL     time.Duration
}

// Coordinator implements coord.Coordinator on etcd.
type Coordinator struct {
	cli *clientv3.Client
	ttl int

	mu      sync.Mutex
	session *concurrency.Session
	local   coord.KeyedMutex // etcd's mutex is re-entrant within one lease

	// registered are the engines Register announced; they are put again
	// under every new lease.
	registered []string
	watching   bool
	// workers and engines mirror the worker records and the engine
	// registrations (mirror.go).
	workers   *mirror[coord.WorkerRecord]
	engines   *mirror[string]
	closed    chan struct{}
	closeOnce sync.Once
}

var _ coord.Coordinator = (*Coordinator)(nil)

// New connects to etcd and checks it answers.
func New(ctx context.Context, cfg Config) (*Coordinator, error) {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   cfg.Endpoints,
		TLS:         cfg.TLS,
		DialTimeout: cfg.DialTimeout,
		// Without this a dead etcd makes calls hang until their context ends
		// instead of failing fast.
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 5 * time.Second,
		Logger:               nil,
	})
	if err != nil {
		return nil, fmt.Errorf("etcd %v: %w", cfg.Endpoints, err)
	}
	pctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()
	if _, err := cli.Get(pctx, "/qinling/ping"); err != nil {
		cli.Close()
		return nil, fmt.Errorf("etcd %v: %w", cfg.Endpoints, err)
	}
	ttl := int(cfg.LockTTL / time.Second)
	if ttl < 1 {
		ttl = 30
	}
	c := &Coordinator{cli: cli, ttl: ttl, closed: make(chan struct{}), workers: workersMirror(), engines: enginesMirror()}
	go c.workers.run(cli, c.closed)
	go c.engines.run(cli, c.closed)
	return c, nil
}

func workerDir(fv coord.FunctionVersion) string {
	// The trailing slash keeps version 1 from matching version 10.
	return fmt.Sprintf("%s%s/%d/", workersPrefix, fv.FunctionID, fv.Version)
}

func unavailable(err error) error {
	return errdefs.Wrap(errdefs.KindUnavailable, err, "Coordination service (etcd) is unavailable.")
}

// Workers lists the workers of fv, oldest first.
func (c *Coordinator) Workers(ctx context.Context, fv coord.FunctionVersion) ([]coord.WorkerRecord, error) {
	if out, ok := c.workers.list(workerDir(fv)); ok {
		return out, nil
	}
	resp, err := c.cli.Get(ctx, workerDir(fv), clientv3.WithPrefix(),
		clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend))
	if err != nil {
		return nil, unavailable(err)
	}
	out := make([]coord.WorkerRecord, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var w coord.WorkerRecord
		if err := json.Unmarshal(kv.Value, &w); err != nil {
			continue // not ours; never fail a listing over one bad key
		}
		out = append(out, w)
	}
	return out, nil
}

// AddWorker records w under fv.
func (c *Coordinator) AddWorker(ctx context.Context, fv coord.FunctionVersion, w coord.WorkerRecord) error {
	b, err := json.Marshal(w)
	if err != nil {
		return err
	}
	resp, err := c.cli.Put(ctx, workerDir(fv)+w.Name, string(b))
	if err != nil {
		return unavailable(err)
	}
	c.workers.noteWrite(resp.Header.Revision)
	return nil
}

// RemoveWorker forgets one worker.
func (c *Coordinator) RemoveWorker(ctx context.Context, fv coord.FunctionVersion, name string) error {
	return c.deleteWorkers(ctx, workerDir(fv)+name)
}

// deleteWorkers deletes the worker records key names, or with opts all
// under it.
func (c *Coordinator) deleteWorkers(ctx context.Context, key string, opts ...clientv3.OpOption) error {
	resp, err := c.cli.Delete(ctx, key, opts...)
	if err != nil {
		return unavailable(err)
	}
	if resp.Deleted > 0 {
		c.workers.noteWrite(resp.Header.Revision)
	}
	return nil
}

// DeleteFunction forgets every worker of fv.
func (c *Coordinator) DeleteFunction(ctx context.Context, fv coord.FunctionVersion) error {
	return c.deleteWorkers(ctx, workerDir(fv), clientv3.WithPrefix())
}

// Functions lists function versions with workers.
func (c *Coordinator) Functions(ctx context.Context) ([]coord.FunctionVersion, error) {
	resp, err := c.cli.Get(ctx, workersPrefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, unavailable(err)
	}
	seen := map[coord.FunctionVersion]bool{}
	var out []coord.FunctionVersion
	for _, kv := range resp.Kvs {
		parts := strings.Split(strings.TrimPrefix(string(kv.Key), workersPrefix), "/")
		if len(parts) != 3 {
			continue
		}
		v, err := strconv.Atoi(parts[1])
		if err != nil {
			continue
		}
		fv := coord.FunctionVersion{FunctionID: parts[0], Version: v}
		if !seen[fv] {
			seen[fv] = true
			out = append(out, fv)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].FunctionID != out[j].FunctionID {
			return out[i].FunctionID < out[j].FunctionID
		}
		return out[i].Version < out[j].Version
	})
	return out, nil
}

// currentSession returns the lease-backed session, making a new one when the
// old lease was lost (etcd restarted, or the keep-alives stopped for a TTL).
func (c *Coordinator) currentSession() (*concurrency.Session, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.session != nil {
		select {
		case <-c.session.Done():
			c.session = nil
		default:
			return c.session, nil
		}
	}
	s, err := concurrency.NewSession(c.cli, concurrency.WithTTL(c.ttl))
	if err != nil {
		return nil, unavailable(err)
	}
	c.session = s
	return s, nil
}

// Lock takes the named lock.
func (c *Coordinator) Lock(ctx context.Context, name string) (func(), error) {
	localUnlock, err := c.local.Lock(ctx, name)
	if err != nil {
		return nil, errdefs.Wrap(errdefs.KindConflict, err, "Etcd lock failed")
	}
	s, err := c.currentSession()
	if err != nil {
		localUnlock()
		return nil, err
	}
	m := concurrency.NewMutex(s, locksPrefix+name)
	if err := m.Lock(ctx); err != nil {
		localUnlock()
		if ctx.Err() != nil {
			return nil, errdefs.Wrap(errdefs.KindConflict, err, "Etcd lock failed")
		}
		return nil, unavailable(err)
	}
	return func() {
		uctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		// If this fails the lease still expires the lock.
		_ = m.Unlock(uctx)
		localUnlock()
	}, nil
}

// Register puts the engine's key under this process's lease. Should the
// lease be lost while the process lives (etcd unreachable for longer than
// the TTL), the key is put again under the next one.
func (c *Coordinator) Register(ctx context.Context, engine string) error {
	s, err := c.currentSession()
	if err != nil {
		return err
	}
	resp, err := c.cli.Put(ctx, enginesPrefix+engine, engine, clientv3.WithLease(s.Lease()))
	if err != nil {
		return unavailable(err)
	}
	c.engines.noteWrite(resp.Header.Revision)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.registered = append(c.registered, engine)
	if !c.watching {
		c.watching = true
		go c.keepRegistered(s)
	}
	return nil
}

// keepRegistered waits for the lease of s to end and registers again under a
// new one, until the coordinator closes.
func (c *Coordinator) keepRegistered(s *concurrency.Session) {
	for {
		select {
		case <-c.closed:
			return
		case <-s.Done():
		}
		for {
			select {
			case <-c.closed:
				return
			default:
			}
			next, err := c.reregister()
			if err == nil {
				s = next
				break
			}
			select {
			case <-c.closed:
				return
			case <-time.After(time.Second):
			}
		}
	}
}

func (c *Coordinator) reregister() (*concurrency.Session, error) {
	s, err := c.currentSession()
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	engines := append([]string(nil), c.registered...)
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, e := range engines {
		resp, err := c.cli.Put(ctx, enginesPrefix+e, e, clientv3.WithLease(s.Lease()))
		if err != nil {
			return nil, err
		}
		c.engines.noteWrite(resp.Header.Revision)
	}
	return s, nil
}

// RecentEngines lists the engines whose lease is alive as the mirror last
// saw them (mirror.go), or as Engines does when it cannot answer.
func (c *Coordinator) RecentEngines(ctx context.Context) ([]string, error) {
	if out, ok := c.engines.list(enginesPrefix); ok {
		slices.Sort(out)
		return out, nil
	}
	return c.Engines(ctx)
}

// Engines lists the engines whose lease is alive, read from etcd itself.
func (c *Coordinator) Engines(ctx context.Context) ([]string, error) {
	resp, err := c.cli.Get(ctx, enginesPrefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, unavailable(err)
	}
	out := make([]string, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		out = append(out, strings.TrimPrefix(string(kv.Key), enginesPrefix))
	}
	sort.Strings(out)
	return out, nil
}

// Close releases the lease (and so every lock and registration) and the
// connection.
func (c *Coordinator) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	c.mu.Lock()
	if c.session != nil {
		c.session.Close()
		c.session = nil
	}
	c.mu.Unlock()
	return c.cli.Close()
}

// Abandon drops the connection without revoking the lease, as a crash would;
// tests use it to show locks expire.
func (c *Coordinator) Abandon() {
	c.closeOnce.Do(func() { close(c.closed) })
	c.mu.Lock()
	c.session = nil
	c.mu.Unlock()
	c.cli.Close()
}
