package app

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMain_HelpAndVersion: both answer on stdout with exit status 0, the
// help with the options an engine's configuration needs first.
func TestMain_HelpAndVersion(t *testing.T) {
	var help, version, stderr bytes.Buffer
	require.Zero(t, Main(context.Background(), []string{"--help"}, &help, &stderr), "stderr: %s", &stderr)
	require.Zero(t, Main(context.Background(), []string{"--version"}, &version, &stderr), "stderr: %s", &stderr)
	assert.Empty(t, stderr.String())
	for _, want := range []string{
		"usage: qinling-engine [--config-file FILE]...", "--version", "[DEFAULT] transport_url = ",
		"[engine] orchestrator = local", "etc/qinling.conf.sample",
	} {
		assert.Contains(t, help.String(), want)
	}
	assert.True(t, strings.HasPrefix(version.String(), "qinling-engine "), version.String())
}
