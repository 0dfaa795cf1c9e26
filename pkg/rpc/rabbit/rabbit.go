// Package rabbit is the RPC transport between qinling-api and the engines
// over RabbitMQ (AMQP 0-9-1, github.com/rabbitmq/amqp091-go).
//
// Topology: one durable queue named after the topic ([engine] topic), fed
// through the default exchange and declared by both sides on every
// connection. Every engine consumes it (competing consumers) with a prefetch
// of executor_thread_pool_size, so the broker hands a busy engine no more
// than it can start. A request is acknowledged only after its handler
// returned: the engine has stored the outcome by then, and a request whose
// engine dies mid-way is delivered again, to another engine. (RabbitMQ also
// takes a request back from an engine that holds it unacknowledged longer
// than its consumer_timeout, 30 minutes by default; handlers stay far below.)
// Each engine also consumes a queue of its own, into which other engines
// pass requests for the functions whose workers it owns (route.go).
//
// Casts are persistent and published with confirms: Cast returns nil only
// once the broker has the message, so it survives a broker restart. Calls
// are transient and expire after the call's timeout, so an engine does not
// start work its caller has given up on.
//
// One goroutine owns the connection and reconnects with backoff. While it is
// down, Call and Cast fail at once as unavailable (the API's 503) and Serve
// waits for the connection to come back.
package rabbit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/qinling-go/qinling/pkg/errdefs"
	"github.com/qinling-go/qinling/pkg/rpc"
)

// DefaultTopic is the queue the engines consume unless Config.Topic says
// otherwise; upstream's [engine] topic.
const DefaultTopic = "qinling_engine"

// Calls take their reply through RabbitMQ's direct reply-to rather than
// through a reply queue per process: nothing to declare or to clean up, no
// reply queues left behind by a crashed API, one round trip less to set up.
// Its one catch is that a reply is dropped when the calling channel has gone;
// that suits us, as a call whose connection dropped has already failed as
// unavailable, and the broker discards such a reply without bothering the
// engine that sent it.
const directReplyTo = "amq.rabbitmq.reply-to"

const (
	contentType = "application/json"
	// dialTimeout bounds the TCP connect and, separately, the AMQP handshake
	// with one broker.
	dialTimeout = 5 * time.Second
	// heartbeat lets either side notice a dead peer within two intervals.
	heartbeat = 10 * time.Second
	// closeTimeout bounds the AMQP goodbye when closing a connection.
	closeTimeout = 5 * time.Second
	// frameSize is RabbitMQ's own default; amqp.Open, unlike amqp.Dial,
	// does not fill it in.
	frameSize = 128 * 1024
	// maxPrefetch is the largest prefetch count AMQP can express.
	maxPrefetch = math.MaxUint16
)

// Config configures a Transport. Zero values take the defaults given.
type Config struct {
	// URL is oslo's transport URL, rabbit://user:pass@host:5672/vhost, with
	// several comma-separated user:pass@host:port tried in turn; amqp:// is
	// accepted too.
	URL string
	// Topic is the queue engines consume; DefaultTopic if empty.
	Topic string
	// Prefetch is how many requests one Serve loop is handed at once
	// ([DEFAULT] executor_thread_pool_size), and so how many of its handlers
	// run at once; 64 if zero.
	Prefetch int
	// CallTimeout bounds how long Call waits for a reply (a deadline in the
	// caller's context may cut it shorter); 60s if zero.
	CallTimeout time.Duration
	// ReconnectInterval is the first wait before reconnecting; it doubles up
	// to ReconnectMax. 1s and 30s if zero.
	ReconnectInterval time.Duration
	ReconnectMax      time.Duration
	// ConfirmTimeout bounds how long Cast waits for the broker to confirm a
	// message; 5s if zero.
	ConfirmTimeout time.Duration
	// DrainTimeout bounds how long Close, or a Serve whose context ended,
	// waits for handlers still running; 30s if zero. Requests whose handlers
	// outlive it are not acknowledged, and so go to another engine.
	DrainTimeout time.Duration
	// EngineQueueTTL is how long a request waits in an engine's own queue
	// (route.go) before it goes back to the topic's queue, for any engine:
	// the owner is dead, or too busy to take it; 10s if zero.
	EngineQueueTTL time.Duration
	// Logger receives connection events and handler failures; slog.Default()
	// if nil.
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.Topic == "" {
		c.Topic = DefaultTopic
	}
	if c.Prefetch <= 0 {
		c.Prefetch = 64
	}
	c.Prefetch = min(c.Prefetch, maxPrefetch)
	if c.CallTimeout <= 0 {
		c.CallTimeout = 60 * time.Second
	}
	if c.ReconnectInterval <= 0 {
		c.ReconnectInterval = time.Second
	}
	if c.ReconnectMax <= 0 {
		c.ReconnectMax = 30 * time.Second
	}
	if c.ConfirmTimeout <= 0 {
		c.ConfirmTimeout = 5 * time.Second
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = 30 * time.Second
	}
	if c.EngineQueueTTL <= 0 {
		c.EngineQueueTTL = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Transport is an rpc.Transport over RabbitMQ. It is safe for concurrent
// use; Serve may run several times at once, each loop one consumer.
type Transport struct {
	cfg      Config
	brokers  []broker
	log      *slog.Logger
	connName string

	mu      sync.Mutex
	sess    *session      // nil while disconnected
	up      chan struct{} // closed when sess is set; replaced when it is cleared
	downErr error         // why sess is nil
	next    int           // index of the broker to try first
	serving sync.WaitGroup

	closing   chan struct{} // closed first by Close: Call, Cast and Serve stop
	quit      chan struct{} // closed once Serve loops drained: the connection goes
	loopDone  chan struct{}
	closeOnce sync.Once
}

var _ rpc.Transport = (*Transport)(nil)

// session is one AMQP connection with its publishing channel. It is
// replaced, never repaired: a new connection is a new session.
type session struct {
	broker  broker
	conn    *amqp.Connection
	netConn net.Conn
	// ch is in confirm mode; it publishes requests and receives the direct
	// replies to calls.
	ch         *amqp.Channel
	connClosed <-chan *amqp.Error
	chClosed   <-chan *amqp.Error
	// blocked is set while the broker blocks publishers (memory or disk
	// alarm): a publish would hang rather than fail.
	blocked atomic.Bool
	done    chan struct{} // closed when the session is dead

	mu       sync.Mutex
	pending  map[string]*pendingCall // calls waiting, by correlation ID
	declared map[string]bool         // engine queues declared (route.go)
}

// pendingCall is a call waiting for its reply.
type pendingCall struct {
	reply chan []byte // a reply's body, buffered; readReplies is its only sender
	// returned is signalled when the broker hands the request back as
	// unroutable (a call to an engine's queue that no longer exists,
	// route.go); buffered, readReturns is its only sender.
	returned chan struct{}
}

// New parses the URL and connects. A broker that cannot be reached is not
// an error: the transport keeps trying in the background, logging each
// attempt, and fails calls as unavailable meanwhile. Only a malformed URL is.
// The first attempt is made before New returns (bounded by 5s per host), so
// a transport whose broker is up is ready for calls at once.
func New(cfg Config) (*Transport, error) {
	brokers, err := parseURL(cfg.URL)
	if err != nil {
		return nil, err
	}
	cfg.setDefaults()
	t := &Transport{
		cfg:      cfg,
		brokers:  brokers,
		log:      cfg.Logger.With("topic", cfg.Topic),
		connName: fmt.Sprintf("qinling-go %s (pid %d)", filepath.Base(os.Args[0]), os.Getpid()),
		up:       make(chan struct{}),
		closing:  make(chan struct{}),
		quit:     make(chan struct{}),
		loopDone: make(chan struct{}),
	}
	s, err := t.dial()
	if err == nil {
		t.log.Info("connected to the message broker", "broker", s.broker.String(), "vhost", s.broker.Vhost)
		t.setSession(s)
	} else {
		t.setDown(err)
	}
	go t.run(s, err)
	return t, nil
}

// brokerNames lists the brokers for logs, without passwords.
func (t *Transport) brokerNames() string {
	names := make([]string, len(t.brokers))
	for i, b := range t.brokers {
		names[i] = b.String()
	}
	return strings.Join(names, ",")
}

// run owns the connection: it watches the session (s, already installed, or
// nil after a failed first attempt), and when it dies reconnects with
// backoff until Close.
func (t *Transport) run(s *session, err error) {
	defer close(t.loopDone)
	waits := 0    // waits since the last session: the backoff exponent
	failures := 0 // failed attempts since the last session
	if s == nil {
		failures = 1
	}
	for {
		if s == nil {
			wait := backoff(waits, t.cfg.ReconnectInterval, t.cfg.ReconnectMax, rand.Float64())
			waits++
			if failures > 0 {
				t.log.Warn("cannot connect to the message broker; RPC fails as unavailable until it is back",
					"brokers", t.brokerNames(), "error", err, "failed_attempts", failures, "retry_in", wait.Round(time.Millisecond))
			}
			select {
			case <-t.quit:
				return
			case <-time.After(wait):
			}
			if s, err = t.dial(); err != nil {
				failures++
				t.setDown(err)
				continue
			}
			t.log.Info("reconnected to the message broker", "broker", s.broker.String(), "vhost", s.broker.Vhost, "failed_attempts", failures)
			t.setSession(s)
		}
		err = t.watch(s)
		t.setDown(err)
		s.shutdown()
		select {
		case <-t.quit:
			return
		default:
		}
		t.log.Warn("lost the connection to the message broker; reconnecting", "broker", s.broker.String(), "error", err)
		s, waits, failures = nil, 0, 0
	}
}

// watch waits until s dies or the transport closes, and says why.
func (t *Transport) watch(s *session) error {
	select {
	case e := <-s.connClosed:
		if e != nil {
			return e
		}
		return errors.New("connection closed")
	case e := <-s.chClosed:
		if e != nil {
			return fmt.Errorf("channel closed: %w", e)
		}
		return errors.New("channel closed")
	case <-t.quit:
		return errors.New("transport closed")
	}
}

func (t *Transport) setSession(s *session) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sess, t.downErr = s, nil
	close(t.up)
}

// setDown records that there is no session. It happens before the dead
// session's done channel closes, so whoever sees done closed finds the
// session already gone.
func (t *Transport) setDown(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.sess != nil {
		t.sess = nil
		t.up = make(chan struct{})
	}
	t.downErr = err
}

// current returns the live session, or the error Call and Cast answer with.
func (t *Transport) current() (*session, error) {
	select {
	case <-t.closing:
		return nil, errClosed()
	default:
	}
	t.mu.Lock()
	s, why := t.sess, t.downErr
	t.mu.Unlock()
	if s == nil {
		return nil, notSent(why, "not connected, reconnecting")
	}
	if s.blocked.Load() {
		return nil, notSent(nil, "it is refusing messages (resource alarm)")
	}
	return s, nil
}

// waitSession returns the live session once there is one, or nil when ctx
// ends or the transport closes.
func (t *Transport) waitSession(ctx context.Context) *session {
	for {
		t.mu.Lock()
		s, up := t.sess, t.up
		t.mu.Unlock()
		if s != nil {
			return s
		}
		select {
		case <-up:
		case <-ctx.Done():
			return nil
		case <-t.closing:
			return nil
		}
	}
}

// dial connects to the brokers in turn, starting with the last one that
// worked, and returns the first session set up.
func (t *Transport) dial() (*session, error) {
	t.mu.Lock()
	start := t.next
	t.mu.Unlock()
	var errs []error
	for i := range t.brokers {
		k := (start + i) % len(t.brokers)
		s, err := t.open(t.brokers[k])
		if err == nil {
			t.mu.Lock()
			t.next = k
			t.mu.Unlock()
			return s, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", t.brokers[k], err))
	}
	return nil, errors.Join(errs...)
}

// open connects to b and sets up a session: the publishing channel in
// confirm mode, the topic's queue, the consumer of direct replies.
//
// amqp091's own automatic recovery stays off: Transport must fail calls in
// flight when the connection drops, must never acknowledge a delivery on a
// channel other than the one it came from, and picks hosts and backoff
// itself.
func (t *Transport) open(b broker) (*session, error) {
	conn, nc, err := connect(b, t.connName)
	if err != nil {
		return nil, err
	}
	s := &session{broker: b, conn: conn, netConn: nc, done: make(chan struct{}), pending: map[string]*pendingCall{}, declared: map[string]bool{}}
	fail := func(err error) (*session, error) {
		_ = conn.CloseDeadline(time.Now().Add(closeTimeout))
		return nil, err
	}
	s.connClosed = conn.NotifyClose(make(chan *amqp.Error, 1))
	blocks := conn.NotifyBlocked(make(chan amqp.Blocking, 1))
	go func() {
		for bl := range blocks {
			s.blocked.Store(bl.Active)
			if bl.Active {
				t.log.Warn("the message broker blocks publishers", "broker", s.broker.String(), "reason", bl.Reason)
			} else {
				t.log.Info("the message broker accepts publishers again", "broker", s.broker.String())
			}
		}
	}()
	if s.ch, err = conn.Channel(); err != nil {
		return fail(fmt.Errorf("open a channel: %w", err))
	}
	s.chClosed = s.ch.NotifyClose(make(chan *amqp.Error, 1))
	if err := s.ch.Confirm(false); err != nil {
		return fail(fmt.Errorf("enable publisher confirms: %w", err))
	}
	if _, err := s.ch.QueueDeclare(t.cfg.Topic, true, false, false, false, nil); err != nil {
		return fail(fmt.Errorf("declare queue %q: %w", t.cfg.Topic, err))
	}
	replies, err := s.ch.Consume(directReplyTo, "", true, false, false, false, nil)
	if err != nil {
		return fail(fmt.Errorf("consume direct replies: %w", err))
	}
	go s.readReplies(replies, t.log)
	go s.readReturns(s.ch.NotifyReturn(make(chan amqp.Return, 16)))
	return s, nil
}

// connect opens an AMQP connection to b, named connName in the broker's
// management views.
func connect(b broker, connName string) (*amqp.Connection, net.Conn, error) {
	nc, err := net.DialTimeout("tcp", b.addr(), dialTimeout)
	if err != nil {
		return nil, nil, err
	}
	// amqp.Open clears the deadline once the handshake is done.
	if err := nc.SetDeadline(time.Now().Add(dialTimeout)); err != nil {
		nc.Close()
		return nil, nil, err
	}
	props := amqp.NewConnectionProperties()
	props["connection_name"] = connName
	conn, err := amqp.Open(nc, amqp.Config{
		SASL:       []amqp.Authentication{&amqp.PlainAuth{Username: b.User, Password: b.Password}},
		Vhost:      b.Vhost,
		Heartbeat:  heartbeat,
		FrameSize:  frameSize,
		Locale:     "en_US",
		Properties: props,
	})
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return conn, nc, nil
}

// Connect opens an AMQP connection to the first broker of oslo's transport
// URL rawURL that answers, for other users of the broker than the RPC
// transport (pkg/notify). Errors never show a password.
func Connect(rawURL, connName string) (*amqp.Connection, error) {
	brokers, err := parseURL(rawURL)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, b := range brokers {
		conn, _, err := connect(b, connName)
		if err == nil {
			return conn, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", b, err))
	}
	return nil, errors.Join(errs...)
}

// shutdown marks s dead, failing the calls waiting on it, and closes its
// connection if it is still open.
func (s *session) shutdown() {
	close(s.done)
	_ = s.conn.CloseDeadline(time.Now().Add(closeTimeout))
}

func (s *session) readReplies(replies <-chan amqp.Delivery, log *slog.Logger) {
	for d := range replies {
		s.mu.Lock()
		p := s.pending[d.CorrelationId]
		delete(s.pending, d.CorrelationId)
		s.mu.Unlock()
		if p == nil {
			log.Debug("dropping a reply nobody waits for any more", "correlation_id", d.CorrelationId)
			continue
		}
		p.reply <- d.Body // buffered, and this is its only sender
	}
}

// readReturns tells the calls whose request the broker handed back as
// unroutable; it ends when the channel closes.
func (s *session) readReturns(returns <-chan amqp.Return) {
	for r := range returns {
		s.mu.Lock()
		p := s.pending[r.CorrelationId]
		s.mu.Unlock()
		if p != nil {
			select {
			case p.returned <- struct{}{}:
			default:
			}
		}
	}
}

func (s *session) expect(id string) *pendingCall {
	p := &pendingCall{reply: make(chan []byte, 1), returned: make(chan struct{}, 1)}
	s.mu.Lock()
	s.pending[id] = p
	s.mu.Unlock()
	return p
}

func (s *session) forget(id string) {
	s.mu.Lock()
	delete(s.pending, id)
	s.mu.Unlock()
}

// publish sends msg to queue key (through the default exchange); mandatory
// asks the broker to hand it back when no such queue exists. amqp091 ignores contexts once a
// write has started, and a write blocks when the broker stops reading, so
// the write runs aside and the caller waits no longer than ctx allows; a
// write left behind ends with its connection.
func (s *session) publish(ctx context.Context, key string, mandatory bool, msg amqp.Publishing) (*amqp.DeferredConfirmation, error) {
	type result struct {
		dc  *amqp.DeferredConfirmation
		err error
	}
	res := make(chan result, 1)
	go func() {
		dc, err := s.ch.PublishWithDeferredConfirm("", key, mandatory, false, msg)
		res <- result{dc, err}
	}()
	select {
	case r := <-res:
		return r.dc, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-s.done:
		return nil, errors.New("connection lost")
	}
}

// refused is the error for a message the broker did not confirm: amqp091
// also reports every unconfirmed message as refused when the channel closes.
func (s *session) refused() error {
	if s.ch.IsClosed() {
		return unavailable(nil, "the connection was lost before it confirmed the request")
	}
	return notSent(nil, "it refused the request")
}

// prepare encodes a request and returns it with the live session, or why
// it cannot be sent now.
func (t *Transport) prepare(ctx context.Context, method string, args any) ([]byte, *session, error) {
	body, err := rpc.EncodeRequest(ctx, method, args)
	if err != nil {
		return nil, nil, err
	}
	s, err := t.current()
	if err != nil {
		return nil, nil, err
	}
	return body, s, nil
}

// Call sends method to one engine and waits for its reply, at most
// CallTimeout and no longer than ctx allows.
func (t *Transport) Call(ctx context.Context, method string, args, reply any) error {
	return t.call(ctx, "", method, args, reply)
}

// call is Call through the topic's queue or, when engine is set, through
// that engine's own (route.go).
func (t *Transport) call(ctx context.Context, engine, method string, args, reply any) error {
	body, s, err := t.prepare(ctx, method, args)
	if err != nil {
		return err
	}
	timeout := t.cfg.CallTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(dl))
	}
	timedOut := func(cause error) error {
		return errdefs.Wrap(errdefs.KindTimeout, cause, "No reply from the engine to %s within %s.", method, max(timeout, 0).Round(time.Millisecond))
	}
	if timeout <= 0 {
		return timedOut(context.DeadlineExceeded)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	queue := t.cfg.Topic
	if engine != "" {
		if queue, err = t.engineQueueOf(s, engine); err != nil {
			t.log.Warn("cannot address an engine's queue; sending to the shared one", "engine", engine, "error", err)
			queue = t.cfg.Topic
		}
	}
	id := uuid.NewString()
	pending := s.expect(id)
	defer s.forget(id)
	msg := amqp.Publishing{
		ContentType:   contentType,
		DeliveryMode:  amqp.Transient,
		CorrelationId: id,
		ReplyTo:       directReplyTo,
		// A request still queued when its caller gave up is dropped by the
		// broker instead of being run for nobody.
		Expiration: expiration(timeout),
		Type:       method,
		Timestamp:  time.Now(),
		Body:       body,
	}
	// An engine's queue may have gone (route.go): the broker hands the
	// request back and it goes to the shared queue instead.
	dc, err := s.publish(ctx, queue, queue != t.cfg.Topic, msg)
	if err != nil {
		if ctx.Err() != nil {
			return timedOut(ctx.Err())
		}
		return notSent(err, "could not send the request")
	}
	confirmed := dc.Done()
	for {
		select {
		case resp := <-pending.reply:
			return t.decodeReply(resp, reply)
		case <-pending.returned:
			s.undeclare(queue)
			t.log.Info("an engine's queue is gone; sending the request to the shared one", "engine", engine)
			if dc, err = s.publish(ctx, t.cfg.Topic, false, msg); err != nil {
				if ctx.Err() != nil {
					return timedOut(ctx.Err())
				}
				return notSent(err, "could not send the request")
			}
			confirmed = dc.Done()
		case <-confirmed:
			if !dc.Acked() {
				return s.refused()
			}
			confirmed = nil
		case <-s.done:
			select {
			case resp := <-pending.reply:
				return t.decodeReply(resp, reply)
			default:
			}
			return unavailable(nil, "the connection was lost while waiting for the reply to %s", method)
		case <-t.closing:
			return errClosed()
		case <-ctx.Done():
			return timedOut(ctx.Err())
		}
	}
}

// decodeReply reads a reply's body into reply, logging one that is not
// JSON.
func (t *Transport) decodeReply(body []byte, reply any) error {
	err := rpc.DecodeResponse(body, reply)
	var syntax *json.SyntaxError
	if errors.As(err, &syntax) {
		t.log.Error("malformed RPC reply", "error", err)
	}
	return err
}

// Cast sends method to one engine without waiting for it to be handled. The
// message is persistent; Cast returns nil once the broker has confirmed it,
// and an unavailable error when it refuses it or does not answer within
// ConfirmTimeout (bounded by ctx too). In the latter case the message may
// still have been delivered.
func (t *Transport) Cast(ctx context.Context, method string, args any) error {
	body, s, err := t.prepare(ctx, method, args)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, t.cfg.ConfirmTimeout)
	defer cancel()
	dc, err := s.publish(ctx, t.cfg.Topic, false, amqp.Publishing{
		ContentType:  contentType,
		DeliveryMode: amqp.Persistent,
		MessageId:    uuid.NewString(),
		Type:         method,
		Timestamp:    time.Now(),
		Body:         body,
	})
	if err != nil {
		return notSent(err, "could not send the request")
	}
	return s.confirmed(ctx, dc)
}

// confirmed waits for the broker's confirmation of a published message.
func (s *session) confirmed(ctx context.Context, dc *amqp.DeferredConfirmation) error {
	select {
	case <-dc.Done():
		if dc.Acked() {
			return nil
		}
		return s.refused()
	case <-s.done:
		return unavailable(nil, "the connection was lost before it confirmed the request")
	case <-ctx.Done():
		return unavailable(ctx.Err(), "no confirmation of the request in time")
	}
}

// Close stops the transport: Call and Cast fail from now on, calls waiting
// for a reply fail, Serve loops stop taking requests and wait for their
// handlers (at most DrainTimeout), then the connection is closed.
func (t *Transport) Close() error {
	t.closeOnce.Do(func() {
		t.mu.Lock()
		close(t.closing)
		t.mu.Unlock()
		drained := make(chan struct{})
		go func() {
			t.serving.Wait()
			close(drained)
		}()
		select {
		case <-drained:
		case <-time.After(t.cfg.DrainTimeout + closeTimeout):
			t.log.Warn("closing the message broker connection with RPC handlers still running")
		}
		close(t.quit)
		<-t.loopDone
	})
	return nil
}

// expiration is d as an AMQP per-message TTL: whole milliseconds, at least 1.
func expiration(d time.Duration) string {
	ms := (d + time.Millisecond - 1) / time.Millisecond
	return strconv.FormatInt(max(int64(ms), 1), 10)
}

func unavailable(cause error, format string, args ...any) error {
	return errdefs.Wrap(errdefs.KindUnavailable, cause, "Message broker unavailable: "+format+". Try again later.", args...)
}

// notSent is unavailable for a request that certainly did not reach the
// broker (rpc.ErrNotSent).
func notSent(cause error, format string, args ...any) error {
	return unavailable(errors.Join(rpc.ErrNotSent, cause), format, args...)
}

func errClosed() error {
	return errdefs.Unavailable("The RPC transport is closed.")
}
