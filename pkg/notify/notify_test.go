package notify_test

import (
	"context"
	"net"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/db"
	"github.com/qinling-go/qinling/pkg/db/dbtest"
	"github.com/qinling-go/qinling/pkg/notify"
)

// TestFlush_BrokerDownKeepsTheOutbox: what the broker did not confirm
// stays queued.
func TestFlush_BrokerDownKeepsTheOutbox(t *testing.T) {
	ctx := context.Background()
	d := dbtest.SQLite(t)
	d.EnableNotifications("qinling.test")
	require.NoError(t, d.CreateRuntime(ctx, &db.Runtime{Base: db.Base{ProjectID: "p"}, Image: "python3", Status: db.StatusCreating}))
	// A port nothing listens on: take one and let it go.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())

	s, err := notify.New(d, notify.Config{URL: "rabbit://guest:secret@" + addr + "/", Exchange: "qinling", Topics: []string{"notifications"}})
	require.NoError(t, err)
	n, err := s.Flush(ctx)
	require.Error(t, err)
	require.NotContains(t, err.Error(), "secret", "no password in errors")
	require.Zero(t, n)
	left, err := d.OutboxLen(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 1, left)
}

func TestNew_NeedsExchangeAndTopics(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  notify.Config
	}{
		{name: "no topic", cfg: notify.Config{Exchange: "qinling"}},
		{name: "no exchange", cfg: notify.Config{Topics: []string{"notifications"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := notify.New(dbtest.SQLite(t), tc.cfg)
			require.Error(t, err)
		})
	}
}
