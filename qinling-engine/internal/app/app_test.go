package app

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestMain_HelpAndVersion(t *testing.T) {
	for _, tc := range []struct {
		name   string
		args   []string
		stdout []string
	}{
		{name: "help", args: []string{"--help"}, stdout: []string{
			"usage: qinling-engine [--config-file FILE]...", "--version", "[DEFAULT] transport_url = ",
			"[engine] orchestrator = local", "etc/qinling.conf.sample",
		}},
		{name: "version", args: []string{"--version"}, stdout: []string{"qinling-engine ", ", go1."}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			assert.Equal(t, 0, Main(context.Background(), tc.args, &stdout, &stderr), "stderr: %s", &stderr)
			for _, s := range tc.stdout {
				assert.Contains(t, stdout.String(), s)
			}
			assert.Empty(t, stderr.String())
		})
	}
}
