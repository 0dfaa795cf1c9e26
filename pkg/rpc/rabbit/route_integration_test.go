//go:build integration

package rabbit

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/rpc"
	"github.com/qinling-go/qinling/pkg/testutil"
)

// TestRabbitMQ_Route: a request from the shared queue whose handler answers
// rpc.Forward goes to the named engine's own queue as it came, and that
// engine answers the caller; when that engine does not take it within
// EngineQueueTTL (dead), it comes back to the shared queue, not
// forwardable, and runs there.
func TestRabbitMQ_Route(t *testing.T) {
	t.Parallel()
	mq := testutil.StartRabbitMQ(t)
	ctx := context.Background()
	short := func(c *Config) { c.EngineQueueTTL = 500 * time.Millisecond }
	// shared is the only consumer of the shared queue: it forwards what it
	// may to "b" and answers the rest itself.
	shared := func(ran chan<- string) rpc.HandlerFunc {
		return func(ctx context.Context, method string, args json.RawMessage) (any, error) {
			if rpc.Forwardable(ctx) {
				return nil, &rpc.Forward{Engine: "b"}
			}
			ran <- "a"
			return "a", nil
		}
	}
	for _, tc := range []struct {
		name    string
		ownerUp bool
		want    string
	}{
		{name: "the owner answers", ownerUp: true, want: "b"},
		{name: "a dead owner's request comes back", want: "a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			topic := uniqueTopic()
			ran := make(chan string, 4)
			a := newTestTransport(t, mq.URL, topic, short)
			serve(t, a, shared(ran))
			if tc.ownerUp {
				serveOwnerB(t, mq.URL, topic, short, ran)
			}
			client := newTestTransport(t, mq.URL, topic, nil)
			var got string
			require.NoError(t, client.Call(ctx, "who", num{}, &got))
			assert.Equal(t, tc.want, got, "call")
			assert.Equal(t, tc.want, receive(t, ran, 10*time.Second, "the call handled"))
			require.NoError(t, client.Cast(ctx, "who", num{}))
			assert.Equal(t, tc.want, receive(t, ran, 10*time.Second, "the cast handled"), "cast")
			nothing(t, ran, 700*time.Millisecond, "a request handled twice")
		})
	}
}

// serveOwnerB serves engine "b"'s own queue until the test ends: each
// request, never forwardable there, is answered "b" and reported on ran.
func serveOwnerB(t *testing.T, url, topic string, mod func(*Config), ran chan<- string) {
	b := newTestTransport(t, url, topic, mod)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		assert.NoError(t, b.ServeEngine(ctx, "b", rpc.HandlerFunc(func(ctx context.Context, method string, args json.RawMessage) (any, error) {
			assert.False(t, rpc.Forwardable(ctx), "a routed request is not forwarded again")
			ran <- "b"
			return "b", nil
		})))
	}()
	t.Cleanup(func() { cancel(); <-done })
}

// TestRabbitMQ_RouteDeclareRefused: when the broker refuses to declare an
// engine's queue (one of that name exists with other arguments:
// PRECONDITION_FAILED, which closes the channel it came on), the request
// runs where it is, and the session's publishing channel, which every call,
// cast and reply of the transport shares, stays open.
func TestRabbitMQ_RouteDeclareRefused(t *testing.T) {
	t.Parallel()
	mq := testutil.StartRabbitMQ(t)
	ctx := context.Background()
	topic := uniqueTopic()
	conn, err := amqp.Dial(mq.AMQPURL)
	require.NoError(t, err)
	defer conn.Close()
	ch, err := conn.Channel()
	require.NoError(t, err)
	_, err = ch.QueueDeclare(topic+".b", true, false, false, false, amqp.Table{"x-max-length": int64(7)})
	require.NoError(t, err)

	ran := make(chan string, 4)
	a := newTestTransport(t, mq.URL, topic, nil)
	serve(t, a, func(ctx context.Context, method string, args json.RawMessage) (any, error) {
		if rpc.Forwardable(ctx) {
			return nil, &rpc.Forward{Engine: "b"}
		}
		ran <- "a"
		return "a", nil
	})
	a.mu.Lock()
	before := a.sess
	a.mu.Unlock()
	require.NotNil(t, before)

	client := newTestTransport(t, mq.URL, topic, nil)
	for i := range 2 {
		var got string
		require.NoError(t, client.Call(ctx, "who", num{}, &got), "call %d", i)
		assert.Equal(t, "a", got, "call %d runs where the forward failed", i)
		assert.Equal(t, "a", receive(t, ran, 10*time.Second, "the call handled"))
	}
	require.False(t, before.ch.IsClosed(), "the shared publishing channel is still open")
	a.mu.Lock()
	after := a.sess
	a.mu.Unlock()
	require.Same(t, before, after, "no reconnection")
	var got string
	require.NoError(t, a.Call(ctx, "who", num{}, &got), "the transport's own calls still go out")
	assert.Equal(t, "a", got)
}

// TestRabbitMQ_CallEngine: a call addressed to one engine's queue (how
// qinling-api sends a sync execution to the owner of its function's warm
// workers) is answered by that engine, not forwardable; one whose engine
// is dead comes back to the shared queue after EngineQueueTTL and runs
// there; one whose queue was deleted after the caller declared it is handed
// back by the broker and goes to the shared queue at once (sent without
// asking for that, it was dropped and the call timed out). None is lost or
// run twice.
func TestRabbitMQ_CallEngine(t *testing.T) {
	t.Parallel()
	mq := testutil.StartRabbitMQ(t)
	ctx := context.Background()
	short := func(c *Config) { c.EngineQueueTTL = 500 * time.Millisecond }
	for _, tc := range []struct {
		name    string
		ownerUp bool
		// deleted: the engine's queue is deleted once the client has
		// declared it (a first call to the dead engine does that).
		deleted bool
		want    string
	}{
		{name: "the owner answers", ownerUp: true, want: "b"},
		{name: "a dead owner's call comes back", want: "a"},
		{name: "a deleted queue's call is handed back", deleted: true, want: "a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			topic := uniqueTopic()
			ran := make(chan string, 4)
			a := newTestTransport(t, mq.URL, topic, short)
			// forwardable says how each request arrived on the shared queue.
			forwardable := make(chan bool, 4)
			serve(t, a, func(ctx context.Context, method string, args json.RawMessage) (any, error) {
				forwardable <- rpc.Forwardable(ctx)
				ran <- "a"
				return "a", nil
			})
			if tc.ownerUp {
				serveOwnerB(t, mq.URL, topic, short, ran)
			}
			client := newTestTransport(t, mq.URL, topic, short)
			if tc.deleted {
				var got string
				require.NoError(t, client.CallEngine(ctx, "b", "who", num{}, &got))
				require.Equal(t, "a", receive(t, ran, 10*time.Second, "the first call handled"))
				require.False(t, receive(t, forwardable, time.Second, "the first call's mark"))
				conn, err := amqp.Dial(mq.AMQPURL)
				require.NoError(t, err)
				defer conn.Close()
				ch, err := conn.Channel()
				require.NoError(t, err)
				_, err = ch.QueueDelete(topic+".b", false, false, false)
				require.NoError(t, err)
			}
			var got string
			require.NoError(t, client.CallEngine(ctx, "b", "who", num{}, &got))
			assert.Equal(t, tc.want, got, "call")
			assert.Equal(t, tc.want, receive(t, ran, 10*time.Second, "the call handled"))
			if tc.want == "a" {
				// One back from b's queue is marked routed; one handed back
				// as unroutable arrives as any new request does, and its
				// engine decides its route as for an older API's.
				assert.Equal(t, tc.deleted, receive(t, forwardable, time.Second, "the call's mark"))
			}
			nothing(t, ran, 700*time.Millisecond, "a request handled twice")
		})
	}
}
