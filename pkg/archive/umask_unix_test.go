//go:build unix

package archive_test

import "syscall"

// umask sets the process umask and returns the previous one.
func umask(mask int) int { return syscall.Umask(mask) }
