//go:build integration

package testutil

import (
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func dialRabbit(url string) (*amqp.Connection, error) {
	return amqp.DialConfig(url, amqp.Config{Dial: amqp.DefaultDial(2 * time.Second)})
}

// alive says whether pid is a running process (not a zombie).
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	_, state, ok := procStat(pid)
	return ok && state != "Z"
}

func TestRabbitMQ_StopStartKeepsDurableMessages(t *testing.T) {
	var brokerPID, epmdPID int
	t.Run("broker", func(t *testing.T) {
		start := time.Now()
		mq := StartRabbitMQ(t)
		t.Logf("RabbitMQ started in %s", time.Since(start).Round(time.Millisecond))
		brokerPID, epmdPID = mq.broker.pid(), mq.epmd.pid()
		require.Contains(t, mq.URL, "rabbit://guest:guest@127.0.0.1:")

		conn, err := dialRabbit(mq.AMQPURL)
		require.NoError(t, err)
		ch, err := conn.Channel()
		require.NoError(t, err)
		_, err = ch.QueueDeclare("kept", true, false, false, false, nil)
		require.NoError(t, err)
		require.NoError(t, ch.Confirm(false))
		dc, err := ch.PublishWithDeferredConfirm("", "kept", false, false, amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte("hello")})
		require.NoError(t, err)
		require.True(t, dc.Wait())

		closed := conn.NotifyClose(make(chan *amqp.Error, 1))
		mq.Stop(t)
		select {
		case <-closed:
		case <-time.After(5 * time.Second):
			t.Fatal("the client's connection outlived the broker")
		}
		_, err = dialRabbit(mq.AMQPURL)
		require.Error(t, err, "a stopped broker accepts no connection")
		assert.True(t, alive(epmdPID), "epmd stays for the restart")

		start = time.Now()
		mq.Start(t)
		t.Logf("RabbitMQ restarted in %s", time.Since(start).Round(time.Millisecond))
		conn, err = dialRabbit(mq.AMQPURL)
		require.NoError(t, err)
		defer conn.Close()
		ch, err = conn.Channel()
		require.NoError(t, err)
		msg, ok, err := ch.Get("kept", true)
		require.NoError(t, err)
		require.True(t, ok, "the persistent message survived the restart")
		assert.Equal(t, "hello", string(msg.Body))
		brokerPID = mq.broker.pid()
	})
	assert.False(t, alive(brokerPID), "the broker is stopped when its test ends")
	assert.False(t, alive(epmdPID), "its epmd is stopped too")
}
