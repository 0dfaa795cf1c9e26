package rabbit

import (
	"context"
	"fmt"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/qinling-go/qinling/pkg/rpc"
)

// Engine queues (pkg/rpc/route.go): besides the topic's queue, each engine
// consumes <topic>.<engine name>, durable, into which other engines pass
// the requests of functions whose workers it owns. A request waits there at
// most EngineQueueTTL; then RabbitMQ dead-letters it back to the topic's
// queue, marked with an x-death header, and whichever engine takes it runs
// it. So a dead owner strands nothing for longer than that (its unacknowledged
// requests come back to its queue with their original expiry), and a
// restarted engine of the same name finds its queue again. The queue of an
// engine that does not come back (its default name has its process ID) is
// deleted once unused for engineQueueExpiry, long after its last request
// went back.

func (t *Transport) engineQueue(engine string) string { return t.cfg.Topic + "." + engine }

// engineQueueExpiry is the idle time after which an engine queue goes, as a
// multiple of EngineQueueTTL.
const engineQueueExpiry = 30

// engineQueueArgs are an engine queue's arguments; every declaration of it
// must give the same.
func (t *Transport) engineQueueArgs() amqp.Table {
	return amqp.Table{
		"x-message-ttl":             t.cfg.EngineQueueTTL.Milliseconds(),
		"x-dead-letter-exchange":    "",
		"x-dead-letter-routing-key": t.cfg.Topic,
		"x-expires":                 engineQueueExpiry * t.cfg.EngineQueueTTL.Milliseconds(),
	}
}

var _ rpc.EngineCaller = (*Transport)(nil)

// CallEngine is Call through engine's own queue: qinling-api sends a sync
// execution straight to the engine owning its function's warm workers
// (pkg/engine/route.go). Should that queue be gone, the broker hands the
// request back and it goes to the topic's queue; should its engine be dead,
// it goes back there after EngineQueueTTL (above). Either way an engine
// runs it.
func (t *Transport) CallEngine(ctx context.Context, engine, method string, args, reply any) error {
	return t.call(ctx, engine, method, args, reply)
}

// engineQueueOf returns engine's queue, declared on s first: publishing
// to a queue that does not exist drops the message.
func (t *Transport) engineQueueOf(s *session, engine string) (string, error) {
	q := t.engineQueue(engine)
	s.mu.Lock()
	declared := s.declared[q]
	s.mu.Unlock()
	if declared {
		return q, nil
	}
	if err := s.declareAside(q, t.engineQueueArgs()); err != nil {
		return "", err
	}
	s.mu.Lock()
	s.declared[q] = true
	s.mu.Unlock()
	return q, nil
}

// undeclare forgets that q was declared (the broker said it is gone).
func (s *session) undeclare(q string) {
	s.mu.Lock()
	delete(s.declared, q)
	s.mu.Unlock()
}

// forward passes d on to engine's queue as it came, its reply address
// included: the owner answers the caller itself. It returns once the
// broker has confirmed the copy; then d may be acknowledged.
func (sv *server) forward(ctx context.Context, d amqp.Delivery, engine string) error {
	t := sv.t
	s, err := t.current()
	if err != nil {
		return err
	}
	q, err := t.engineQueueOf(s, engine)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, t.cfg.ConfirmTimeout)
	defer cancel()
	dc, err := s.publish(ctx, q, false, amqp.Publishing{
		Headers:       d.Headers,
		ContentType:   d.ContentType,
		DeliveryMode:  d.DeliveryMode,
		CorrelationId: d.CorrelationId,
		ReplyTo:       d.ReplyTo,
		Expiration:    d.Expiration,
		MessageId:     d.MessageId,
		Type:          d.Type,
		Timestamp:     d.Timestamp,
		Body:          d.Body,
	})
	if err != nil {
		return err
	}
	return s.confirmed(ctx, dc)
}

// declareAside declares queue q on a channel of its own: a refusal (a
// queue of that name with other arguments: PRECONDITION_FAILED) closes the
// channel it came on, and must not close the session's publishing channel
// every call and reply uses.
func (s *session) declareAside(q string, args amqp.Table) error {
	ch, err := s.conn.Channel()
	if err != nil {
		return fmt.Errorf("open a channel to declare queue %q: %w", q, err)
	}
	defer ch.Close()
	if _, err := ch.QueueDeclare(q, true, false, false, false, args); err != nil {
		return fmt.Errorf("declare queue %q: %w", q, err)
	}
	return nil
}
