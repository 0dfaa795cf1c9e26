// Package notify sends the notification outbox (pkg/db/outbox.go) to
// RabbitMQ as oslo.messaging v2 notifications, the way OpenStack services
// send theirs to Ceilometer: each message, wrapped in the v2 envelope
// {"oslo.version": "2.0", "oslo.message": "<JSON>"}, goes persistent to a
// durable topic exchange ([DEFAULT] control_exchange) with routing key
// <topic>.<priority> for every topic, whose durable queue is declared so
// that nothing is lost before a consumer exists. A message leaves the
// outbox only once the broker confirmed it for every topic: a broker outage
// delays notifications and loses none. A message confirmed whose deletion
// then failed (the process died in between) is sent again with the same
// message_id, by which consumers tell it apart.
package notify

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/qinling-go/qinling/pkg/db"
	"github.com/qinling-go/qinling/pkg/rpc/rabbit"
)

// Config configures a Sender. Zero durations and sizes take the defaults
// given (negative ones are the caller's mistake).
type Config struct {
	// URL is oslo's transport URL of the broker.
	URL string
	// Exchange is the topic exchange; Topics the topics (routing key
	// <topic>.<priority>), at least one.
	Exchange string
	Topics   []string
	// Owner names this sender in the outbox's claims; unique per process.
	Owner string
	// Interval is how often the outbox is read when it was empty (1s), and
	// Retry the wait after a broker failure (2s).
	Interval time.Duration
	Retry    time.Duration
	// Batch is how many messages are claimed and confirmed at once (100).
	Batch int
	// ConfirmTimeout bounds the wait for the broker's confirms (10s).
	ConfirmTimeout time.Duration
	Logger         *slog.Logger
}

// Sender empties the outbox into the broker.
type Sender struct {
	db   *db.DB
	cfg  Config
	log  *slog.Logger
	conn *amqp.Connection
	ch   *amqp.Channel
}

// New returns a sender of d's outbox.
func New(d *db.DB, cfg Config) (*Sender, error) {
	if len(cfg.Topics) == 0 || cfg.Exchange == "" {
		return nil, errors.New("notify: an exchange and at least one topic are needed")
	}
	if cfg.Owner == "" {
		host, _ := os.Hostname()
		cfg.Owner = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), db.NewID()[:8])
	}
	cfg.Interval = cmp.Or(cfg.Interval, time.Second)
	cfg.Retry = cmp.Or(cfg.Retry, 2*time.Second)
	cfg.Batch = cmp.Or(cfg.Batch, 100)
	cfg.ConfirmTimeout = cmp.Or(cfg.ConfirmTimeout, 10*time.Second)
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	return &Sender{db: d, cfg: cfg, log: cfg.Logger.With("component", "notifications")}, nil
}

// Run sends until ctx ends, then closes the connection.
func (s *Sender) Run(ctx context.Context) {
	defer s.disconnect()
	failing := false
	for ctx.Err() == nil {
		n, err := s.Flush(ctx)
		wait := s.cfg.Interval
		switch {
		case err != nil && ctx.Err() == nil:
			if !failing {
				s.log.Warn("notifications not sent; retrying (they wait in the outbox)", "error", err)
			}
			failing, wait = true, s.cfg.Retry
		case err == nil && failing:
			s.log.Info("notifications sent again", "sent", n)
			failing = false
		}
		if n == s.cfg.Batch {
			wait = 0 // more are waiting
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
}

// Flush sends one batch of the outbox and returns how many messages the
// broker confirmed (and left the outbox).
func (s *Sender) Flush(ctx context.Context) (int, error) {
	msgs, err := s.db.ClaimOutbox(ctx, s.cfg.Owner, s.lease(), s.cfg.Batch)
	if err != nil || len(msgs) == 0 {
		return 0, err
	}
	if err := s.connect(); err != nil {
		return 0, err
	}
	var pending []*amqp.DeferredConfirmation
	for _, m := range msgs {
		body, err := json.Marshal(map[string]string{"oslo.version": "2.0", "oslo.message": m.Message})
		if err != nil {
			return 0, err
		}
		for _, topic := range s.cfg.Topics {
			dc, err := s.ch.PublishWithDeferredConfirmWithContext(ctx, s.cfg.Exchange, routingKey(topic, m.Priority), false, false, amqp.Publishing{
				ContentType: "application/json", DeliveryMode: amqp.Persistent, MessageId: m.MessageID, Body: body,
			})
			if err != nil {
				s.disconnect()
				return 0, fmt.Errorf("publish: %w", err)
			}
			pending = append(pending, dc)
		}
	}
	cctx, cancel := context.WithTimeout(ctx, s.cfg.ConfirmTimeout)
	defer cancel()
	// Confirms come in publishing order; a batch is deleted only whole.
	for _, dc := range pending {
		ok, err := dc.WaitContext(cctx)
		if err != nil || !ok {
			s.disconnect()
			return 0, fmt.Errorf("the broker did not confirm the notifications: %v", errors.Join(err, errNack(ok)))
		}
	}
	seqs := make([]int64, len(msgs))
	for i, m := range msgs {
		seqs[i] = m.Seq
	}
	return len(msgs), s.db.DeleteOutbox(context.WithoutCancel(ctx), seqs)
}

func errNack(ok bool) error {
	if ok {
		return nil
	}
	return errors.New("negative acknowledgement")
}

// lease is how long a claim holds: longer than a batch can take to confirm.
func (s *Sender) lease() time.Duration { return 3 * s.cfg.ConfirmTimeout }

// routingKey is oslo's: the topic and the priority in lower case.
func routingKey(topic, priority string) string { return topic + "." + strings.ToLower(priority) }

// connect opens a confirming channel and declares the exchange, and the
// queue of every topic (INFO is the only priority sent), unless it is open.
func (s *Sender) connect() error {
	if s.ch != nil && !s.ch.IsClosed() {
		return nil
	}
	s.disconnect()
	conn, err := rabbit.Connect(s.cfg.URL, "qinling-notifications:"+s.cfg.Owner)
	if err != nil {
		return err
	}
	fail := func(what string, err error) error {
		_ = conn.CloseDeadline(time.Now().Add(5 * time.Second))
		return fmt.Errorf("%s: %w", what, err)
	}
	ch, err := conn.Channel()
	if err != nil {
		return fail("open a channel", err)
	}
	if err := ch.Confirm(false); err != nil {
		return fail("enable publisher confirms", err)
	}
	if err := ch.ExchangeDeclare(s.cfg.Exchange, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
		return fail("declare exchange "+s.cfg.Exchange, err)
	}
	for _, topic := range s.cfg.Topics {
		q := routingKey(topic, "INFO")
		if _, err := ch.QueueDeclare(q, true, false, false, false, nil); err != nil {
			return fail("declare queue "+q, err)
		}
		if err := ch.QueueBind(q, q, s.cfg.Exchange, false, nil); err != nil {
			return fail("bind queue "+q, err)
		}
	}
	s.conn, s.ch = conn, ch
	return nil
}

func (s *Sender) disconnect() {
	if s.conn != nil {
		_ = s.conn.CloseDeadline(time.Now().Add(5 * time.Second))
	}
	s.conn, s.ch = nil, nil
}
