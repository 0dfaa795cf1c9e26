package workerclient

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// dialUnix connects to the unix socket at path without following a
// symbolic link anywhere on the way. A worker whose function could put a
// link where its socket is would otherwise make the engine (root) connect
// to any socket on the host and hand it the next callers' requests
// (docs/isolation.md, "What stops what"). The socket is opened with O_PATH
// (no symbolic link resolved: RESOLVE_NO_SYMLINKS, or O_NOFOLLOW on the last
// component before Linux 5.6), checked to be a socket, and connected to
// through /proc/self/fd, which names that very inode.
func dialUnix(ctx context.Context, d *net.Dialer, path string) (net.Conn, error) {
	fd, err := unix.Openat2(unix.AT_FDCWD, path, &unix.OpenHow{
		Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: unix.RESOLVE_NO_SYMLINKS,
	})
	if errors.Is(err, unix.ENOSYS) {
		fd, err = unix.Open(path, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: "unix", Addr: &net.UnixAddr{Name: path, Net: "unix"}, Err: err}
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, &net.OpError{Op: "dial", Net: "unix", Addr: &net.UnixAddr{Name: path, Net: "unix"}, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return nil, &net.OpError{Op: "dial", Net: "unix", Addr: &net.UnixAddr{Name: path, Net: "unix"},
			Err: fmt.Errorf("not a socket (mode %#o)", st.Mode)}
	}
	return d.DialContext(ctx, "unix", "/proc/self/fd/"+strconv.Itoa(fd))
}

// quiet says whether the idle connection c is still open and the worker
// sent nothing on it: one non-blocking peek, no wait.
func quiet(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var buf [1]byte
	ok = false
	err = raw.Read(func(fd uintptr) bool {
		_, _, perr := unix.Recvfrom(int(fd), buf[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		ok = errors.Is(perr, unix.EAGAIN)
		return true
	})
	return err == nil && ok
}
