package etcd

import (
	"cmp"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/qinling-go/qinling/pkg/coord"
)

// mirror keeps the keys under one prefix in memory, fed by a watch, so that
// the reads asked on every execution — Workers, and RecentEngines on every
// routing decision — need no round trip to etcd (with the embedded etcd
// that round trip was a tenth of the all-in-one's CPU per execution,
// docs/benchmarks.md). It answers only while its watch is established and
// it has seen this coordinator's own last write under the prefix;
// otherwise the caller reads etcd as before. Another engine's change shows
// once its event arrives, as if the read had come that moment earlier:
// dispatch already copes with a worker that went (it tries another) and
// picks up a new one on the next read, and routing with a stale list of
// engines costs one execution a detour. Decisions that end another engine's
// work (recovery) read etcd itself (Engines).
type mirror[T any] struct {
	prefix string
	// dirOf is the group a key is listed in; decode its value (false: the
	// key is skipped, as a direct read skips it).
	dirOf  func(key string) string
	decode func(kv *mvccpb.KeyValue) (T, bool)

	mu     sync.Mutex
	synced bool
	rev    int64                 // the etcd revision the mirror reflects
	dirs   map[string][]entry[T] // dirOf(key) → its values, oldest first
	// wrote is the revision of this coordinator's last write under prefix.
	wrote atomic.Int64
}

type entry[T any] struct {
	key     string
	created int64 // create revision: listings are oldest first
	val     T
}

// workersMirror mirrors the worker records, listed per function version.
func workersMirror() *mirror[coord.WorkerRecord] {
	return &mirror[coord.WorkerRecord]{
		prefix: workersPrefix,
		dirOf:  func(key string) string { return key[:strings.LastIndexByte(key, '/')+1] },
		decode: func(kv *mvccpb.KeyValue) (w coord.WorkerRecord, ok bool) {
			return w, json.Unmarshal(kv.Value, &w) == nil
		},
	}
}

// enginesMirror mirrors the engine registrations, all in one group.
func enginesMirror() *mirror[string] {
	return &mirror[string]{
		prefix: enginesPrefix,
		dirOf:  func(string) string { return enginesPrefix },
		decode: func(kv *mvccpb.KeyValue) (string, bool) {
			return strings.TrimPrefix(string(kv.Key), enginesPrefix), true
		},
	}
}

// noteWrite records the revision of one of our own writes that changed a
// key (a delete that found nothing makes no event to wait for).
func (m *mirror[T]) noteWrite(rev int64) {
	for {
		cur := m.wrote.Load()
		if rev <= cur || m.wrote.CompareAndSwap(cur, rev) {
			return
		}
	}
}

// list returns dir's values, oldest first, and whether the mirror could
// answer.
func (m *mirror[T]) list(dir string) ([]T, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.synced || m.rev < m.wrote.Load() {
		return nil, false
	}
	out := make([]T, 0, len(m.dirs[dir]))
	for _, e := range m.dirs[dir] {
		out = append(out, e.val)
	}
	return out, true
}

// put applies one key's value (one that does not decode is dropped);
// m.mu is held.
func (m *mirror[T]) put(kv *mvccpb.KeyValue) {
	key := string(kv.Key)
	dir := m.dirOf(key)
	v, ok := m.decode(kv)
	if !ok {
		m.remove(key)
		return
	}
	es := m.dirs[dir]
	if i := slices.IndexFunc(es, func(e entry[T]) bool { return e.key == key }); i >= 0 {
		es[i].val = v // an update keeps its create revision, so its place
		return
	}
	i, _ := slices.BinarySearchFunc(es, kv.CreateRevision, func(e entry[T], rev int64) int { return cmp.Compare(e.created, rev) })
	m.dirs[dir] = slices.Insert(es, i, entry[T]{key: key, created: kv.CreateRevision, val: v})
}

func (m *mirror[T]) remove(key string) {
	dir := m.dirOf(key)
	es := slices.DeleteFunc(m.dirs[dir], func(e entry[T]) bool { return e.key == key })
	if len(es) == 0 {
		delete(m.dirs, dir)
	} else {
		m.dirs[dir] = es
	}
}

// follow loads the keys and applies the watch's events until the watch
// fails (the mirror then stops answering) or ctx ends.
func (m *mirror[T]) follow(ctx context.Context, cli *clientv3.Client) error {
	resp, err := cli.Get(ctx, m.prefix, clientv3.WithPrefix())
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.dirs = map[string][]entry[T]{}
	for _, kv := range resp.Kvs {
		m.put(kv)
	}
	m.rev, m.synced = resp.Header.Revision, true
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		m.synced = false
		m.mu.Unlock()
	}()
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for wr := range cli.Watch(wctx, m.prefix, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1)) {
		if err := wr.Err(); err != nil {
			return err // compacted past us, or no leader: load again
		}
		m.mu.Lock()
		for _, ev := range wr.Events {
			if ev.Type == clientv3.EventTypeDelete {
				m.remove(string(ev.Kv.Key))
			} else {
				m.put(ev.Kv)
			}
		}
		m.rev = max(m.rev, wr.Header.Revision)
		m.mu.Unlock()
	}
	return ctx.Err()
}

// run follows etcd until closed ends, loading anew after each failure.
func (m *mirror[T]) run(cli *clientv3.Client, closed <-chan struct{}) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-closed
		cancel()
	}()
	for ctx.Err() == nil {
		_ = m.follow(ctx, cli)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}
