//go:build integration

package notify_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/db"
	"github.com/qinling-go/qinling/pkg/db/dbtest"
	"github.com/qinling-go/qinling/pkg/notify"
	"github.com/qinling-go/qinling/pkg/testutil"
)

// consumer reads notifications.info as Ceilometer would, reconnecting
// while the broker is away, and counts deliveries per message_id.
type consumer struct {
	mu    sync.Mutex
	seen  map[string]int    // message_id → deliveries
	execs map[string]string // execution_id → message_id
	first map[string]any    // one envelope, to check its form
	inner map[string]any    // its oslo.message
}

func (c *consumer) run(ctx context.Context, t *testing.T, url string) {
	for ctx.Err() == nil {
		conn, err := amqp.Dial(url)
		if err != nil {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		ch, err := conn.Channel()
		if err == nil {
			_, err = ch.QueueDeclare("notifications.info", true, false, false, false, nil)
		}
		var deliveries <-chan amqp.Delivery
		if err == nil {
			deliveries, err = ch.Consume("notifications.info", "", false, false, false, false, nil)
		}
		if err != nil {
			conn.Close()
			time.Sleep(100 * time.Millisecond)
			continue
		}
		func() {
			for {
				select {
				case <-ctx.Done():
					return
				case d, ok := <-deliveries:
					if !ok {
						return
					}
					c.take(t, d.Body, d.Redelivered)
					_ = d.Ack(false)
				}
			}
		}()
		conn.Close()
	}
}

// take records a delivery. One the broker redelivers because this consumer
// lost its connection before its ack arrived is the consumer's repeat, not
// the sender's: it counts only if the first delivery never came.
func (c *consumer) take(t *testing.T, body []byte, redelivered bool) {
	var env map[string]any
	if err := json.Unmarshal(body, &env); err != nil {
		t.Errorf("not JSON: %s", body)
		return
	}
	var msg map[string]any
	if err := json.Unmarshal([]byte(env["oslo.message"].(string)), &msg); err != nil {
		t.Errorf("oslo.message is not a JSON string: %s", body)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	id := msg["message_id"].(string)
	if redelivered && c.seen[id] > 0 {
		return
	}
	c.seen[id]++
	if payload, ok := msg["payload"].(map[string]any); ok && msg["event_type"] == "function.execution.end" {
		c.execs[payload["execution_id"].(string)] = id
	}
	if c.first == nil {
		c.first, c.inner = env, msg
	}
}

func (c *consumer) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.execs)
}

// TestNotifications_BrokerRestart: executions finish before, during and
// after a RabbitMQ outage; every function.execution.end arrives, under one
// message_id each.
func TestNotifications_BrokerRestart(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mq := testutil.StartRabbitMQ(t)
	d := dbtest.SQLite(t)
	d.EnableNotifications("qinling.test")
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	sender, err := notify.New(d, notify.Config{
		URL: mq.URL, Exchange: "qinling", Topics: []string{"notifications"},
		Interval: 20 * time.Millisecond, Retry: 100 * time.Millisecond, Batch: 7, Logger: log,
	})
	require.NoError(t, err)
	c := &consumer{seen: map[string]int{}, execs: map[string]string{}}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); sender.Run(ctx) }()
	go func() { defer wg.Done(); c.run(ctx, t, mq.AMQPURL) }()
	defer wg.Wait()
	defer cancel()

	fid := db.NewID()
	var ids []string
	finish := func(n int) {
		for range n {
			e := &db.Execution{Base: db.Base{ProjectID: "p"}, FunctionID: &fid, Status: db.StatusRunning}
			require.NoError(t, d.CreateExecution(ctx, e))
			_, err := d.Finish(ctx, e.ID, db.Outcome{Status: db.StatusSuccess, Usage: db.Usage{DurationMS: 10, MemorySize: 32 << 20}})
			require.NoError(t, err)
			ids = append(ids, e.ID)
		}
	}
	finish(30)
	testutil.WaitFor(t, "the first notifications to arrive", time.Minute, 50*time.Millisecond, func() (bool, any) {
		return c.count() > 0, c.count()
	})
	mq.Stop(t)
	finish(30) // while the broker is down: they wait in the outbox
	mq.Start(t)
	finish(30)

	testutil.WaitFor(t, "every notification to arrive", 3*time.Minute, 100*time.Millisecond, func() (bool, any) {
		n, err := d.OutboxLen(ctx)
		return err == nil && n == 0 && c.count() == len(ids), fmt.Sprintf("outbox %d, received %d of %d", n, c.count(), len(ids))
	})
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, id := range ids {
		require.Contains(t, c.execs, id, "execution %s was notified", id)
	}
	// A message the broker stored but whose confirm the stop cut off is
	// published again, with the same message_id (at-least-once; consumers
	// that count deduplicate by it): repeats are logged, not failed, but no
	// notification may be one the test did not cause.
	repeats := 0
	for _, n := range c.seen {
		repeats += n - 1
	}
	t.Logf("%d notifications, %d repeated across the broker's restart", len(c.seen), repeats)
	require.Len(t, c.seen, len(ids), "one message_id per execution")
	require.Equal(t, "2.0", c.first["oslo.version"])
	require.Equal(t, "function.execution.end", c.inner["event_type"])
	require.Equal(t, "INFO", c.inner["priority"])
	require.Equal(t, "qinling.test", c.inner["publisher_id"])
	_, err = time.Parse(db.OsloTimeFormat, c.inner["timestamp"].(string))
	require.NoError(t, err, "oslo's timestamp form")
}
