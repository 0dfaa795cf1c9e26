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
//
// The writes' own callers commit, one at a time (the leader): a write that
// finds no batch being committed commits the writes waiting, its own among
// them; one that finds one waits, and when that batch is committed the
// oldest write still waiting is handed the lead. A write alone is thus
// committed by its caller, with no hand-over to another goroutine and back
// (two scheduler wake-ups per write on the warm path).
type groupWriter struct {
	g *gorm.DB

	mu sync.Mutex
	// waiting are the writes handed over and not yet in a batch, oldest
	// first. While any wait, a leader is committing (leading).
	waiting []*writeJob
	leading bool
	stopped bool
	// idle is signalled when the lead ends with nothing waiting (close).
	idle *sync.Cond
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
	// out answers the write once, or first hands its caller the lead.
	out chan jobAnswer
}

type jobAnswer struct {
	err  error
	lead bool
}

// maxBatch bounds the writes of one transaction, so that one commit does
// not keep the connection from readers for long.
const maxBatch = 64

// errWriterStopped answers writes that reach a closed store.
var errWriterStopped = errors.New("database closed")

func newGroupWriter(g *gorm.DB) *groupWriter {
	w := &groupWriter{g: g}
	w.idle = sync.NewCond(&w.mu)
	return w
}

// write runs fn in a transaction shared with the writes waiting at the same
// time and returns its error, or the commit's. Once handed over, the write
// is waited for even if ctx ends: its caller must learn whether it was
// stored.
func (w *groupWriter) write(ctx context.Context, single bool, fn func(tx *gorm.DB) error) error {
	j := &writeJob{ctx: context.WithoutCancel(ctx), fn: fn, single: single, out: make(chan jobAnswer, 1)}
	w.mu.Lock()
	if w.stopped {
		w.mu.Unlock()
		return errWriterStopped
	}
	w.waiting = append(w.waiting, j)
	if w.leading {
		w.mu.Unlock()
		if a := <-j.out; !a.lead {
			return a.err
		}
	} else {
		w.leading = true
		w.mu.Unlock()
	}
	w.lead()
	return (<-j.out).err
}

// lead commits the oldest waiting writes (the leader's own first) as one
// batch, then hands the lead to the oldest write still waiting. Once the
// store is closing it refuses every waiting write instead.
func (w *groupWriter) lead() {
	w.mu.Lock()
	if w.stopped {
		defer w.mu.Unlock()
		w.endLead()
		return
	}
	n := min(len(w.waiting), maxBatch)
	batch := append([]*writeJob(nil), w.waiting[:n]...)
	w.waiting = append(w.waiting[:0], w.waiting[n:]...)
	w.mu.Unlock()
	defer func() {
		if r := recover(); r != nil {
			// A write that panics fails its batch, and the writes behind
			// it still get a leader; the panic goes on in its caller.
			for _, j := range batch {
				select {
				case j.out <- jobAnswer{err: fmt.Errorf("a write of the batch panicked: %v", r)}:
				default: // answered already
				}
			}
			w.handOn()
			panic(r)
		}
	}()
	w.commit(batch)
	w.handOn()
}

// handOn passes the lead to the oldest waiting write, or ends it.
func (w *groupWriter) handOn() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.waiting) > 0 && !w.stopped {
		w.waiting[0].out <- jobAnswer{lead: true}
		return
	}
	w.endLead()
}

// endLead refuses the writes still waiting (a closing store) and ends the
// lead; w.mu is held.
func (w *groupWriter) endLead() {
	for _, j := range w.waiting {
		j.out <- jobAnswer{err: errWriterStopped}
	}
	w.waiting = nil
	w.leading = false
	w.idle.Broadcast()
}

// queued is how many writes wait for a batch (tests).
func (w *groupWriter) queued() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.waiting)
}

// close refuses new writes and returns once the batch being committed is
// and the writes waiting behind it are refused; a second close (a store
// closed twice) does nothing more.
func (w *groupWriter) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped = true
	for w.leading {
		w.idle.Wait()
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
		j.out <- jobAnswer{err: err}
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
			j.out <- jobAnswer{err: err}
		} else {
			j.out <- jobAnswer{err: j.err}
		}
	}
}
