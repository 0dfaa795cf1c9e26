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

// mirror keeps the worker records in memory, fed by a watch, so that
// Workers — asked on every execution — needs no round trip to etcd (with
// the embedded etcd that round trip was a tenth of the all-in-one's CPU per
// execution, docs/benchmarks.md). It answers only while its watch is
// established and it has seen this coordinator's own last write; otherwise
// Workers reads etcd as before. Another engine's change shows once its
// event arrives, as if the read had come that moment earlier: dispatch
// already copes with a worker that went (it tries another) and picks up a
// new one on the next read.
type mirror struct {
	mu     sync.Mutex
	synced bool
	rev    int64              // the etcd revision the mirror reflects
	dirs   map[string][]entry // workerDir → its records, oldest first
	// wrote is the revision of this coordinator's last worker write.
	wrote atomic.Int64
	// served counts the Workers answered from memory (tests).
	served atomic.Int64
}

type entry struct {
	key     string
	created int64 // create revision: Workers lists oldest first
	rec     coord.WorkerRecord
}

// noteWrite records the revision of one of our own writes that changed a
// record (a delete that found nothing makes no event to wait for).
func (m *mirror) noteWrite(rev int64) {
	for {
		cur := m.wrote.Load()
		if rev <= cur || m.wrote.CompareAndSwap(cur, rev) {
			return
		}
	}
}

// workers returns dir's records, oldest first, and whether the mirror could
// answer.
func (m *mirror) workers(dir string) ([]coord.WorkerRecord, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.synced || m.rev < m.wrote.Load() {
		return nil, false
	}
	out := make([]coord.WorkerRecord, 0, len(m.dirs[dir]))
	for _, e := range m.dirs[dir] {
		out = append(out, e.rec)
	}
	m.served.Add(1)
	return out, true
}

// put applies one key's value (a record that does not parse is dropped, as
// Workers skips it); m.mu is held.
func (m *mirror) put(kv *mvccpb.KeyValue) {
	key := string(kv.Key)
	dir := key[:strings.LastIndexByte(key, '/')+1]
	var w coord.WorkerRecord
	if json.Unmarshal(kv.Value, &w) != nil {
		m.remove(key)
		return
	}
	es := m.dirs[dir]
	if i := slices.IndexFunc(es, func(e entry) bool { return e.key == key }); i >= 0 {
		es[i].rec = w // an update keeps its create revision, so its place
		return
	}
	i, _ := slices.BinarySearchFunc(es, kv.CreateRevision, func(e entry, rev int64) int { return cmp.Compare(e.created, rev) })
	m.dirs[dir] = slices.Insert(es, i, entry{key: key, created: kv.CreateRevision, rec: w})
}

func (m *mirror) remove(key string) {
	dir := key[:strings.LastIndexByte(key, '/')+1]
	es := slices.DeleteFunc(m.dirs[dir], func(e entry) bool { return e.key == key })
	if len(es) == 0 {
		delete(m.dirs, dir)
	} else {
		m.dirs[dir] = es
	}
}

// follow loads the records and applies the watch's events until the watch
// fails (the mirror then stops answering) or ctx ends.
func (m *mirror) follow(ctx context.Context, cli *clientv3.Client) error {
	resp, err := cli.Get(ctx, workersPrefix, clientv3.WithPrefix())
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.dirs = map[string][]entry{}
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
	for wr := range cli.Watch(wctx, workersPrefix, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1)) {
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
func (m *mirror) run(cli *clientv3.Client, closed <-chan struct{}) {
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
