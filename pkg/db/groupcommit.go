package db

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"gorm.io/gorm"
)

// groupWriter folds the per-execution writes that arrive together (the
// API's counted insert, the engine's start and end of other executions)
// into one SQLite transaction: SQLite writes one transaction at a time on
// its one connection, and each commit costs its WAL frames and locks
// whatever it holds, so N writes in one commit cost far less than N
// commits. Each write runs inside its own savepoint: one that fails is
// undone alone and its caller gets its error, the others commit. No caller
// is answered before the commit that holds its write has succeeded; when
// that commit fails every caller of the batch gets the error and nothing
// of the batch is stored. MySQL takes concurrent transactions itself and
// does not use it.
type groupWriter struct {
	g    *gorm.DB
	jobs chan *writeJob
	stop chan struct{}
	done chan struct{}
	once sync.Once
	// batched, when set (tests), is told each batch's size before it runs.
	batched func(n int)
}

type writeJob struct {
	ctx context.Context
	fn  func(tx *gorm.DB) error
	// single: fn is one statement, which alone needs no transaction of
	// its own (SQLite commits it by itself, cheaper than BEGIN … COMMIT).
	single bool
	err    error
	out    chan error
}

// maxBatch bounds the writes of one transaction, so that one commit does
// not keep the connection from readers for long.
const maxBatch = 64

// errWriterStopped answers writes that reach a closed store.
var errWriterStopped = errors.New("database closed")

func newGroupWriter(g *gorm.DB) *groupWriter {
	w := &groupWriter{g: g, jobs: make(chan *writeJob, maxBatch), stop: make(chan struct{}), done: make(chan struct{})}
	go w.run()
	return w
}

// write runs fn in a transaction shared with the writes waiting at the same
// time and returns its error, or the commit's. Once handed over, the write
// is waited for even if ctx ends: its caller must learn whether it was
// stored.
func (w *groupWriter) write(ctx context.Context, single bool, fn func(tx *gorm.DB) error) error {
	// Checked first: once stopped, a send could still find room in the
	// queue (a select takes any ready case), where nothing would take it.
	select {
	case <-w.stop:
		return errWriterStopped
	default:
	}
	j := &writeJob{ctx: context.WithoutCancel(ctx), fn: fn, single: single, out: make(chan error, 1)}
	select {
	case w.jobs <- j:
	case <-ctx.Done():
		return ctx.Err()
	case <-w.stop:
		return errWriterStopped
	}
	select {
	case err := <-j.out:
		return err
	case <-w.done:
		// The writer has ended: it answered j before that (out is
		// buffered), or j reached the queue after the writer emptied it.
		select {
		case err := <-j.out:
			return err
		default:
			return errWriterStopped
		}
	}
}

// close stops the writer once its batch is committed; a second close (a
// store closed twice) does nothing more.
func (w *groupWriter) close() {
	w.once.Do(func() { close(w.stop) })
	<-w.done
}

func (w *groupWriter) run() {
	defer close(w.done)
	batch := make([]*writeJob, 0, maxBatch)
	for {
		select {
		case j := <-w.jobs:
			batch = append(batch[:0], j)
		case <-w.stop:
			w.refuseWaiting()
			return
		}
	more:
		for len(batch) < maxBatch {
			select {
			case j := <-w.jobs:
				batch = append(batch, j)
			default:
				break more
			}
		}
		w.commit(batch)
	}
}

// refuseWaiting answers the writes still queued at close.
func (w *groupWriter) refuseWaiting() {
	for {
		select {
		case j := <-w.jobs:
			j.out <- errWriterStopped
		default:
			return
		}
	}
}

func (w *groupWriter) commit(batch []*writeJob) {
	if w.batched != nil {
		w.batched(len(batch))
	}
	var err error
	if len(batch) == 1 {
		// Alone: its own transaction, no savepoint needed.
		j := batch[0]
		if j.single {
			err = j.fn(w.g.WithContext(j.ctx))
		} else {
			err = w.g.WithContext(j.ctx).Transaction(j.fn)
		}
		j.out <- err
		return
	}
	err = w.g.Transaction(func(tx *gorm.DB) error {
		for i, j := range batch {
			sp := fmt.Sprintf("w%d", i)
			if err := tx.SavePoint(sp).Error; err != nil {
				return err
			}
			if j.err = j.fn(tx.WithContext(j.ctx)); j.err != nil {
				if err := tx.RollbackTo(sp).Error; err != nil {
					return err
				}
			}
		}
		return nil
	})
	for _, j := range batch {
		if err != nil {
			j.out <- err
		} else {
			j.out <- j.err
		}
	}
}
