//go:build cgo

package sandbox

// The last step of a worker's sandbox (init.go): a user namespace of its
// own. It must be created by the worker's host uid (only the owner of a user
// namespace may map itself into it without privilege), after every mount is
// done as root, and by a single-threaded process: so the Go helper, once it
// has switched to the worker's host uid, executes itself again with argv[0]
// "qinling-userns" and this constructor, before the Go runtime starts:
//
//	qinling-userns UID GID -- COMMAND ARGS...   (or --check instead of -- COMMAND: stop before the exec)
//
// creates the user namespace, maps UID and GID in it to its host uid and
// gid (nothing else is mapped), empties the capability bounding set the new
// namespace filled, re-arms the parent-death signal and executes COMMAND,
// which runs as UID with no capabilities. The worker's other namespaces
// were created by the engine and belong to the host's user namespace: the
// new one gives it no power over them.

/*
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

static void qinling_userns_fail(const char *what, int code) {
	fprintf(stderr, "qinling-sandbox: %s: %s\n", what, strerror(errno));
	_exit(code);
}

static void qinling_userns_write(const char *path, const char *data) {
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		qinling_userns_fail(path, 125);
	if (write(fd, data, strlen(data)) != (ssize_t)strlen(data))
		qinling_userns_fail(path, 125);
	close(fd);
}

__attribute__((constructor)) static void qinling_userns_init(int argc, char **argv, char **envp) {
	if (argc < 4 || argv == NULL || argv[0] == NULL || strcmp(argv[0], "qinling-userns") != 0)
		return;
	int check = strcmp(argv[3], "--check") == 0;
	if (!check && (strcmp(argv[3], "--") != 0 || argc < 5)) {
		errno = EINVAL;
		qinling_userns_fail("usage: qinling-userns UID GID -- COMMAND", 125);
	}
	unsigned long inner_uid = strtoul(argv[1], NULL, 10), inner_gid = strtoul(argv[2], NULL, 10);
	unsigned uid = getuid(), gid = getgid();
	char map[64];
	if (unshare(CLONE_NEWUSER) != 0)
		qinling_userns_fail("new user namespace", 125);
	qinling_userns_write("/proc/self/setgroups", "deny");
	snprintf(map, sizeof map, "%lu %u 1", inner_gid, gid);
	qinling_userns_write("/proc/self/gid_map", map);
	snprintf(map, sizeof map, "%lu %u 1", inner_uid, uid);
	qinling_userns_write("/proc/self/uid_map", map);
	for (int c = 0; c < 64; c++) {
		if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) != 0 && errno != EINVAL)
			qinling_userns_fail("drop a capability from the bounding set", 125);
	}
	prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
	// The engine holds the read end of our output pipe: if it is gone, so is
	// the engine (whose death the signal above would have missed).
	struct stat st;
	struct pollfd pfd = {.fd = 2};
	if (fstat(2, &st) == 0 && S_ISFIFO(st.st_mode) && poll(&pfd, 1, 0) > 0 && (pfd.revents & POLLERR))
		_exit(125);
	if (check)
		_exit(0);
	execve(argv[4], argv + 4, envp);
	char what[4096];
	snprintf(what, sizeof what, "exec %s", argv[4]);
	qinling_userns_fail(what, 127);
}
*/
import "C"

// usernsBuilt tells that the constructor above is part of the binary.
const usernsBuilt = true
