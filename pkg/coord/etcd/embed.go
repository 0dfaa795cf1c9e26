package etcd

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/storage/wal"
)

// walSegmentSize is the size etcd preallocates for each write-ahead log
// segment; it keeps the current one and the next, ready. etcd's 64 MB suits
// a cluster's write load; the all-in-one's worker records and locks are a
// few kilobytes a minute, and 128 MB of WAL on a laptop would be most of its
// state directory. A larger entry still fits: a segment is cut after the
// write that fills it.
const walSegmentSize = 4 << 20

// setWALSegmentSize sets etcd's segment size, a package variable (etcd has
// no per-server option for it), once and before any server starts, so that
// servers started in parallel never race on it.
var setWALSegmentSize = sync.OnceFunc(func() { wal.SegmentSizeBytes = walSegmentSize })

// EmbedConfig places an etcd server inside the process (the all-in-one).
type EmbedConfig struct {
	Dir      string
	Host     string
	Port     int
	PeerPort int
}

// Embedded is a running in-process etcd server.
type Embedded struct {
	etcd     *embed.Etcd
	Endpoint string
}

// StartEmbedded starts a single-member etcd on loopback and waits until it
// serves. Its data survives restarts in cfg.Dir.
func StartEmbedded(cfg EmbedConfig) (*Embedded, error) {
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("embedded etcd: %w", err)
	}
	setWALSegmentSize()
	ec := embed.NewConfig()
	ec.Name = "qinling"
	ec.Dir = cfg.Dir
	client := url.URL{Scheme: "http", Host: fmt.Sprintf("%s:%d", cfg.Host, cfg.Port)}
	peer := url.URL{Scheme: "http", Host: fmt.Sprintf("%s:%d", cfg.Host, cfg.PeerPort)}
	ec.ListenClientUrls, ec.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	ec.ListenPeerUrls, ec.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
	ec.InitialCluster = ec.InitialClusterFromName(ec.Name)
	ec.LogLevel = "error"
	// etcd logs shutdown noise at error level; keep it out of the service log.
	ec.LogOutputs = []string{filepath.Join(cfg.Dir, "etcd.log")}
	// Worker records are small and short-lived; keep history short.
	ec.AutoCompactionMode = embed.CompactorModePeriodic
	ec.AutoCompactionRetention = "1h"
	e, err := embed.StartEtcd(ec)
	if err != nil {
		return nil, fmt.Errorf("embedded etcd on %s: %w", client.Host, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("embedded etcd: %w", err)
	case <-time.After(60 * time.Second):
		e.Close()
		return nil, fmt.Errorf("embedded etcd: not ready after 60s")
	}
	if err := dropLeases(client.String()); err != nil {
		e.Close()
		return nil, fmt.Errorf("embedded etcd: %w", err)
	}
	return &Embedded{etcd: e, Endpoint: client.String()}, nil
}

// dropLeases revokes every lease the data directory holds. The embedded
// server belongs to one process, so a lease found at start is a dead run's
// (a kill -9): its locks and engine registration would otherwise stay until
// their TTL ran out, and the new run's executions would wait on them.
func dropLeases(endpoint string) error {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 10 * time.Second})
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	leases, err := cli.Leases(ctx)
	if err != nil {
		return fmt.Errorf("list the previous run's leases: %w", err)
	}
	for _, l := range leases.Leases {
		if _, err := cli.Revoke(ctx, l.ID); err != nil {
			return fmt.Errorf("revoke the previous run's lease %x: %w", l.ID, err)
		}
	}
	return nil
}

// Close stops the server.
func (e *Embedded) Close() { e.etcd.Close() }
