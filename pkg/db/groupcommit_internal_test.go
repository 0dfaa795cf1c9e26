package db

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
)

// heldWriter opens a synced SQLite store, runs setup on it, then keeps its
// group writer busy with a write that waits for release (holding the one
// connection), so that the writes handed over meanwhile run as one batch.
// queued(n) waits until n writes wait behind it.
func heldWriter(t *testing.T, setup func(d *DB)) (d *DB, queued func(n int), release func(), sizes func() []int) {
	t.Helper()
	ctx := context.Background()
	d = syncedSQLite(t)
	setup(d)
	var mu sync.Mutex
	var seen []int
	d.writer.batched = func(n int) { mu.Lock(); seen = append(seen, n); mu.Unlock() }
	hold, holding := make(chan struct{}), make(chan struct{})
	go func() {
		_ = d.writer.write(ctx, false, func(*gorm.DB) error { close(holding); <-hold; return nil })
	}()
	<-holding
	queued = func(n int) {
		for d.writer.queued() < n {
			time.Sleep(time.Millisecond)
		}
	}
	sizes = func() []int { mu.Lock(); defer mu.Unlock(); return append([]int(nil), seen...) }
	return d, queued, func() { close(hold) }, sizes
}

// TestGroupWriter_FailedWriteUndoneAlone: in one batch, a write that fails
// is undone and answered with its error; the others are stored.
func TestGroupWriter_FailedWriteUndoneAlone(t *testing.T) {
	ctx := context.Background()
	d, queued, release, sizes := heldWriter(t, func(d *DB) {
		require.NoError(t, d.gorm.Exec("CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT)").Error)
	})
	errBad := errors.New("bad write")
	writes := []struct {
		key string
		err error
	}{{"a", nil}, {"b", errBad}, {"c", nil}}
	got := make([]error, len(writes))
	var wg sync.WaitGroup
	for i, w := range writes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i] = d.writer.write(ctx, false, func(tx *gorm.DB) error {
				if err := tx.Exec("INSERT INTO kv (k, v) VALUES (?, ?)", w.key, "1").Error; err != nil {
					return err
				}
				return w.err
			})
		}()
	}
	queued(len(writes))
	release()
	wg.Wait()
	for i, w := range writes {
		require.ErrorIs(t, got[i], w.err, w.key)
	}
	var keys []string
	require.NoError(t, d.gorm.Raw("SELECT k FROM kv ORDER BY k").Scan(&keys).Error)
	require.Equal(t, []string{"a", "c"}, keys)
	require.Contains(t, sizes(), len(writes), "the writes ran as one batch")
}

// TestGroupWriter_FailedCommitAnswersEveryone: when the batch's commit
// fails, every write of it gets an error and none is stored; an
// execution's end (Finish) is then not reported as done, the execution is
// still running and nothing is counted in its usage.
func TestGroupWriter_FailedCommitAnswersEveryone(t *testing.T) {
	ctx := context.Background()
	f := &Function{Base: Base{ProjectID: "p"}, MemorySize: 64 << 20, Code: "{}"}
	e := &Execution{Base: Base{ProjectID: "p"}, Status: StatusRunning}
	d, queued, release, sizes := heldWriter(t, func(d *DB) {
		// A deferred foreign key is checked at COMMIT: a row that breaks
		// it makes the batch's commit fail.
		require.NoError(t, d.gorm.Exec("CREATE TABLE parent (id TEXT PRIMARY KEY)").Error)
		require.NoError(t, d.gorm.Exec("CREATE TABLE child (id TEXT PRIMARY KEY, parent_id TEXT REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)").Error)
		require.NoError(t, d.CreateFunction(ctx, f))
		e.FunctionID = &f.ID
		require.NoError(t, d.CreateExecution(ctx, e))
	})

	var wg sync.WaitGroup
	var finished bool
	var finishErr, orphanErr error
	wg.Add(2)
	go func() {
		defer wg.Done()
		finished, finishErr = d.Finish(ctx, e.ID, Outcome{Status: StatusSuccess, Usage: Usage{DurationMS: 10, MemorySize: 64 << 20}})
	}()
	queued(1)
	go func() {
		defer wg.Done()
		orphanErr = d.writer.write(ctx, false, func(tx *gorm.DB) error {
			return tx.Exec("INSERT INTO child (id, parent_id) VALUES ('c', 'missing')").Error
		})
	}()
	queued(2)
	release()
	wg.Wait()

	require.Error(t, orphanErr)
	require.Error(t, finishErr, "the end was not stored: its caller must not be told it was")
	require.False(t, finished)
	require.Contains(t, sizes(), 2)
	got, err := d.Execution(ctx, Internal, e.ID)
	require.NoError(t, err)
	require.Equal(t, StatusRunning, got.Status)
	totals, err := d.UsageSinceEver(ctx)
	require.NoError(t, err)
	require.Empty(t, totals, "nothing counted for an end that was not stored")

	// The writer goes on: the same end, alone, is stored.
	done, err := d.Finish(ctx, e.ID, Outcome{Status: StatusSuccess, Usage: Usage{DurationMS: 10, MemorySize: 64 << 20}})
	require.NoError(t, err)
	require.True(t, done)
}

// TestGroupWriter_Closed: a write handed to a closed store is refused; a
// store may be closed twice.
func TestGroupWriter_Closed(t *testing.T) {
	d, err := Open("sqlite", filepath.Join(t.TempDir(), "q.sqlite"), Options{})
	require.NoError(t, err)
	require.NoError(t, d.Close())
	_ = d.Close()
	// Many times: the queue has room after close, and a write must never
	// be left in it unanswered.
	for range 1000 {
		err = d.writer.write(context.Background(), false, func(*gorm.DB) error { return nil })
		require.ErrorIs(t, err, errWriterStopped)
	}
}

// TestGroupWriter_WritesRacingClose: writes sent while the store closes are
// each answered, stored or refused, never left waiting.
func TestGroupWriter_WritesRacingClose(t *testing.T) {
	for range 20 {
		d, err := Open("sqlite", filepath.Join(t.TempDir(), "q.sqlite"), Options{})
		require.NoError(t, err)
		done := make(chan error, 100)
		for range 100 {
			go func() {
				done <- d.writer.write(context.Background(), false, func(*gorm.DB) error { return nil })
			}()
		}
		require.NoError(t, d.Close())
		for range 100 {
			select {
			case err := <-done:
				if err != nil {
					require.ErrorIs(t, err, errWriterStopped)
				}
			case <-time.After(time.Minute):
				t.Fatal("a write racing close was never answered")
			}
		}
	}
}

// TestGroupWriter_PanicFreesWriter: a write that panics panics in its
// caller, and the writes after it are still committed (its caller led the
// writer: a lead left behind would leave every later write waiting).
func TestGroupWriter_PanicFreesWriter(t *testing.T) {
	d := syncedSQLite(t)
	require.NoError(t, d.gorm.Exec("CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT)").Error)
	func() {
		defer func() { require.NotNil(t, recover(), "the panic reaches its caller") }()
		_ = d.writer.write(context.Background(), false, func(*gorm.DB) error { panic("bad write") })
	}()
	done := make(chan error, 1)
	go func() {
		done <- d.writer.write(context.Background(), false, func(tx *gorm.DB) error {
			return tx.Exec("INSERT INTO kv (k, v) VALUES ('a', '1')").Error
		})
	}()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(time.Minute):
		t.Fatal("a write after a panicking one was never answered")
	}
}
