//go:build integration

package rabbit

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/errdefs"
	"github.com/qinling-go/qinling/pkg/rpc"
	"github.com/qinling-go/qinling/pkg/rpc/rpctest"
	"github.com/qinling-go/qinling/pkg/testutil"
)

// Logs go to stderr, which go test shows for a failing package only.
var testLog = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))

// dropConnection cuts the TCP connection under the current session without
// an AMQP goodbye, as an engine crash or a network failure would.
func (t *Transport) dropConnection() {
	t.mu.Lock()
	s := t.sess
	t.mu.Unlock()
	if s != nil {
		_ = s.netConn.Close()
	}
}

func uniqueTopic() string { return "test-" + uuid.NewString() }

func newTestTransport(t *testing.T, url, topic string, mod func(*Config)) *Transport {
	t.Helper()
	cfg := Config{
		URL:               url,
		Topic:             topic,
		CallTimeout:       10 * time.Second,
		ReconnectInterval: 100 * time.Millisecond,
		ReconnectMax:      time.Second,
		ConfirmTimeout:    3 * time.Second,
		DrainTimeout:      5 * time.Second,
		Logger:            testLog,
	}
	if mod != nil {
		mod(&cfg)
	}
	tr, err := New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { tr.Close() })
	return tr
}

// serve runs a Serve loop until the test ends.
func serve(t *testing.T, tr *Transport, h rpc.HandlerFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		assert.NoError(t, tr.Serve(ctx, h))
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return")
		}
	})
}

type num struct {
	N int `json:"n"`
}

func decodeN(t *testing.T, raw json.RawMessage) int {
	var a num
	require.NoError(t, json.Unmarshal(raw, &a))
	return a.N
}

// queueDepth is the number of ready messages in topic's queue.
func queueDepth(t *testing.T, mq *testutil.RabbitMQ, topic string) int {
	t.Helper()
	conn, err := amqp.Dial(mq.AMQPURL)
	require.NoError(t, err)
	defer conn.Close()
	ch, err := conn.Channel()
	require.NoError(t, err)
	q, err := ch.QueueDeclarePassive(topic, true, false, false, false, nil)
	require.NoError(t, err)
	return q.Messages
}

func receive[T any](t *testing.T, ch <-chan T, within time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(within):
		t.Fatalf("no %s within %s", what, within)
		panic("unreachable")
	}
}

// nothing checks that ch receives nothing during the given time (or, for
// 0, holds nothing now).
func nothing[T any](t *testing.T, ch <-chan T, during time.Duration, what string) {
	t.Helper()
	if during == 0 {
		select {
		case v := <-ch:
			t.Fatalf("unexpected %s: %v", what, v)
		default:
		}
		return
	}
	select {
	case v := <-ch:
		t.Fatalf("unexpected %s: %v", what, v)
	case <-time.After(during):
	}
}

func TestRabbitMQ(t *testing.T) {
	t.Parallel()
	start := time.Now()
	mq := testutil.StartRabbitMQ(t)
	t.Logf("RabbitMQ started in %s", time.Since(start).Round(time.Millisecond))
	ctx := context.Background()

	t.Run("conformance", func(t *testing.T) {
		rpctest.Run(t, func(t *testing.T) rpc.Transport {
			return newTestTransport(t, mq.URL, uniqueTopic(), nil)
		})
	})

	t.Run("an ArgsHandler takes its arguments decoded once, as a value", func(t *testing.T) {
		topic := uniqueTopic()
		h := &typedHandler{}
		ctx, cancel := context.WithCancel(ctx)
		t.Cleanup(cancel)
		go func() { _ = newTestTransport(t, mq.URL, topic, nil).Serve(ctx, h) }()
		client := newTestTransport(t, mq.URL, topic, nil)
		var out num
		require.NoError(t, client.Call(ctx, "inc", num{N: 41}, &out))
		require.Equal(t, 42, out.N)
		require.Equal(t, int64(1), h.values.Load(), "handed as a value")
		require.Zero(t, h.raws.Load(), "not as JSON")
		err := client.Call(ctx, "inc", num{N: -1}, &out)
		require.Equal(t, errdefs.KindConflict, errdefs.KindOf(err), "the error keeps its kind: %v", err)
		err = client.Call(ctx, "nope", num{}, &out)
		require.Equal(t, errdefs.KindInvalid, errdefs.KindOf(err), "an unknown method reaches Handle: %v", err)
		require.Equal(t, int64(1), h.raws.Load())
	})

	t.Run("round trip latency", func(t *testing.T) {
		topic := uniqueTopic()
		serve(t, newTestTransport(t, mq.URL, topic, nil), func(ctx context.Context, method string, args json.RawMessage) (any, error) {
			return num{N: decodeN(t, args) + 1}, nil
		})
		client := newTestTransport(t, mq.URL, topic, nil)
		const n = 200
		start := time.Now()
		for i := range n {
			var out num
			require.NoError(t, client.Call(ctx, "inc", num{N: i}, &out))
			require.Equal(t, i+1, out.N)
		}
		callAvg := time.Since(start) / n
		start = time.Now()
		for i := range n {
			require.NoError(t, client.Cast(ctx, "inc", num{N: i}))
		}
		castAvg := time.Since(start) / n
		t.Logf("sequential call round trip %s, confirmed persistent cast %s (mean of %d)", callAvg, castAvg, n)
	})

	t.Run("fair dispatch: a busy engine is not handed more than its prefetch", func(t *testing.T) {
		topic := uniqueTopic()
		type start struct {
			server string
			n      int
		}
		started := make(chan start, 10)
		release := map[string]chan struct{}{"a": make(chan struct{}, 10), "b": make(chan struct{}, 10)}
		for _, name := range []string{"a", "b"} {
			tr := newTestTransport(t, mq.URL, topic, func(c *Config) { c.Prefetch = 1 })
			serve(t, tr, func(ctx context.Context, method string, args json.RawMessage) (any, error) {
				started <- start{name, decodeN(t, args)}
				select {
				case <-release[name]:
				case <-ctx.Done():
				}
				return nil, nil
			})
		}
		client := newTestTransport(t, mq.URL, topic, nil)
		for i := 1; i <= 3; i++ {
			require.NoError(t, client.Cast(ctx, "work", num{N: i}))
		}
		first := receive(t, started, 10*time.Second, "first request started")
		second := receive(t, started, 10*time.Second, "second request started")
		assert.NotEqual(t, first.server, second.server, "one request to each engine")
		nothing(t, started, 500*time.Millisecond, "third request started while both engines are busy")
		assert.Equal(t, 1, queueDepth(t, mq, topic), "the third request waits in the queue")

		release[first.server] <- struct{}{}
		third := receive(t, started, 10*time.Second, "third request started")
		assert.Equal(t, first.server, third.server, "the third request goes to the engine that became free")
		assert.Equal(t, 6, first.n+second.n+third.n)
	})

	t.Run("a request whose engine dies is delivered to another", func(t *testing.T) {
		topic := uniqueTopic()
		aStarted := make(chan int, 4)
		aRelease := make(chan struct{})
		defer close(aRelease)
		// A reconnects only after the message went to B.
		a := newTestTransport(t, mq.URL, topic, func(c *Config) {
			c.Prefetch = 1
			c.ReconnectInterval, c.ReconnectMax = 5*time.Second, 5*time.Second
		})
		serve(t, a, func(ctx context.Context, method string, args json.RawMessage) (any, error) {
			aStarted <- decodeN(t, args)
			select {
			case <-aRelease:
			case <-ctx.Done():
			}
			return nil, nil
		})
		b := newTestTransport(t, mq.URL, topic, func(c *Config) { c.Prefetch = 1 })
		require.NoError(t, b.Cast(ctx, "work", num{N: 7}))
		assert.Equal(t, 7, receive(t, aStarted, 10*time.Second, "delivery to A"))

		bSeen := make(chan int, 4)
		serve(t, b, func(ctx context.Context, method string, args json.RawMessage) (any, error) {
			bSeen <- decodeN(t, args)
			return nil, nil
		})
		nothing(t, bSeen, 500*time.Millisecond, "delivery to B while A holds the request")

		a.dropConnection()
		assert.Equal(t, 7, receive(t, bSeen, 5*time.Second, "redelivery to B"))
		aRelease <- struct{}{} // A's handler returns; its acknowledgement has nowhere to go
		nothing(t, bSeen, 500*time.Millisecond, "a third delivery")
		nothing(t, aStarted, 0, "a second delivery to A")
		assert.Equal(t, 0, queueDepth(t, mq, topic))
	})

	t.Run("a panicking handler answers an internal error and is acknowledged", func(t *testing.T) {
		topic := uniqueTopic()
		server := newTestTransport(t, mq.URL, topic, nil)
		panicked := make(chan string, 4)
		serve(t, server, func(ctx context.Context, method string, args json.RawMessage) (any, error) {
			if method == "boom" {
				panicked <- method
				panic("boom")
			}
			return "fine", nil
		})
		client := newTestTransport(t, mq.URL, topic, nil)
		err := client.Call(ctx, "boom", nil, nil)
		require.ErrorIs(t, err, errdefs.ErrInternal)
		assert.Equal(t, "Internal server error.", errdefs.PublicMessage(err))
		var out string
		require.NoError(t, client.Call(ctx, "other", nil, &out), "the engine still serves")
		assert.Equal(t, "fine", out)

		require.NoError(t, client.Cast(ctx, "boom", nil))
		receive(t, panicked, 10*time.Second, "panic")
		receive(t, panicked, 10*time.Second, "panic")
		require.NoError(t, server.Close()) // unacknowledged messages would go back to the queue
		assert.Equal(t, 0, queueDepth(t, mq, topic))
	})

	t.Run("a malformed request is rejected, not redelivered", func(t *testing.T) {
		topic := uniqueTopic()
		server := newTestTransport(t, mq.URL, topic, nil)
		seen := make(chan int, 4)
		serve(t, server, func(ctx context.Context, method string, args json.RawMessage) (any, error) {
			seen <- decodeN(t, args)
			return nil, nil
		})
		conn, err := amqp.Dial(mq.AMQPURL)
		require.NoError(t, err)
		defer conn.Close()
		ch, err := conn.Channel()
		require.NoError(t, err)
		replies, err := ch.Consume(directReplyTo, "", true, false, false, false, nil)
		require.NoError(t, err)
		for _, body := range []string{"not json", `{"args":{}}`} {
			require.NoError(t, ch.Publish("", topic, false, false, amqp.Publishing{
				Body: []byte(body), ReplyTo: directReplyTo, CorrelationId: body,
			}))
			d := receive(t, replies, 10*time.Second, "reply to a malformed call")
			assert.Equal(t, body, d.CorrelationId)
			var resp rpc.Response
			require.NoError(t, json.Unmarshal(d.Body, &resp))
			require.NotNil(t, resp.Error)
			assert.Equal(t, errdefs.KindInvalid, resp.Error.Kind)
		}
		client := newTestTransport(t, mq.URL, topic, nil)
		require.NoError(t, client.Cast(ctx, "work", num{N: 1}))
		assert.Equal(t, 1, receive(t, seen, 10*time.Second, "the well-formed request"))
		require.NoError(t, server.Close())
		assert.Equal(t, 0, queueDepth(t, mq, topic))
		nothing(t, seen, 0, "a malformed request reaching the handler")
	})

	t.Run("a caller that went away does not break the engine", func(t *testing.T) {
		topic := uniqueTopic()
		started := make(chan struct{}, 1)
		release := make(chan struct{})
		server := newTestTransport(t, mq.URL, topic, nil)
		serve(t, server, func(ctx context.Context, method string, args json.RawMessage) (any, error) {
			if method == "block" {
				started <- struct{}{}
				<-release
			}
			return map[string]string{"method": method}, nil
		})
		gone := newTestTransport(t, mq.URL, topic, nil)
		pending := make(chan error, 1)
		go func() { pending <- gone.Call(ctx, "block", nil, nil) }()
		receive(t, started, 10*time.Second, "handler start")
		require.NoError(t, gone.Close())
		assert.ErrorIs(t, receive(t, pending, 3*time.Second, "failure of the pending call"), errdefs.ErrUnavailable)
		close(release) // the reply goes to a caller that is no more

		client := newTestTransport(t, mq.URL, topic, nil)
		var out map[string]string
		require.NoError(t, client.Call(ctx, "after", nil, &out))
		assert.Equal(t, "after", out["method"])
		require.NoError(t, server.Close())
		assert.Equal(t, 0, queueDepth(t, mq, topic), "both requests acknowledged")
	})

	t.Run("CallTimeout bounds a call, and its request expires unstarted", func(t *testing.T) {
		topic := uniqueTopic()
		client := newTestTransport(t, mq.URL, topic, func(c *Config) { c.CallTimeout = 300 * time.Millisecond })
		start := time.Now()
		err := client.Call(ctx, "late", nil, nil)
		require.ErrorIs(t, err, errdefs.ErrTimeout)
		assert.Less(t, time.Since(start), 2*time.Second)
		assert.Equal(t, "No reply from the engine to late within 300ms.", errdefs.PublicMessage(err))

		time.Sleep(400 * time.Millisecond) // past the request's TTL
		seen := make(chan string, 4)
		serve(t, newTestTransport(t, mq.URL, topic, nil), func(ctx context.Context, method string, args json.RawMessage) (any, error) {
			seen <- method
			return nil, nil
		})
		require.NoError(t, client.Cast(ctx, "marker", nil))
		assert.Equal(t, "marker", receive(t, seen, 10*time.Second, "marker"), "the expired call never runs")
	})

	t.Run("casts wait in the queue for an engine", func(t *testing.T) {
		topic := uniqueTopic()
		client := newTestTransport(t, mq.URL, topic, nil)
		for i := range 3 {
			require.NoError(t, client.Cast(ctx, "work", num{N: i}))
		}
		assert.Equal(t, 3, queueDepth(t, mq, topic))
		seen := make(chan int, 4)
		serve(t, newTestTransport(t, mq.URL, topic, nil), func(ctx context.Context, method string, args json.RawMessage) (any, error) {
			seen <- decodeN(t, args)
			return nil, nil
		})
		got := map[int]bool{}
		for range 3 {
			got[receive(t, seen, 10*time.Second, "queued cast")] = true
		}
		assert.Equal(t, map[int]bool{0: true, 1: true, 2: true}, got)
	})
}

func TestRabbitMQ_BrokerRestart(t *testing.T) {
	t.Parallel()
	mq := testutil.StartRabbitMQ(t)
	ctx := context.Background()
	topic := uniqueTopic()

	started := make(chan struct{}, 1)
	server := newTestTransport(t, mq.URL, topic, nil)
	serve(t, server, func(ctx context.Context, method string, args json.RawMessage) (any, error) {
		if method == "block" {
			started <- struct{}{}
			<-ctx.Done()
			return nil, ctx.Err()
		}
		return num{N: decodeN(t, args) * 2}, nil
	})
	client := newTestTransport(t, mq.URL, topic, nil)
	var out num
	require.NoError(t, client.Call(ctx, "double", num{N: 1}, &out))

	// Persistent casts to a queue nobody consumes yet must outlive the broker.
	parked := uniqueTopic()
	parker := newTestTransport(t, mq.URL, parked, nil)
	for i := range 3 {
		require.NoError(t, parker.Cast(ctx, "work", num{N: i}))
	}

	pending := make(chan error, 1)
	go func() { pending <- client.Call(ctx, "block", nil, nil) }()
	receive(t, started, 10*time.Second, "handler start")

	mq.Stop(t)
	err := receive(t, pending, 5*time.Second, "failure of the call in flight")
	assert.ErrorIs(t, err, errdefs.ErrUnavailable)
	assert.NotErrorIs(t, err, rpc.ErrNotSent, "a call in flight was sent: an engine may run it")
	t.Logf("call in flight when the broker stopped: %v", err)
	for name, send := range map[string]func() error{
		"call": func() error { return client.Call(ctx, "double", num{N: 2}, nil) },
		"cast": func() error { return client.Cast(ctx, "double", num{N: 2}) },
	} {
		start := time.Now()
		err := send()
		assert.ErrorIs(t, err, errdefs.ErrUnavailable, name)
		assert.Less(t, time.Since(start), time.Second, "%s while the broker is down must fail fast", name)
	}

	mq.Start(t)
	restarted := time.Now()
	// Client and server reconnect by themselves; the reply proves both did.
	var lastErr error
	require.Eventually(t, func() bool {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		lastErr = client.Call(ctx, "double", num{N: 21}, &out)
		return lastErr == nil && out.N == 42
	}, 30*time.Second, 100*time.Millisecond, "no successful call after the restart (last: %v)", lastErr)
	t.Logf("calls work again %s after the broker accepted connections", time.Since(restarted).Round(time.Millisecond))

	seen := make(chan int, 4)
	serve(t, parker, func(ctx context.Context, method string, args json.RawMessage) (any, error) {
		seen <- decodeN(t, args)
		return nil, nil
	})
	got := map[int]bool{}
	for range 3 {
		got[receive(t, seen, 10*time.Second, "a cast sent before the restart")] = true
	}
	assert.Equal(t, map[int]bool{0: true, 1: true, 2: true}, got)
	require.NoError(t, client.Cast(ctx, "double", num{N: 3}), "casts are confirmed again")
}

// typedHandler is an rpc.ArgsHandler of one method, "inc", which fails
// with a conflict for a negative number.
type typedHandler struct{ values, raws atomic.Int64 }

func (h *typedHandler) NewArgs(method string) any {
	if method == "inc" {
		return new(num)
	}
	return nil
}

func (h *typedHandler) Handle(_ context.Context, method string, _ json.RawMessage) (any, error) {
	h.raws.Add(1)
	return nil, errdefs.Invalid("Unknown method %q.", method)
}

func (h *typedHandler) HandleValue(_ context.Context, _ string, args any) (any, error) {
	h.values.Add(1)
	a := args.(*num)
	if a.N < 0 {
		return nil, errdefs.New(errdefs.KindConflict, "negative")
	}
	return num{N: a.N + 1}, nil
}
