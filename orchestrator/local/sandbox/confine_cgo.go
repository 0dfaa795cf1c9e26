//go:build cgo

package sandbox

// The first half of the confinement helper (see confine.go), in C because it
// must run before the Go runtime starts any thread: a multithreaded process
// cannot create a user namespace. A constructor runs before main, so every
// binary that links this package can serve as the helper; in any other
// process it only compares argv[0] and returns.
//
// As "qinling-confine" it creates new user (its own uid and gid mapped to
// themselves), mount, PID and IPC namespaces, and forks. The child, PID 1 of
// the new PID namespace, returns to let the Go runtime start (confineMain
// finishes the confinement and execs the command). The parent only waits:
// it closes every descriptor (the command's pipes must reach end of file
// when the command dies), reaps the child and exits as it did, by the same
// signal if it was killed. It is the process its starter knows; the child
// is the one to kill (killing PID 1 of a PID namespace kills everything in
// it), after which the parent exits by itself.

/*
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void qinling_confine_fail(const char *what) {
	fprintf(stderr, "qinling-confine: %s: %s\n", what, strerror(errno));
	_exit(125);
}

static void qinling_confine_write(const char *path, const char *data) {
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		qinling_confine_fail(path);
	ssize_t n = write(fd, data, strlen(data));
	if (n != (ssize_t)strlen(data))
		qinling_confine_fail(path);
	close(fd);
}

__attribute__((constructor)) static void qinling_confine_init(int argc, char **argv) {
	if (argc < 1 || argv == NULL || argv[0] == NULL || strcmp(argv[0], "qinling-confine") != 0)
		return;
	unsigned uid = geteuid(), gid = getegid();
	char map[64];
	if (unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC) != 0)
		qinling_confine_fail("new user, mount, PID and IPC namespaces");
	qinling_confine_write("/proc/self/setgroups", "deny");
	snprintf(map, sizeof map, "%u %u 1", gid, gid);
	qinling_confine_write("/proc/self/gid_map", map);
	snprintf(map, sizeof map, "%u %u 1", uid, uid);
	qinling_confine_write("/proc/self/uid_map", map);

	pid_t child = fork();
	if (child < 0)
		qinling_confine_fail("fork");
	if (child == 0) {
		// The waiter is the only way out of the new PID namespace's
		// processes: if it dies, so does everything in it.
		prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
		return;
	}
	// The waiter holds nothing: the command's pipes end with the command.
	if (syscall(SYS_close_range, 0U, ~0U, 0U) != 0) {
		for (int fd = 0; fd < 65536; fd++)
			close(fd);
	}
	int status;
	while (waitpid(child, &status, 0) < 0) {
		if (errno != EINTR)
			_exit(125);
	}
	if (WIFEXITED(status))
		_exit(WEXITSTATUS(status));
	int sig = WTERMSIG(status);
	signal(sig, SIG_DFL);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, sig);
	sigprocmask(SIG_UNBLOCK, &set, NULL);
	kill(getpid(), sig);
	kill(getpid(), SIGKILL); // a signal whose default action is not to die
	_exit(128 + sig);
}
*/
import "C"

// confineBuilt tells that the constructor above is part of the binary.
const confineBuilt = true
