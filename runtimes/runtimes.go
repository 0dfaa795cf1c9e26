// Package runtimes carries the runtime servers inside the qinling binaries,
// so a worker always runs the server that matches the engine that started it,
// whatever directory the binary was started from.
package runtimes

import (
	"embed"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Each runtime is its server and the modules it loads from beside itself
// (python3/README.md, nodejs/README.md): a worker gets the whole directory.
//
//go:embed python3/server.py python3/_qinling_runtime/*.py nodejs/server.js nodejs/_qinling_runtime/*.js
var files embed.FS

// Install writes the runtime servers and their modules under dir
// (dir/python3/server.py, dir/python3/_qinling_runtime/, ...) and returns dir. Files are rewritten on every start so an upgrade of the
// binary upgrades the runtimes too.
func Install(dir string) (string, error) {
	err := fs.WalkDir(files, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := files.ReadFile(path)
		if err != nil {
			return err
		}
		dst := filepath.Join(dir, filepath.FromSlash(path))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		// Write then rename: a worker starting right now never reads half a file.
		tmp := dst + ".tmp"
		if err := os.WriteFile(tmp, b, 0o644); err != nil {
			return err
		}
		return os.Rename(tmp, dst)
	})
	if err != nil {
		return "", fmt.Errorf("install runtimes into %s: %w", dir, err)
	}
	return dir, nil
}
