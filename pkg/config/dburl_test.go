package config

import (
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/require"
)

func TestParseDatabaseURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, in     string
		driver, dsn  string
		wantErr      string
		secretInText string // must not appear in the error
	}{
		{name: "sqlite relative", in: "sqlite:///qinling.sqlite", driver: "sqlite", dsn: "qinling.sqlite"},
		{name: "sqlite relative dir", in: "sqlite:///data/q.sqlite", driver: "sqlite", dsn: "data/q.sqlite"},
		{name: "sqlite absolute", in: "sqlite:////var/lib/qinling/q.sqlite", driver: "sqlite", dsn: "/var/lib/qinling/q.sqlite"},
		{name: "sqlite query dropped", in: "sqlite:////tmp/q.sqlite?timeout=20", driver: "sqlite", dsn: "/tmp/q.sqlite"},
		{name: "sqlite in memory", in: "sqlite://", driver: "sqlite", dsn: ":memory:"},
		{name: "sqlite empty path", in: "sqlite:///", driver: "sqlite", dsn: ":memory:"},
		{name: "sqlite :memory:", in: "sqlite:///:memory:", driver: "sqlite", dsn: ":memory:"},
		{name: "sqlite with host", in: "sqlite://host/q.sqlite", wantErr: "sqlite URL has a host part"},

		{name: "mysql plain", in: "mysql://qinling:secret@db.example/qinling", driver: "mysql",
			dsn: "qinling:secret@tcp(db.example:3306)/qinling?interpolateParams=true&parseTime=true&charset=utf8mb4"},
		{name: "pymysql devstack", in: "mysql+pymysql://root:secret@127.0.0.1/qinling?charset=utf8&plugin=dbcounter", driver: "mysql",
			dsn: "root:secret@tcp(127.0.0.1:3306)/qinling?interpolateParams=true&parseTime=true&charset=utf8mb4"},
		{name: "port", in: "mysql+pymysql://u:p@db:3307/q", driver: "mysql", dsn: "u:p@tcp(db:3307)/q?interpolateParams=true&parseTime=true&charset=utf8mb4"},
		{name: "ipv6", in: "mysql://u:p@[::1]:3307/q", driver: "mysql", dsn: "u:p@tcp([::1]:3307)/q?interpolateParams=true&parseTime=true&charset=utf8mb4"},
		{name: "other charset kept", in: "mysql://u:p@db/q?charset=latin1", driver: "mysql", dsn: "u:p@tcp(db:3306)/q?interpolateParams=true&parseTime=true&charset=latin1"},
		{name: "gbk charset: no client-side escaping", in: "mysql://u:p@db/q?charset=gbk", driver: "mysql", dsn: "u:p@tcp(db:3306)/q?parseTime=true&charset=gbk"},
		{name: "sjis collation: no client-side escaping", in: "mysql://u:p@db/q?collation=sjis_japanese_ci", driver: "mysql",
			dsn: "u:p@tcp(db:3306)/q?collation=sjis_japanese_ci&parseTime=true&charset=utf8mb4"},
		{name: "timeouts and tls", in: "mysql://u:p@db/q?connect_timeout=5&read_timeout=30&write_timeout=31&tls=true&collation=utf8mb4_bin", driver: "mysql",
			dsn: "u:p@tcp(db:3306)/q?collation=utf8mb4_bin&interpolateParams=true&parseTime=true&readTimeout=30s&timeout=5s&tls=true&writeTimeout=31s&charset=utf8mb4"},
		{name: "unix socket", in: "mysql+pymysql://u:p@/q?unix_socket=/run/mysqld/mysqld.sock", driver: "mysql",
			dsn: "u:p@unix(/run/mysqld/mysqld.sock)/q?interpolateParams=true&parseTime=true&charset=utf8mb4"},
		{name: "no password", in: "mysql://root@db/q", driver: "mysql", dsn: "root@tcp(db:3306)/q?interpolateParams=true&parseTime=true&charset=utf8mb4"},

		{name: "mysql without database", in: "mysql://u:hunter2@db/", wantErr: "needs a database name", secretInText: "hunter2"},
		{name: "mysql without host", in: "mysql://u:hunter2@/q", wantErr: "needs a host", secretInText: "hunter2"},
		{name: "mysql bad port", in: "mysql://u:hunter2@db:x/q", wantErr: "not a valid URL", secretInText: "hunter2"},
		{name: "mysql ssl params refused", in: "mysql://u:hunter2@db/q?ssl_ca=/ca.pem", wantErr: "ssl_ca: not supported; use tls=true", secretInText: "hunter2"},
		{name: "mysql odd tls", in: "mysql://u:p@db/q?tls=custom", wantErr: `tls "custom": want true, false, skip-verify or preferred`},
		{name: "mysql bad timeout", in: "mysql://u:p@db/q?read_timeout=5s", wantErr: `read_timeout "5s": want whole seconds`},
		{name: "postgres", in: "postgresql://u:hunter2@db/q", wantErr: `unsupported scheme "postgresql" (want sqlite:///`, secretInText: "hunter2"},
		{name: "mysqldb driver", in: "mysql+mysqldb://u:p@db/q", wantErr: `unsupported scheme "mysql+mysqldb"`},
		{name: "not a URL", in: "qinling.sqlite", wantErr: "not a database URL (want sqlite:///"},
		{name: "empty", in: "", wantErr: "not a database URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			driver, dsn, err := ParseDatabaseURL(tc.in)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				if tc.secretInText != "" {
					require.NotContains(t, err.Error(), tc.secretInText)
				}
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.driver, driver)
			require.Equal(t, tc.dsn, dsn)
		})
	}
}

// The MySQL DSN must survive the driver's own parser, whatever the
// password holds.
func TestParseDatabaseURL_MySQLCredentialsRoundTrip(t *testing.T) {
	t.Parallel()
	_, dsn, err := ParseDatabaseURL("mysql+pymysql://qin%40ling:p%40ss%3Aw%2Frd%3F%23@db.example:3310/qinling?connect_timeout=7")
	require.NoError(t, err)
	mc, err := mysql.ParseDSN(dsn)
	require.NoError(t, err)
	require.Equal(t, "qin@ling", mc.User)
	require.Equal(t, "p@ss:w/rd?#", mc.Passwd)
	require.Equal(t, "tcp", mc.Net)
	require.Equal(t, "db.example:3310", mc.Addr)
	require.Equal(t, "qinling", mc.DBName)
	require.True(t, mc.ParseTime)
	require.Equal(t, 7*time.Second, mc.Timeout)
	require.Equal(t, "utf8mb4", mc.Params["charset"])
}
