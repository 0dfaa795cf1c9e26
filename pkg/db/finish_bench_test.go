package db

import (
	"context"
	"testing"

	"gorm.io/gorm"
)

// BenchmarkFinish is the cost of accounting when an execution ends
// (docs/operations.md, "Cost"): "status only" stores the outcome alone, in a
// transaction, as the service did before usage was counted; "with usage"
// is Finish, which adds the usage rollup's upsert in the same transaction;
// "with usage and notification" also queues function.execution.end. Each
// runs on SQLite, the all-in-one's database. ./tox -e bench prints it.
func BenchmarkFinish(b *testing.B) {
	for _, tc := range []struct {
		name   string
		notify bool
		finish func(d *DB, id string, o Outcome) error
	}{
		{name: "status only", finish: func(d *DB, id string, o Outcome) error {
			return d.gorm.Transaction(func(tx *gorm.DB) error {
				return tx.Model(&Execution{}).Where("id = ? AND status = ?", id, StatusRunning).
					Updates(map[string]any{"status": o.Status, "result": o.Result, "logs": o.Logs, "updated_at": now()}).Error
			})
		}},
		{name: "with usage", finish: finishOutcome},
		{name: "with usage and notification", notify: true, finish: finishOutcome},
	} {
		b.Run(tc.name, func(b *testing.B) {
			ctx := context.Background()
			d, f := benchSQLite(b, tc.notify)
			execs := make([]*Execution, b.N)
			for i := range execs {
				e := &Execution{Base: Base{ProjectID: "p"}, FunctionID: &f.ID, Status: StatusRunning}
				if err := d.CreateExecution(ctx, e); err != nil {
					b.Fatal(err)
				}
				execs[i] = e
			}
			result := `{"output": "ok", "duration": 0.002}`
			o := Outcome{Status: StatusSuccess, Result: &result, Usage: Usage{DurationMS: 2, CPUMS: 1, MemorySize: 128 << 20}}
			b.ReportAllocs()
			b.ResetTimer()
			for _, e := range execs {
				// As the engine does: the row it read when it started.
				o.Read = e
				if err := tc.finish(d, e.ID, o); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func finishOutcome(d *DB, id string, o Outcome) error {
	_, err := d.Finish(context.Background(), id, o)
	return err
}

// BenchmarkExecutionWrites is the database's part of a warm execution on
// SQLite: its counted insert and its end with a start and usage, two
// commits, after 1,000 earlier executions; it reports the WAL frames
// (pages written, two pwrites each) per execution (docs/benchmarks.md,
// "Ninth round").
func BenchmarkExecutionWrites(b *testing.B) {
	ctx := context.Background()
	d, f := benchSQLite(b, false)
	result := `{"output": null, "duration": 0.002}`
	run := func(n int) {
		for range n {
			e := &Execution{Base: Base{ProjectID: "p"}, FunctionID: &f.ID, Status: StatusRunning, Sync: true}
			if err := d.CreateCountedExecution(ctx, e); err != nil {
				b.Fatal(err)
			}
			o := Outcome{Status: StatusSuccess, Result: &result, Usage: Usage{DurationMS: 2, CPUMS: 1, MemorySize: 128 << 20},
				StartedBy: "engine", StartedAt: now()}
			if _, err := d.Finish(ctx, e.ID, o); err != nil {
				b.Fatal(err)
			}
		}
	}
	run(1000)
	var busy, frames, done int
	if err := d.gorm.Raw("PRAGMA wal_checkpoint(TRUNCATE)").Row().Scan(&busy, &frames, &done); err != nil {
		b.Fatal(err)
	}
	// The autocheckpoint would reset the count.
	if err := d.gorm.Exec("PRAGMA wal_autocheckpoint = 0").Error; err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	run(b.N)
	b.StopTimer()
	if err := d.gorm.Raw("PRAGMA wal_checkpoint(PASSIVE)").Row().Scan(&busy, &frames, &done); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(frames)/float64(b.N), "frames/op")
}

// benchSQLite is a synced SQLite database in a file, as the all-in-one's,
// with notifications on if notify, and a function to execute.
func benchSQLite(b *testing.B, notify bool) (*DB, *Function) {
	d := syncedSQLite(b)
	if notify {
		d.EnableNotifications("qinling.bench")
	}
	f := &Function{Base: Base{ProjectID: "p"}, MemorySize: 128 << 20, Code: "{}"}
	if err := d.CreateFunction(context.Background(), f); err != nil {
		b.Fatal(err)
	}
	return d, f
}
