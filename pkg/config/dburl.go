package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
)

// acceptedDatabaseURLs is shown whenever a database URL is rejected.
const acceptedDatabaseURLs = "want sqlite:///relative/path.sqlite, sqlite:////absolute/path.sqlite, " +
	"sqlite:// (in memory), mysql://user:pass@host[:port]/db or mysql+pymysql://user:pass@host[:port]/db"

// ParseDatabaseURL turns an oslo.db (SQLAlchemy) URL into a driver name and
// DSN for pkg/db.Open:
//
//   - sqlite:///rel.sqlite → "sqlite", "rel.sqlite" (relative to the working
//     directory); sqlite:////abs/x.sqlite → "sqlite", "/abs/x.sqlite";
//     sqlite://, sqlite:/// and sqlite:///:memory: → "sqlite", ":memory:".
//     Query parameters are Python-driver options and are dropped.
//   - mysql:// and mysql+pymysql://user:pass@host[:port]/db[?...] → "mysql"
//     and a go-sql-driver/mysql DSN with parseTime=true and charset utf8mb4,
//     and interpolateParams=true when the charset allows it (see below).
//     Kept parameters: charset (utf8 becomes utf8mb4, since MySQL's utf8
//     cannot store 4-byte characters), collation, connect_timeout,
//     read_timeout, write_timeout (seconds), unix_socket and tls (true,
//     false, skip-verify or preferred). ssl_* parameters are rejected rather
//     than dropped so that TLS is never silently lost; others, such as
//     devstack's plugin=dbcounter, only mean something to Python and are
//     dropped.
//
// Errors never repeat the URL, which may hold a password.
func ParseDatabaseURL(s string) (driver, dsn string, err error) {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return "", "", errors.New("not a database URL (" + acceptedDatabaseURLs + ")")
	}
	switch strings.ToLower(scheme) {
	case "sqlite":
		return parseSQLiteURL(rest)
	case "mysql", "mysql+pymysql":
		return parseMySQLURL(s)
	}
	return "", "", fmt.Errorf("unsupported scheme %q (%s)", scheme, acceptedDatabaseURLs)
}

func parseSQLiteURL(rest string) (string, string, error) {
	if rest == "" {
		return "sqlite", ":memory:", nil
	}
	if !strings.HasPrefix(rest, "/") {
		return "", "", errors.New("sqlite URL has a host part (" + acceptedDatabaseURLs + ")")
	}
	// SQLAlchemy: what follows the third slash is the path, so a fourth
	// slash makes it absolute.
	p, _, _ := strings.Cut(rest[1:], "?")
	if p == "" || p == ":memory:" {
		return "sqlite", ":memory:", nil
	}
	return "sqlite", p, nil
}

func parseMySQLURL(s string) (string, string, error) {
	u, err := url.Parse(s)
	if err != nil {
		// url.Error's text quotes the whole URL, password included.
		if ue := (*url.Error)(nil); errors.As(err, &ue) {
			err = ue.Err
		}
		return "", "", fmt.Errorf("not a valid URL: %v", err)
	}
	mc := mysql.NewConfig()
	mc.ParseTime = true
	mc.Params = map[string]string{"charset": "utf8mb4"}
	if u.User != nil {
		mc.User = u.User.Username()
		mc.Passwd, _ = u.User.Password()
	}
	// The DSN splits user from password at the first ':'.
	if strings.Contains(mc.User, ":") {
		return "", "", errors.New("mysql user name must not contain ':'")
	}
	mc.DBName = strings.TrimPrefix(u.Path, "/")
	if mc.DBName == "" || strings.Contains(mc.DBName, "/") {
		return "", "", errors.New("mysql URL needs a database name: mysql+pymysql://user:pass@host[:port]/db")
	}

	q := u.Query()
	if sock := q.Get("unix_socket"); sock != "" {
		mc.Net, mc.Addr = "unix", sock
	} else {
		if u.Hostname() == "" {
			return "", "", errors.New("mysql URL needs a host (or ?unix_socket=/path)")
		}
		port := u.Port()
		if port == "" {
			port = "3306"
		} else if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return "", "", fmt.Errorf("mysql port %q: want 1-65535", port)
		}
		mc.Net, mc.Addr = "tcp", net.JoinHostPort(u.Hostname(), port)
	}
	for name, vals := range q {
		v := vals[len(vals)-1]
		switch {
		case name == "charset":
			if strings.EqualFold(v, "utf8") {
				v = "utf8mb4"
			}
			mc.Params["charset"] = v
		case name == "collation":
			mc.Collation = v
		case name == "connect_timeout" || name == "read_timeout" || name == "write_timeout":
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return "", "", fmt.Errorf("mysql parameter %s %q: want whole seconds", name, v)
			}
			d := time.Duration(n) * time.Second
			switch name {
			case "connect_timeout":
				mc.Timeout = d
			case "read_timeout":
				mc.ReadTimeout = d
			default:
				mc.WriteTimeout = d
			}
		case name == "tls":
			switch strings.ToLower(v) {
			case "true", "false", "skip-verify", "preferred":
				mc.TLSConfig = strings.ToLower(v)
			default:
				return "", "", fmt.Errorf("mysql parameter tls %q: want true, false, skip-verify or preferred", v)
			}
		case name == "ssl" || strings.HasPrefix(name, "ssl_"):
			return "", "", fmt.Errorf("mysql parameter %s: not supported; use tls=true (system CAs) or tls=skip-verify", name)
		}
	}
	// Without interpolation, every statement with arguments is a server-side
	// prepare, an execute and a close: two round trips and two parses where
	// one would do, on every one of an execution's ~20 statements. The
	// driver escapes arguments itself, which is safe in every charset whose
	// multi-byte characters cannot hide a backslash or a quote.
	collationCharset, _, _ := strings.Cut(strings.ToLower(mc.Collation), "_")
	mc.InterpolateParams = !escapeUnsafeCharsets[strings.ToLower(mc.Params["charset"])] && !escapeUnsafeCharsets[collationCharset]
	return "mysql", mc.FormatDSN(), nil
}

// escapeUnsafeCharsets are MySQL's charsets in which the second byte of a
// character may be 0x5c (a backslash): client-side escaping is unsafe there.
var escapeUnsafeCharsets = map[string]bool{"big5": true, "cp932": true, "gb18030": true, "gbk": true, "sjis": true}
