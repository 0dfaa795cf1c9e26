package app

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestMain_CommandLine: what a newcomer types first answers at once, on
// stdout, with exit status 0; a typo exits 2 and points at --help.
func TestMain_CommandLine(t *testing.T) {
	for name, tc := range map[string]struct {
		args     []string
		wantCode int
		inStdout []string
		inStderr string
	}{
		"help": {args: []string{"--help"}, inStdout: []string{
			"usage: qinling-api [--all-in-one] [--config-file FILE]...", "--all-in-one", "--config-file FILE", "--version",
			"[DEFAULT] state_path = ", "[api] host, port = 127.0.0.1, 7070", "[pecan] auth_enable = true",
			"[local_orchestrator] sandbox = true", "etc/qinling.conf.sample",
		}},
		"db-sync help": {args: []string{"db-sync", "--help"}, inStdout: []string{"usage: qinling-api db-sync", "[database] connection = "}},
		"version":      {args: []string{"--version"}, inStdout: []string{"qinling-api ", ", go1."}},
		"typo":         {args: []string{"--all-in-on"}, wantCode: 2, inStderr: "Run 'qinling-api --help' for usage."},
	} {
		t.Run(name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			assert.Equal(t, tc.wantCode, Main(context.Background(), tc.args, &stdout, &stderr), "stderr: %s", &stderr)
			for _, s := range tc.inStdout {
				assert.Contains(t, stdout.String(), s)
			}
			assert.Contains(t, stderr.String(), tc.inStderr)
		})
	}
}
