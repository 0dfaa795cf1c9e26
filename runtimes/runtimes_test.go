package runtimes

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestInstall checks that what is installed is a runnable runtime: a server
// whose modules came along (a module left out of the embed list fails here).
func TestInstall(t *testing.T) {
	dir := t.TempDir()
	got, err := Install(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got != dir {
		t.Fatalf("Install returned %q, want %q", got, dir)
	}
	// Every source file of a runtime's modules (this directory holds the
	// sources the binary embeds), installed.
	sources, err := filepath.Glob(filepath.Join("*", "_qinling_runtime", "*.[jp][sy]"))
	if err != nil || len(sources) == 0 {
		t.Fatalf("no runtime modules found: %v", err)
	}
	for _, src := range sources {
		if _, err := os.Stat(filepath.Join(dir, src)); err != nil {
			t.Errorf("%s is not installed (runtimes.go embeds it?): %v", src, err)
		}
	}
	tests := []struct {
		name string
		argv []string
	}{
		{"python3", []string{"/usr/bin/python3", "-I", filepath.Join(dir, "python3", "server.py"), "--help"}},
		{"nodejs", []string{"/usr/bin/node", filepath.Join(dir, "nodejs", "server.js"), "--help"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := os.Stat(tc.argv[0]); err != nil {
				t.Skipf("%s: %v", tc.argv[0], err)
			}
			out, err := exec.Command(tc.argv[0], tc.argv[1:]...).CombinedOutput()
			if err != nil || !strings.HasPrefix(string(out), "usage: server.") {
				t.Fatalf("%v: %v\n%s", tc.argv, err, out)
			}
		})
	}
}
