package config

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRedactURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, in, want string }{
		{name: "mysql", in: "mysql+pymysql://qinling:s3cret@db/qinling?charset=utf8", want: "mysql+pymysql://qinling:***@db/qinling?charset=utf8"},
		{name: "rabbit", in: "rabbit://openstack:s3cret@mq:5672/", want: "rabbit://openstack:***@mq:5672/"},
		{name: "rabbit multi-host", in: "rabbit://u1:s3cret@h1:5672,u2:s3cret2@h2:5672/vhost", want: "rabbit://u1:***@h1:5672,u2:***@h2:5672/vhost"},
		{name: "hosts without credentials", in: "rabbit://h1:5672,h2:5672/", want: "rabbit://h1:5672,h2:5672/"},
		{name: "password with @ / : ?", in: "mysql://u:p@s/s:w?d@db/q", want: "mysql://u:***@db/q"},
		{name: "comma in password", in: "rabbit://u:s3c,ret@mq/", want: "rabbit://***@mq/"},
		{name: "user only", in: "mysql://root@db/q", want: "mysql://root@db/q"},
		{name: "empty password", in: "mysql://root:@db/q", want: "mysql://root:***@db/q"},
		{name: "sqlite", in: "sqlite:////var/lib/q@x/q.sqlite", want: "sqlite:////var/lib/q@x/q.sqlite"},
		{name: "not a URL", in: "plain:text@x", want: "plain:text@x"},
		{name: "empty", in: "", want: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, redactURL(tc.in))
		})
	}
}

func TestLogValue_MasksSecrets(t *testing.T) {
	t.Parallel()
	c := Default()
	c.Keystone.Password = "hunter2"
	c.Default.TransportURL = "rabbit://qinling:hunter3@mq:5672/"
	c.Database.Connection = "mysql+pymysql://qinling:hunter4@db/qinling"
	c.Engine.FunctionConcurrency = 7

	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("effective config", "config", c)
	out := buf.String()
	for _, secret := range []string{"hunter2", "hunter3", "hunter4"} {
		require.NotContains(t, out, secret)
	}

	var line struct {
		Config map[string]map[string]any `json:"config"`
	}
	require.NoError(t, json.Unmarshal(buf.Bytes(), &line))
	require.Equal(t, "***", line.Config["keystone_authtoken"]["password"])
	require.Equal(t, "rabbit://qinling:***@mq:5672/", line.Config["DEFAULT"]["transport_url"])
	require.Equal(t, "mysql+pymysql://qinling:***@db/qinling", line.Config["database"]["connection"])
	require.EqualValues(t, 7, line.Config["engine"]["function_concurrency"])
	require.Equal(t, "GET,PUT,POST,DELETE,PATCH", line.Config["cors"]["allow_methods"])
	require.Len(t, line.Config, len(optionsBySection()), "every section is logged")

	t.Run("unset secret stays visibly empty", func(t *testing.T) {
		t.Parallel()
		var buf bytes.Buffer
		slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "config", Default())
		require.Contains(t, buf.String(), `"password":""`)
	})
}
