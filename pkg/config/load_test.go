package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// keystoneURI makes a config valid with auth on (the default).
const keystoneURI = "http://keystone.example:5000/v3"

// withKeystone is the override most tests load with, so that Validate has
// nothing to say about options the test is not about.
func withKeystone(c *Config) { c.Keystone.WWWAuthenticateURI = keystoneURI }

// writeConf writes a config file into a fresh temporary directory.
func writeConf(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "qinling.conf")
	require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
	return p
}

// field returns the value of option key ("api.port") in c.
func field(t *testing.T, c *Config, key string) any {
	t.Helper()
	for _, o := range options() {
		if o.key() == key {
			return reflect.ValueOf(c).Elem().FieldByIndex(o.index).Interface()
		}
	}
	t.Fatalf("no option %s", key)
	return nil
}

// options only, without how the config was built.
func stripMeta(c *Config) Config {
	cp := *c
	cp.warnings, cp.set = nil, nil
	return cp
}

func TestDefault_EqualsTags(t *testing.T) {
	t.Setenv("HOME", "/home/qinling")
	c := Default()

	// Every field holds its own tag, decoded independently of Default.
	for _, o := range options() {
		t.Run(o.key(), func(t *testing.T) {
			want := reflect.New(o.typ).Elem()
			require.NoError(t, decode(want, o.def))
			if o.path {
				want.SetString(expandHome(want.String()))
			}
			require.Equal(t, want.Interface(), field(t, c, o.key()))
		})
	}

	// And a few spelled out, so a decoder bug cannot hide behind itself.
	for _, tc := range []struct {
		key  string
		want any
	}{
		{key: "DEFAULT.state_path", want: "/home/qinling/.local/share/qinling"},
		{key: "DEFAULT.rpc_response_timeout", want: 330 * time.Second},
		{key: "DEFAULT.debug", want: false},
		{key: "api.port", want: 7070},
		{key: "api.max_body_size", want: int64(1 << 20)},
		{key: "pecan.auth_enable", want: true},
		{key: "engine.function_service_expiration", want: time.Hour},
		{key: "cors.allowed_origin", want: []string(nil)},
		{key: "cors.allow_methods", want: []string{"GET", "PUT", "POST", "DELETE", "PATCH"}},
		{key: "keystone_authtoken.password", want: ""},
	} {
		t.Run("literal "+tc.key, func(t *testing.T) {
			require.Equal(t, tc.want, field(t, c, tc.key))
		})
	}
}

func TestDefault_ValidatesOnceKeystoneIsKnown(t *testing.T) {
	t.Parallel()
	c := Default()
	require.ErrorContains(t, c.Validate(), "keystone_authtoken.www_authenticate_uri: required when pecan.auth_enable is true")

	c.Pecan.AuthEnable = false
	require.NoError(t, c.Validate())

	c.Pecan.AuthEnable = true
	withKeystone(c)
	require.NoError(t, c.Validate())
}

func TestLoad_NoFilesIsDefault(t *testing.T) {
	t.Parallel()
	c, err := Load(nil, withKeystone)
	require.NoError(t, err)
	want := Default()
	withKeystone(want)
	require.Equal(t, stripMeta(want), stripMeta(c))
	require.Empty(t, c.Warnings())
	require.False(t, c.IsSet("api.port"))
}

func TestLoad_LaterFileWins(t *testing.T) {
	t.Parallel()
	first := writeConf(t, `
[api]
port = 8000
[engine]
topic = first_topic
function_concurrency = 5
`)
	second := writeConf(t, `
[api]
port = 9000
[engine]
function_concurrency =
`)
	c, err := Load([]string{first, second}, withKeystone)
	require.NoError(t, err)
	require.Equal(t, 9000, c.API.Port, "second file wins")
	require.Equal(t, "first_topic", c.Engine.Topic, "first file's option survives")
	require.Equal(t, 3, c.Engine.FunctionConcurrency, "empty value means default again")
	require.True(t, c.IsSet("api.port"))
	require.True(t, c.IsSet("engine.topic"))
	require.False(t, c.IsSet("api.host"))

	c, err = Load([]string{second, first}, withKeystone)
	require.NoError(t, err)
	require.Equal(t, 8000, c.API.Port)
	require.Equal(t, 5, c.Engine.FunctionConcurrency)
}

func TestLoad_OverridesComeAfterFiles(t *testing.T) {
	t.Parallel()
	aio := func(c *Config) {
		if !c.IsSet("pecan.auth_enable") {
			c.Pecan.AuthEnable = false
		}
	}
	c, err := Load([]string{writeConf(t, "[api]\nport = 8000\n")}, aio, func(c *Config) { c.API.Port = 8001 })
	require.NoError(t, err)
	require.False(t, c.Pecan.AuthEnable)
	require.Equal(t, 8001, c.API.Port)

	_, err = Load([]string{writeConf(t, "[pecan]\nauth_enable = true\n")}, aio)
	require.ErrorContains(t, err, "www_authenticate_uri", "a file asking for auth keeps it")
}

func TestLoad_DefaultSection(t *testing.T) {
	t.Parallel()
	c, err := Load([]string{writeConf(t, `
# keys before any header belong to [DEFAULT], as in oslo
debug = yes

[DEFAULT]
log_format = json
# Not DEFAULT options: must not show up as [api] host/port.
host = 10.9.9.9
port = 1
[api]
[engine]
topic = q_%(log_format)s
`)}, withKeystone)
	require.NoError(t, err)
	require.True(t, c.Default.Debug)
	require.Equal(t, "json", c.Default.LogFormat)
	require.Equal(t, "127.0.0.1", c.API.Host, "[DEFAULT] host must not leak into [api]")
	require.Equal(t, 7070, c.API.Port, "[DEFAULT] port must not leak into [api]")
	require.Empty(t, c.Engine.Host, "[DEFAULT] host must not leak into [engine]")
	require.Equal(t, "q_%(log_format)s", c.Engine.Topic, "no ini.v1 interpolation")
	require.Contains(t, c.Warnings(), filepathOf(t, c, "unknown option DEFAULT.host ignored"))
}

// filepathOf finds the warning ending in suffix, so tests need not rebuild
// the temporary path.
func filepathOf(t *testing.T, c *Config, suffix string) string {
	t.Helper()
	for _, w := range c.Warnings() {
		if strings.HasSuffix(w, ": "+suffix) {
			return w
		}
	}
	t.Fatalf("no warning %q in %q", suffix, c.Warnings())
	return ""
}

func TestLoad_BoolSpellings(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{in: "true", want: true}, {in: "True", want: true}, {in: "YES", want: true},
		{in: "on", want: true}, {in: "1", want: true},
		{in: "false", want: false}, {in: "FALSE", want: false}, {in: "no", want: false},
		{in: "Off", want: false}, {in: "0", want: false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			t.Parallel()
			c, err := Load([]string{writeConf(t, "[DEFAULT]\ndebug = "+tc.in+"\n")}, withKeystone)
			require.NoError(t, err)
			require.Equal(t, tc.want, c.Default.Debug)
		})
	}
	t.Run("not a boolean", func(t *testing.T) {
		t.Parallel()
		_, err := Load([]string{writeConf(t, "[DEFAULT]\ndebug = maybe\n")}, withKeystone)
		require.ErrorContains(t, err, `DEFAULT.debug "maybe": not a boolean (want true/false, yes/no, on/off or 1/0)`)
	})
}

func TestLoad_Durations(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, in string
		want     time.Duration
		wantErr  string
	}{
		{name: "bare integer is seconds", in: "30", want: 30 * time.Second},
		{name: "go duration", in: "1m", want: time.Minute},
		{name: "sub-second", in: "500ms", want: 500 * time.Millisecond},
		{name: "compound", in: "1h30m", want: 90 * time.Minute},
		{name: "spaces trimmed", in: "  45  ", want: 45 * time.Second},
		{name: "empty means default", in: "", want: time.Hour},
		{name: "words", in: "soon", wantErr: `engine.function_service_expiration "soon": not a duration`},
		{name: "fractional seconds need a unit", in: "1.5", wantErr: "not a duration"},
		{name: "zero is parsed then refused", in: "0", wantErr: "engine.function_service_expiration 0s: must be positive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := Load([]string{writeConf(t, "[engine]\nfunction_service_expiration = "+tc.in+"\n")}, withKeystone)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, c.Engine.FunctionServiceExpiration)
		})
	}
}

func TestLoad_Lists(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, in string
		want     []string
	}{
		{name: "empty is nil", in: "", want: nil},
		{name: "one", in: "https://a.example", want: []string{"https://a.example"}},
		{name: "trimmed", in: " https://a.example , https://b.example ", want: []string{"https://a.example", "https://b.example"}},
		{name: "empty items dropped", in: "a,,b,", want: []string{"a", "b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := Load([]string{writeConf(t, "[cors]\nallowed_origin = "+tc.in+"\nexpose_headers =\n")}, withKeystone)
			require.NoError(t, err)
			require.Equal(t, tc.want, c.CORS.AllowedOrigin)
			require.Nil(t, c.CORS.ExposeHeaders, "an empty list value clears the default")
		})
	}
}

func TestLoad_UnknownAreWarnings(t *testing.T) {
	t.Parallel()
	p := writeConf(t, `
[DEFAULT]
log_dir = /var/log/qinling
[api]
api_workers = 4
port = 7071
[oslo_policy]
policy_file = policy.json
[oslo_messaging_rabbit]
[kubernetes]
replicas = 5
kube_host = http://127.0.0.1:8001
`)
	c, err := Load([]string{p}, withKeystone)
	require.NoError(t, err)
	require.Equal(t, 7071, c.API.Port)
	require.Equal(t, 5, c.Kubernetes.Replicas)
	require.Equal(t, []string{
		p + ": unknown option DEFAULT.log_dir ignored",
		p + ": unknown option api.api_workers ignored",
		p + ": unknown section [oslo_policy] ignored",
		p + ": unknown section [oslo_messaging_rabbit] ignored",
		p + ": unknown option kubernetes.kube_host ignored",
	}, c.Warnings())
}

func TestLoad_TypeErrorsNameTheOption(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, body, want string
	}{
		{name: "int", body: "[engine]\nfunction_concurrency = abc\n", want: `engine.function_concurrency "abc": not an integer`},
		{name: "int out of range", body: "[api]\nport = 99999999999999999999\n", want: `api.port "99999999999999999999": integer out of range`},
		{name: "int64", body: "[storage]\nmax_package_size = 51M\n", want: `storage.max_package_size "51M": not an integer`},
		{name: "float for int", body: "[resource_limits]\nmax_cpu = 1.5\n", want: `resource_limits.max_cpu "1.5": not an integer`},
		{name: "duration", body: "[etcd]\nlock_ttl = 30 seconds\n", want: `etcd.lock_ttl "30 seconds": not a duration`},
		{name: "bool", body: "[pecan]\nauth_enable = nope\n", want: `pecan.auth_enable "nope": not a boolean`},
		{name: "ini syntax", body: "[api\nport = 1\n", want: "qinling.conf: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := writeConf(t, tc.body)
			c, err := Load([]string{p}, withKeystone)
			require.Nil(t, c)
			require.ErrorContains(t, err, tc.want)
			require.ErrorContains(t, err, p, "the file is named")
		})
	}

	t.Run("every error in every file", func(t *testing.T) {
		t.Parallel()
		a := writeConf(t, "[api]\nport = x\n[engine]\nfunction_concurrency = y\n")
		b := writeConf(t, "[DEFAULT]\ndebug = z\n")
		_, err := Load([]string{a, b}, withKeystone)
		require.ErrorContains(t, err, a+`: api.port "x"`)
		require.ErrorContains(t, err, a+`: engine.function_concurrency "y"`)
		require.ErrorContains(t, err, b+`: DEFAULT.debug "z"`)
	})

	t.Run("missing file", func(t *testing.T) {
		t.Parallel()
		_, err := Load([]string{filepath.Join(t.TempDir(), "nope.conf")})
		require.ErrorContains(t, err, "nope.conf")
	})
}

func TestLoad_ValuesKeptAsOsloDoes(t *testing.T) {
	t.Parallel()
	c, err := Load([]string{writeConf(t, `
[keystone_authtoken]
www_authenticate_uri = `+keystoneURI+`
password = se#cr;et \
[database]
connection = "mysql+pymysql://qinling:p;wd@db.example/qinling#x"
`)})
	require.NoError(t, err)
	require.Equal(t, `se#cr;et \`, c.Keystone.Password, "no inline comments, no continuation")
	require.Equal(t, "mysql+pymysql://qinling:p;wd@db.example/qinling#x", c.Database.Connection, "surrounding quotes dropped, # kept")
}

// Not parallel: it changes $HOME.
func TestLoad_HomeExpansion(t *testing.T) {
	t.Setenv("HOME", "/home/q")
	c, err := Load([]string{writeConf(t, `
[DEFAULT]
state_path = ~/state
[local_orchestrator]
python3 = ~/venv/bin/python3
workers_dir = ~other/workers
[storage]
file_system_dir = ~
[engine]
topic = ~/not-a-path
`)}, withKeystone)
	require.NoError(t, err)
	require.Equal(t, "/home/q/state", c.Default.StatePath)
	require.Equal(t, "/home/q/venv/bin/python3", c.Local.Python3)
	require.Equal(t, "~other/workers", c.Local.WorkersDir, "~user is not expanded")
	require.Equal(t, "/home/q", c.Storage.FileSystemDir)
	require.Equal(t, "~/not-a-path", c.Engine.Topic, "only path options expand")
	require.Equal(t, "/home/q/state/etcd", c.EtcdDataDir())
	require.Equal(t, "sqlite:////home/q/state/qinling.sqlite", c.DatabaseURL())
}

// Not parallel: it changes $HOME.
func TestLoad_NoHomeIsAnError(t *testing.T) {
	t.Setenv("HOME", "")
	_, err := Load(nil, withKeystone)
	require.ErrorContains(t, err, `DEFAULT.state_path "~/.local/share/qinling": cannot expand ~`)

	c, err := Load([]string{writeConf(t, "[DEFAULT]\nstate_path = /var/lib/qinling\n")}, withKeystone)
	require.NoError(t, err)
	require.Equal(t, "/var/lib/qinling", c.Default.StatePath)
}
