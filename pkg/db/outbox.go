package db

import (
	"context"
	"encoding/json"
	"time"

	"gorm.io/gorm"

	"github.com/qinling-go/qinling/pkg/reqctx"
)

// OutboxMessage is a notification waiting for the broker: written in the
// transaction of the change it reports, deleted once the broker confirmed it
// (pkg/notify), so a broker outage delays notifications and loses none.
// Message is the whole oslo.messaging message (message_id, publisher_id,
// event_type, priority, payload, timestamp and the _context_ fields) as
// JSON; the sender only wraps it in the v2 envelope.
type OutboxMessage struct {
	Seq       int64     `gorm:"primaryKey;autoIncrement"`
	MessageID string    `gorm:"size:36;not null;uniqueIndex"`
	Priority  string    `gorm:"size:16;not null"`
	Message   string    `gorm:"type:longtext;not null"`
	CreatedAt time.Time `gorm:"not null"`
	// A sender claims rows for a while, so that of several processes only
	// one publishes each; a crashed sender's claims lapse.
	ClaimedBy    *string    `gorm:"size:255"`
	ClaimedUntil *time.Time `gorm:"index"`
}

func (OutboxMessage) TableName() string { return "notification_outbox" }

// EnableNotifications makes changes queue their notifications, published as
// publisher (oslo's publisher_id, "qinling-engine.<host>"). Off by default:
// without a sender nothing would empty the outbox.
func (d *DB) EnableNotifications(publisher string) { d.publisher = publisher }

// NotificationsEnabled says whether changes queue notifications.
func (d *DB) NotificationsEnabled() bool { return d.publisher != "" }

// OsloTimeFormat is oslo.messaging's timestamp layout (UTC).
const OsloTimeFormat = "2006-01-02 15:04:05.000000"

// notify queues event (priority INFO) with payload in tx; the caller's
// identity from ctx becomes the _context_ fields, as oslo's AMQP driver
// sends the request context (never the token).
func (d *DB) notify(ctx context.Context, tx *gorm.DB, event string, payload any) error {
	if d.publisher == "" {
		return nil
	}
	m, err := d.outboxMessage(ctx, event, payload)
	if err != nil {
		return err
	}
	return tx.Create(m).Error
}

// outboxMessage is notify's outbox row.
func (d *DB) outboxMessage(ctx context.Context, event string, payload any) (*OutboxMessage, error) {
	id := reqctx.From(ctx)
	msgID := NewID()
	msg := map[string]any{
		"message_id":          msgID,
		"_unique_id":          NewID(),
		"publisher_id":        d.publisher,
		"event_type":          event,
		"priority":            "INFO",
		"payload":             payload,
		"timestamp":           now().Format(OsloTimeFormat),
		"_context_request_id": id.RequestID,
		"_context_project_id": id.ProjectID,
		"_context_user_id":    id.UserID,
		"_context_roles":      id.Roles,
	}
	b, err := json.Marshal(msg)
	if err != nil {
		return nil, err
	}
	return &OutboxMessage{MessageID: msgID, Priority: "INFO", Message: string(b), CreatedAt: now()}, nil
}

// notifyExecutionEnd queues function.execution.end for e, just finished;
// ran is its function as its finisher read it, nil if it did not.
func (d *DB) notifyExecutionEnd(ctx context.Context, tx *gorm.DB, e *Execution, ran *Function, u Usage, end time.Time) error {
	if d.publisher == "" {
		return nil
	}
	var runtimeID *string
	if ran != nil {
		// The runtime it ran on, as its finisher read the function.
		runtimeID = ran.RuntimeID
	} else if e.FunctionID != nil {
		var f Function
		if err := tx.Select("runtime_id").Where("id = ?", *e.FunctionID).Take(&f).Error; err == nil {
			runtimeID = f.RuntimeID
		}
	}
	return d.notify(executionContext(ctx, e), tx, "function.execution.end", executionEndPayload(e, runtimeID, u, end))
}

// executionContext is ctx with the execution's own project and user, not
// its finisher's (an engine recovering another's executions): its
// notification's _context_ fields.
func executionContext(ctx context.Context, e *Execution) context.Context {
	return reqctx.With(ctx, reqctx.Identity{RequestID: reqctx.From(ctx).RequestID, ProjectID: e.ProjectID, UserID: deref(e.UserID)})
}

// executionEndPayload is function.execution.end's payload for e, ended at
// end, run on runtimeID.
func executionEndPayload(e *Execution, runtimeID *string, u Usage, end time.Time) map[string]any {
	trigger := TriggerAPI
	if e.Trigger != nil {
		trigger = *e.Trigger
	}
	seconds := func(ms int64) float64 { return float64(ms) / 1000 }
	return map[string]any{
		"execution_id":        e.ID,
		"project_id":          e.ProjectID,
		"user_id":             e.UserID,
		"function_id":         e.FunctionID,
		"function_version":    e.FunctionVersion,
		"function_alias":      e.FunctionAlias,
		"runtime_id":          runtimeID,
		"status":              e.Status,
		"trigger":             trigger,
		"created_at":          e.CreatedAt.UTC().Format(time.RFC3339Nano),
		"started_at":          timeOrNil(e.StartedAt),
		"ended_at":            end.Format(time.RFC3339Nano),
		"duration":            seconds(u.DurationMS),
		"wait":                seconds(u.WaitMS),
		"cold_start":          u.ColdStart,
		"cold_start_duration": seconds(u.ColdStartMS),
		"memory_size":         u.MemorySize,
		"peak_memory":         u.PeakMemoryBytes,
		"cpu_time":            seconds(u.CPUMS),
		"gb_seconds":          GBSeconds(u.MemoryKiBMS()),
	}
}

func timeOrNil(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// resourceEvents names the resources whose changes are notified, by table.
var resourceEvents = map[string]string{
	"runtimes":          "runtime",
	"functions":         "function",
	"function_versions": "function.version",
	"function_aliases":  "function.alias",
	"jobs":              "job",
	"webhooks":          "webhook",
}

// Actions on resources, the middle of "<resource>.<action>.end".
const (
	actionCreate = "create"
	actionUpdate = "update"
	actionDelete = "delete"
)

// changing runs change and, with notifications on, queues
// "<resource>.<action>.end" for row id of table in the same transaction,
// with the row's columns as payload (as it is after a create or update,
// as it was before a delete; a delete that found no row queues nothing).
// change must use only the tx it is given.
func (d *DB) changing(ctx context.Context, table, action string, id func() string, change func(tx *gorm.DB) error) error {
	if d.publisher == "" {
		return change(d.gorm.WithContext(ctx))
	}
	// The transaction's own begin or commit error (a connection MariaDB's
	// restart broke) is translated as its statements' errors are: the
	// caller answers 503, not 500. id() is not asked: a begin that failed
	// left a create's row unmade.
	return translate(d.gorm.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var row map[string]any
		if action == actionDelete {
			row = readRow(tx, table, id())
		}
		if err := change(tx); err != nil {
			return err
		}
		if action != actionDelete {
			row = readRow(tx, table, id())
		}
		if row == nil {
			return nil
		}
		// A trust is a credential's handle; the function's code may be a
		// large document and says nothing a meter needs.
		delete(row, "trust_id")
		return d.notify(ctx, tx, resourceEvents[table]+"."+action+".end", row)
	}), table, "")
}

// readRow returns a row's columns by name, nil if there is none.
func readRow(tx *gorm.DB, table, id string) map[string]any {
	row := map[string]any{}
	if err := tx.Table(table).Where("id = ?", id).Take(&row).Error; err != nil {
		return nil
	}
	for k, v := range row {
		if b, ok := v.([]byte); ok { // MySQL hands text columns over as bytes
			row[k] = string(b)
		}
	}
	return row
}

// ClaimOutbox claims up to limit queued notifications for owner until
// lease from now, oldest first: unclaimed ones, lapsed claims, and owner's own.
// One statement claims the whole batch, not one per message: with one
// notification per execution, that was a MariaDB round trip per execution
// for each sender that tried (docs/benchmarks.md, "The real stack").
func (d *DB) ClaimOutbox(ctx context.Context, owner string, lease time.Duration, limit int) ([]OutboxMessage, error) {
	g := d.gorm.WithContext(ctx)
	t := now()
	const claimable = "(claimed_until IS NULL OR claimed_until < ? OR claimed_by = ?)"
	var cands []OutboxMessage
	err := g.Where(claimable, t, owner).Order("seq").Limit(limit).Find(&cands).Error
	if err != nil || len(cands) == 0 {
		return nil, translate(err, "Notification", "")
	}
	// Milliseconds, what MySQL keeps: the claim is read back by its value.
	until := t.Add(lease).Truncate(time.Millisecond)
	seqs := make([]int64, len(cands))
	for i, m := range cands {
		seqs[i] = m.Seq
	}
	// Claimed only if no other sender claimed it since it was read.
	res := g.Model(&OutboxMessage{}).Where("seq IN ? AND "+claimable, seqs, t, owner).
		Updates(map[string]any{"claimed_by": owner, "claimed_until": until})
	if res.Error != nil {
		return nil, translate(res.Error, "Notification", "")
	}
	if int(res.RowsAffected) == len(cands) {
		for i := range cands {
			cands[i].ClaimedBy, cands[i].ClaimedUntil = &owner, &until
		}
		return cands, nil
	}
	// Another sender took some meanwhile (or, on MySQL, which counts only
	// rows that changed, owner claimed some again within the millisecond):
	// owner's are those that carry this claim.
	var mine []OutboxMessage
	err = g.Where("seq IN ? AND claimed_by = ? AND claimed_until = ?", seqs, owner, until).Order("seq").Find(&mine).Error
	return mine, translate(err, "Notification", "")
}

// DeleteOutbox removes notifications the broker confirmed.
func (d *DB) DeleteOutbox(ctx context.Context, seqs []int64) error {
	if len(seqs) == 0 {
		return nil
	}
	return translate(d.gorm.WithContext(ctx).Where("seq IN ?", seqs).Delete(&OutboxMessage{}).Error, "Notification", "")
}

// OutboxLen counts the notifications not yet confirmed by the broker.
func (d *DB) OutboxLen(ctx context.Context) (int64, error) {
	var n int64
	err := d.gorm.WithContext(ctx).Model(&OutboxMessage{}).Count(&n).Error
	return n, translate(err, "Notification", "")
}
