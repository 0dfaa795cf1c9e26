package config

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// samplePath is the checked-in sample, relative to this package.
var samplePath = filepath.Join("..", "..", "etc", "qinling.conf.sample")

func TestSampleUpToDate(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	require.NoError(t, WriteSample(&buf))
	onDisk, err := os.ReadFile(samplePath)
	require.NoError(t, err, "etc/qinling.conf.sample is missing: run scripts/genconfig.sh")
	require.Equal(t, buf.String(), string(onDisk),
		"etc/qinling.conf.sample differs from pkg/config's options: run scripts/genconfig.sh")
}

func TestWriteSample_Shape(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	require.NoError(t, WriteSample(&buf))
	out := buf.String()

	for _, want := range []string{
		"\n[DEFAULT]\n",
		"\n[keystone_authtoken]\n",
		"\n#port = 7070\n",
		"\n#state_path = ~/.local/share/qinling\n", // tag text, not this machine's $HOME
		"\n#rpc_response_timeout = 330s\n",
		"\n#password =\n", // secret: empty default
		"(string value, secret: masked in logs)\n",
		"# Possible values:\n#     text\n#     json\n#log_format = text\n",
		"(path value)\n",
	} {
		require.Contains(t, out, want)
	}
	for i, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if line == "" || strings.HasPrefix(line, "[") {
			continue
		}
		require.True(t, strings.HasPrefix(line, "#"), "line %d is not a comment: %q", i+1, line)
		if !regexp.MustCompile(`^#[a-z0-9_]+ =`).MatchString(line) {
			require.LessOrEqual(t, len(line), sampleWidth, "line %d too long: %q", i+1, line)
		}
	}
	for _, o := range options() {
		require.Contains(t, out, "\n#"+o.name+" =", "option %s missing", o.key())
	}
}

func TestSample_RoundTrip(t *testing.T) {
	t.Parallel()
	want := Default()
	withKeystone(want)

	t.Run("as generated, all comments", func(t *testing.T) {
		t.Parallel()
		c, err := Load([]string{samplePath}, withKeystone)
		require.NoError(t, err)
		require.Empty(t, c.Warnings())
		require.Equal(t, stripMeta(want), stripMeta(c))
	})

	// Uncommenting every "#option = default" line must give the defaults
	// again: the sample's defaults are the real ones, and they all parse.
	t.Run("every option uncommented", func(t *testing.T) {
		t.Parallel()
		var buf bytes.Buffer
		require.NoError(t, WriteSample(&buf))
		uncommented := regexp.MustCompile(`(?m)^#([a-z0-9_]+ =)`).ReplaceAllString(buf.String(), "$1")
		c, err := Load([]string{writeConf(t, uncommented)}, withKeystone)
		require.NoError(t, err)
		require.Empty(t, c.Warnings())
		require.Equal(t, stripMeta(want), stripMeta(c))
		for _, o := range options() {
			require.True(t, c.IsSet(o.key()), "%s was not read", o.key())
		}
	})
}
