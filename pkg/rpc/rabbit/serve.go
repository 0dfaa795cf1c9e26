package rabbit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/qinling-go/qinling/pkg/errdefs"
	"github.com/qinling-go/qinling/pkg/rpc"
)

// server is one Serve loop: one consumer of the topic's queue, or of an
// engine's own (ServeEngine).
type server struct {
	t     *Transport
	h     rpc.Handler
	log   *slog.Logger
	queue string
	args  amqp.Table // the queue's arguments, as every declaration must give them
	// shared is set on the topic's queue: its requests may be forwarded.
	shared bool
	// sem holds a slot per running handler. The prefetch keeps a channel
	// from being handed more than that; the slots also count handlers still
	// running from a channel lost to a reconnection.
	sem     chan struct{}
	wg      sync.WaitGroup
	running atomic.Int64
}

// Serve consumes the topic's queue and dispatches each request to h in its
// own goroutine, until ctx ends or the transport closes. It survives
// connection losses: it waits for the connection to come back and consumes
// again. Handlers run under ctx. On the way out it waits for the running
// handlers, at most DrainTimeout, then cancels their context. Serve returns
// nil when it stops; it may run several times at once.
func (t *Transport) Serve(ctx context.Context, h rpc.Handler) error {
	return t.serve(ctx, &server{t: t, h: h, log: t.log, queue: t.cfg.Topic, shared: true})
}

// ServeEngine is Serve on engine's own queue (route.go).
func (t *Transport) ServeEngine(ctx context.Context, engine string, h rpc.Handler) error {
	q := t.engineQueue(engine)
	return t.serve(ctx, &server{t: t, h: h, log: t.log.With("queue", q), queue: q, args: t.engineQueueArgs()})
}

func (t *Transport) serve(ctx context.Context, sv *server) error {
	t.mu.Lock()
	select {
	case <-t.closing:
		t.mu.Unlock()
		return nil
	default:
	}
	t.serving.Add(1)
	t.mu.Unlock()
	defer t.serving.Done()

	hctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sv.sem = make(chan struct{}, t.cfg.Prefetch)
	for {
		s := t.waitSession(ctx)
		if s == nil {
			sv.drain(cancel)
			return nil
		}
		ch, err := sv.consume(ctx, hctx, s)
		if err == nil {
			// Stopping: the handlers acknowledge on ch, so it stays open
			// until they are done.
			sv.drain(cancel)
			_ = ch.Close()
			return nil
		}
		sv.log.Warn("stopped receiving RPC requests; resuming when possible", "error", err)
		// A consumer channel can fail alone (the session lives on) or with
		// its connection; retry on the same session after a pause, or on
		// the next one.
		select {
		case <-s.done:
		case <-time.After(t.cfg.ReconnectInterval):
		case <-ctx.Done():
		case <-t.closing:
		}
	}
}

// consume receives requests on a new channel of s and starts their handlers.
// It returns an error when the channel fails, and the still open channel,
// its consumer cancelled, when Serve is to stop.
func (sv *server) consume(ctx, hctx context.Context, s *session) (*amqp.Channel, error) {
	ch, err := s.conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("open a channel: %w", err)
	}
	if err := ch.Qos(sv.t.cfg.Prefetch, 0, false); err != nil {
		_ = ch.Close()
		return nil, fmt.Errorf("set the prefetch: %w", err)
	}
	// Declared here too, in case the queue was deleted under a live session.
	if _, err := ch.QueueDeclare(sv.queue, true, false, false, false, sv.args); err != nil {
		_ = ch.Close()
		return nil, fmt.Errorf("declare queue %q: %w", sv.queue, err)
	}
	tag := "qinling-" + uuid.NewString()
	deliveries, err := ch.Consume(sv.queue, tag, false, false, false, false, nil)
	if err != nil {
		_ = ch.Close()
		return nil, fmt.Errorf("consume queue %q: %w", sv.queue, err)
	}
	sv.log.Info("receiving RPC requests", "broker", s.broker.String(), "prefetch", sv.t.cfg.Prefetch)
	// Requests delivered but not started are neither acknowledged nor
	// rejected here: closing the channel later gives them back to the queue.
	stop := func() (*amqp.Channel, error) {
		_ = ch.Cancel(tag, false)
		return ch, nil
	}
	for {
		select {
		case d, ok := <-deliveries:
			if !ok {
				return nil, errors.New("the consumer channel closed")
			}
			select {
			case sv.sem <- struct{}{}:
			case <-ctx.Done():
				return stop()
			case <-sv.t.closing:
				return stop()
			}
			sv.wg.Add(1)
			sv.running.Add(1)
			go sv.handle(hctx, ch, d)
		case <-ctx.Done():
			return stop()
		case <-sv.t.closing:
			return stop()
		}
	}
}

// drain waits for running handlers, at most DrainTimeout, then cancels
// their context.
func (sv *server) drain(cancel context.CancelFunc) {
	done := make(chan struct{})
	go func() {
		sv.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(sv.t.cfg.DrainTimeout):
		sv.log.Warn("RPC handlers still running after the drain timeout; their requests will be delivered again",
			"running", sv.running.Load(), "drain_timeout", sv.t.cfg.DrainTimeout)
	}
	cancel()
}

// handle runs one request and acknowledges it once the handler returned and
// the reply, for a call, is sent.
func (sv *server) handle(ctx context.Context, ch *amqp.Channel, d amqp.Delivery) {
	defer func() {
		<-sv.sem
		sv.running.Add(-1)
		sv.wg.Done()
	}()
	start := time.Now()
	req, err := rpc.DecodeRequest(d.Body, sv.h)
	if err == nil && req.Method == "" {
		err = errors.New("no method")
	}
	if err != nil {
		sv.log.Warn("rejecting a malformed RPC request", "error", err, "message_id", d.MessageId,
			"correlation_id", d.CorrelationId, "bytes", len(d.Body))
		sv.reply(ch, d, rpc.Response{Error: &errdefs.Wire{Kind: errdefs.KindInvalid, Message: "Malformed RPC request."}}, sv.log)
		if err := d.Reject(false); err != nil {
			sv.log.Warn("could not reject a malformed RPC request", "error", err)
		}
		return
	}
	log := sv.log.With("method", req.Method)
	if req.Identity.RequestID != "" {
		log = log.With("request_id", req.Identity.RequestID)
	}
	fctx := ctx
	if sv.shared && d.Headers["x-death"] == nil {
		// Not yet routed: a request that comes back from an engine's queue
		// it waited in too long (route.go) runs where it lands.
		fctx = rpc.WithForwardable(ctx)
	}
	resp := rpc.Dispatch(fctx, sv.h, req)
	if resp.ForwardTo != "" {
		err := sv.forward(ctx, d, resp.ForwardTo)
		if err == nil {
			if err := d.Ack(false); err != nil {
				log.Warn("could not acknowledge a forwarded RPC request; it may run twice", "error", err)
			}
			log.Debug("forwarded an RPC request", "engine", resp.ForwardTo)
			return
		}
		log.Warn("could not pass a request on to its engine; running it here", "engine", resp.ForwardTo, "error", err)
		resp = rpc.Dispatch(ctx, sv.h, req)
	}
	if d.ReplyTo == "" {
		rpc.ReportCast(req, resp)
	}
	sv.reply(ch, d, resp, log)
	if err := d.Ack(false); err != nil {
		log.Warn("could not acknowledge an RPC request; the broker will deliver it again", "error", err)
		return
	}
	log.Debug("handled an RPC request", "duration", time.Since(start), "call", d.ReplyTo != "", "redelivered", d.Redelivered)
}

// reply sends resp to the caller of a call. A caller that went away is no
// error here: the broker drops a reply to a direct reply-to address whose
// channel is gone.
func (sv *server) reply(ch *amqp.Channel, d amqp.Delivery, resp rpc.Response, log *slog.Logger) {
	if d.ReplyTo == "" {
		return
	}
	err := ch.Publish("", d.ReplyTo, false, false, amqp.Publishing{
		ContentType:   contentType,
		DeliveryMode:  amqp.Transient,
		CorrelationId: d.CorrelationId,
		Body:          rpc.EncodeResponse(resp),
	})
	if err != nil {
		log.Warn("could not send an RPC reply; its caller will time out", "error", err)
	}
}
