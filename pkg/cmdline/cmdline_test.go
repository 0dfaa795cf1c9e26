package cmdline

import (
	"bytes"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/config"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name       string
		args       []string
		code       int
		exit       bool
		stdout     []string // each must appear
		stderr     []string
		configFile []string
	}{
		{name: "no arguments run the program", args: nil},
		{name: "config files in order", args: []string{"--config-file", "a.conf", "-config-file=b.conf"}, configFile: []string{"a.conf", "b.conf"}},
		{name: "--help shows the flags, common options and the sample's path", args: []string{"--help"}, exit: true,
			stdout: []string{"usage: prog [--config-file FILE]...", "--config-file FILE", "--version", "--all-in-one",
				"[DEFAULT] state_path = ", "[local_orchestrator] sandbox = true", "etc/qinling.conf.sample"}},
		{name: "-h is --help", args: []string{"-h"}, exit: true, stdout: []string{"usage: prog"}},
		{name: "--version", args: []string{"--version"}, exit: true, stdout: []string{"prog ", "go1."}},
		{name: "unknown flag", args: []string{"--bogus"}, code: 2, exit: true,
			stderr: []string{"prog: flag provided but not defined: -bogus", "Run 'prog --help' for usage."}},
		{name: "stray argument", args: []string{"serve"}, code: 2, exit: true, stderr: []string{`unexpected argument "serve"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := New("prog", []string{"prog [--config-file FILE]..."}, []Option{StatePath, Sandbox})
			f.Bool("all-in-one", false, "everything in one process")
			var stdout, stderr bytes.Buffer
			code, exit := f.Parse(tc.args, &stdout, &stderr)
			assert.Equal(t, tc.code, code)
			assert.Equal(t, tc.exit, exit)
			for _, s := range tc.stdout {
				assert.Contains(t, stdout.String(), s)
			}
			for _, s := range tc.stderr {
				assert.Contains(t, stderr.String(), s)
			}
			if len(tc.stderr) == 0 {
				assert.Empty(t, stderr.String())
			}
			assert.Equal(t, tc.configFile, f.ConfigFiles)
		})
	}
}

func TestVersionString_Release(t *testing.T) {
	old := Version
	t.Cleanup(func() { Version = old })
	Version = "1.2.3"
	assert.Regexp(t, `^1\.2\.3( \(commit [0-9a-f]+(, modified)?\))?, go`, VersionString())
}

func TestLogStarted(t *testing.T) {
	cfg := config.Default()
	cfg.Default.StatePath = "/var/lib/qinling"
	for _, tc := range []struct {
		name    string
		orch    func(*config.Config)
		want    []string
		wantNot []string
	}{
		{name: "local", orch: func(*config.Config) {},
			want: []string{`msg="prog started"`, "address=http://127.0.0.1:7070", "state=/var/lib/qinling",
				`orchestrator="local (sandbox on, isolation reuse)"`, `storage="local /var/lib/qinling/packages"`,
				"database=sqlite", "rpc=in-process", "version="},
			wantNot: []string{"rpc_response_timeout", "max_pids"}},
		{name: "kubernetes without sandbox words", orch: func(c *config.Config) { c.Engine.Orchestrator = "kubernetes" },
			want: []string{`orchestrator="kubernetes (namespace qinling)"`}, wantNot: []string{"sandbox"}},
		{name: "swift names its container, no directory", orch: func(c *config.Config) { c.Storage.Provider = "swift" },
			want: []string{`storage="swift (container qinling)"`}, wantNot: []string{"packages"}},
		{name: "s3 names its bucket, no directory", orch: func(c *config.Config) { c.Storage.Provider = "s3" },
			want: []string{`storage="s3 (bucket qinling)"`}, wantNot: []string{"packages"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := *cfg
			tc.orch(&c)
			var buf bytes.Buffer
			log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
			LogStarted(log, "prog", &c, "address", "http://127.0.0.1:7070")
			require.Equal(t, 1, bytes.Count(buf.Bytes(), []byte("\n")), "one line: %s", &buf)
			for _, s := range tc.want {
				assert.Contains(t, buf.String(), s)
			}
			for _, s := range tc.wantNot {
				assert.NotContains(t, buf.String(), s)
			}
		})
	}
}
