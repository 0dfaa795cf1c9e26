package rabbit

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/errdefs"
	"github.com/qinling-go/qinling/pkg/rpc"
)

func TestParseURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		in   string
		want []broker
	}{
		{
			name: "oslo single host",
			in:   "rabbit://openstack:s3cret@mq:5672/",
			want: []broker{{Host: "mq", Port: 5672, User: "openstack", Password: "s3cret", Vhost: "/"}},
		},
		{
			name: "oslo several hosts with a vhost",
			in:   "rabbit://u1:p1@h1:5672,u2:p2@h2:5673/qinling",
			want: []broker{
				{Host: "h1", Port: 5672, User: "u1", Password: "p1", Vhost: "qinling"},
				{Host: "h2", Port: 5673, User: "u2", Password: "p2", Vhost: "qinling"},
			},
		},
		{
			name: "amqp scheme, default port, no path",
			in:   "amqp://u:p@mq",
			want: []broker{{Host: "mq", Port: 5672, User: "u", Password: "p", Vhost: "/"}},
		},
		{
			name: "no credentials is guest",
			in:   "rabbit://h1,h2:5673/",
			want: []broker{
				{Host: "h1", Port: 5672, User: "guest", Password: "guest", Vhost: "/"},
				{Host: "h2", Port: 5673, User: "guest", Password: "guest", Vhost: "/"},
			},
		},
		{
			name: "percent-encoded credentials and vhost",
			in:   "rabbit://us%40er:p%2Fa%3As%2Cs@mq:5672/%2Fprod",
			want: []broker{{Host: "mq", Port: 5672, User: "us@er", Password: "p/a:s,s", Vhost: "/prod"}},
		},
		{
			name: "raw @ and : in the password, as oslo splits them",
			in:   "rabbit://user:p@ss:w0rd@mq/",
			want: []broker{{Host: "mq", Port: 5672, User: "user", Password: "p@ss:w0rd", Vhost: "/"}},
		},
		{
			name: "double slash is the / vhost",
			in:   "rabbit://u:p@mq//",
			want: []broker{{Host: "mq", Port: 5672, User: "u", Password: "p", Vhost: "/"}},
		},
		{
			name: "IPv6 hosts",
			in:   "rabbit://u:p@[::1]:5673,u:p@[fe80::1]/",
			want: []broker{
				{Host: "::1", Port: 5673, User: "u", Password: "p", Vhost: "/"},
				{Host: "fe80::1", Port: 5672, User: "u", Password: "p", Vhost: "/"},
			},
		},
		{
			name: "empty password",
			in:   "rabbit://u:@mq/",
			want: []broker{{Host: "mq", Port: 5672, User: "u", Password: "", Vhost: "/"}},
		},
		{
			name: "empty host entries are skipped",
			in:   "rabbit://u:p@h1,,u:p@h2,/",
			want: []broker{
				{Host: "h1", Port: 5672, User: "u", Password: "p", Vhost: "/"},
				{Host: "h2", Port: 5672, User: "u", Password: "p", Vhost: "/"},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseURL(tc.in)
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestParseURL_Malformed(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, in, want string }{
		{name: "no scheme", in: "mq:5672", want: "want rabbit://"},
		{name: "other scheme", in: "kafka://u:s3cret@mq/", want: `unsupported scheme "kafka"`},
		{name: "no host", in: "rabbit:///", want: "no host"},
		{name: "credentials without a host", in: "rabbit://u:s3cret@/", want: "host 1: no host name"},
		{name: "bad port", in: "rabbit://u:s3cret@mq:amqp/", want: `host 1: bad port "amqp"`},
		{name: "port out of range", in: "rabbit://u:s3cret@h1,u:s3cret@mq:70000/", want: `host 2: bad port "70000"`},
		{name: "unterminated IPv6", in: "rabbit://u:s3cret@[::1/", want: "unterminated IPv6"},
		{name: "bad escape in the password", in: "rabbit://u:s3cret%zz@mq/", want: "malformed percent-encoding in the password"},
		{name: "bad escape in the vhost", in: "rabbit://u:s3cret@mq/%zz", want: "malformed virtual host"},
		{name: "query options", in: "rabbit://u:s3cret@mq/?ssl=1&heartbeat=5", want: "query options are not supported (heartbeat, ssl)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := parseURL(tc.in)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.NotContains(t, err.Error(), "s3cret", "an error must not show the password")
		})
	}
}

func TestBroker_StringHidesPassword(t *testing.T) {
	t.Parallel()
	b := broker{Host: "::1", Port: 5672, User: "u", Password: "s3cret"}
	assert.Equal(t, "u@[::1]:5672", b.String())
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	base, max := time.Second, 30*time.Second
	t.Run("doubles up to the cap without jitter", func(t *testing.T) {
		var got []time.Duration
		for n := range 8 {
			got = append(got, backoff(n, base, max, 0))
		}
		want := []time.Duration{1, 2, 4, 8, 16, 30, 30, 30}
		for i := range want {
			want[i] *= time.Second
		}
		assert.Equal(t, want, got)
	})
	t.Run("jitter takes at most a quarter off", func(t *testing.T) {
		for n := range 10 {
			full := backoff(n, base, max, 0)
			for _, r := range []float64{0.001, 0.5, 0.999} {
				d := backoff(n, base, max, r)
				assert.LessOrEqual(t, d, full)
				assert.GreaterOrEqual(t, d, full*3/4)
			}
		}
	})
	t.Run("huge attempt counts do not overflow", func(t *testing.T) {
		assert.Equal(t, max, backoff(1000, base, max, 0))
	})
	t.Run("odd settings", func(t *testing.T) {
		assert.Equal(t, 2*time.Second, backoff(3, 2*time.Second, time.Second, 0), "a cap below the base is the base")
		assert.Equal(t, 8*time.Millisecond, backoff(3, 0, time.Second, 0), "no base is 1ms")
	})
}

func TestExpiration(t *testing.T) {
	t.Parallel()
	assert.Equal(t, "1", expiration(0))
	assert.Equal(t, "1", expiration(time.Microsecond))
	assert.Equal(t, "1500", expiration(1500*time.Millisecond))
	assert.Equal(t, "330000", expiration(330*time.Second))
}

// A broker that is down when the transport starts is no error: New returns,
// requests fail at once as unavailable, and Close does not hang.
func TestNew_BrokerDown(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close()) // nothing listens there now

	start := time.Now()
	tr, err := New(Config{
		URL:    fmt.Sprintf("rabbit://u:s3cret@127.0.0.1:%d,u:s3cret@127.0.0.1:%d/", port, port),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	require.NoError(t, err)
	assert.Less(t, time.Since(start), 3*time.Second)

	ctx := context.Background()
	for _, send := range []func() error{
		func() error { return tr.Call(ctx, "m", nil, nil) },
		func() error { return tr.Cast(ctx, "m", nil) },
	} {
		start := time.Now()
		err := send()
		assert.ErrorIs(t, err, errdefs.ErrUnavailable)
		assert.Equal(t, "Message broker unavailable: not connected, reconnecting. Try again later.", errdefs.PublicMessage(err))
		assert.ErrorIs(t, err, rpc.ErrNotSent, "the caller may forget the request")
		assert.NotContains(t, err.Error(), "s3cret")
		assert.Less(t, time.Since(start), 100*time.Millisecond, "fail fast while disconnected")
	}

	serveDone := make(chan error, 1)
	go func() { serveDone <- tr.Serve(ctx, rpc.HandlerFunc(nil)) }()
	start = time.Now()
	require.NoError(t, tr.Close())
	assert.Less(t, time.Since(start), 3*time.Second)
	select {
	case err := <-serveDone:
		assert.NoError(t, err)
	case <-time.After(3 * time.Second):
		t.Fatal("Serve waiting for a connection did not return on Close")
	}
	assert.ErrorIs(t, tr.Cast(ctx, "m", nil), errdefs.ErrUnavailable)
}

func TestNew_MalformedURL(t *testing.T) {
	t.Parallel()
	_, err := New(Config{URL: "rabbit://u:s3cret@mq:x/"})
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "s3cret")
}
