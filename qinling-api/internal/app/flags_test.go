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
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stdout []string
		stderr string
	}{
		{name: "help", args: []string{"--help"}, stdout: []string{
			"usage: qinling-api [--all-in-one] [--config-file FILE]...", "--all-in-one", "--config-file FILE", "--version",
			"[DEFAULT] state_path = ", "[api] host, port = 127.0.0.1, 7070", "[pecan] auth_enable = true",
			"[local_orchestrator] sandbox = true", "etc/qinling.conf.sample",
		}},
		{name: "db-sync help", args: []string{"db-sync", "--help"}, stdout: []string{"usage: qinling-api db-sync", "[database] connection = "}},
		{name: "version", args: []string{"--version"}, stdout: []string{"qinling-api ", ", go1."}},
		{name: "typo", args: []string{"--all-in-on"}, code: 2, stderr: "Run 'qinling-api --help' for usage."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			assert.Equal(t, tc.code, Main(context.Background(), tc.args, &stdout, &stderr), "stderr: %s", &stderr)
			for _, s := range tc.stdout {
				assert.Contains(t, stdout.String(), s)
			}
			assert.Contains(t, stderr.String(), tc.stderr)
		})
	}
}
