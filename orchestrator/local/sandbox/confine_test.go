package sandbox

import (
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// confineCmd runs this test binary as the confinement helper around argv.
func confineCmd(t *testing.T, argv ...string) *exec.Cmd {
	t.Helper()
	if !ConfineAvailable() {
		t.Skip("the confinement helper needs cgo and amd64 or arm64")
	}
	probe := exec.Command("/proc/self/exe", "--tmp-size", "1048576", "--", "/bin/true")
	probe.Args[0] = ConfineName
	if out, err := probe.CombinedOutput(); err != nil && strings.Contains(string(out), "new user, mount, PID and IPC namespaces") {
		t.Skipf("no unprivileged user namespaces here: %s", out)
	}
	args := append([]string{ConfineName, "--tmp-size", "1048576", "--hide", t.TempDir(), "--"}, argv...)
	return &exec.Cmd{Path: "/proc/self/exe", Args: args, Env: []string{"PATH=/usr/bin:/bin"}}
}

func TestConfine_Namespaces(t *testing.T) {
	t.Parallel()
	hidden := t.TempDir()
	require.NoError(t, os.WriteFile(hidden+"/sock", nil, 0o600))
	require.NoError(t, os.WriteFile("/tmp/qinling-confine-test-"+t.Name(), nil, 0o600))
	t.Cleanup(func() { os.Remove("/tmp/qinling-confine-test-" + t.Name()) })
	cmd := confineCmd(t, "/bin/sh", "-c", `
echo "pid=$$"
echo "procs=$(ls /proc | grep -E '^[0-9]+$' | tr '\n' ' ')"
echo "tmp=$(ls -A /tmp | tr '\n' ' ')"
echo "cwd=$(pwd)"
echo "hidden=$(ls -A `+hidden+` | tr '\n' ' ')"
grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status | tr -d ' \t'
kill -KILL -1 2>/dev/null; echo "kill-1=$?"
touch /tmp/mine && echo wrote
`)
	cmd.Args[4] = hidden // --hide
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		k, v, _ := strings.Cut(line, "=")
		if k == line {
			k, v, _ = strings.Cut(line, ":")
		}
		got[k] = strings.TrimSpace(v)
	}
	require.Equal(t, "1", got["pid"], "%s", out)
	// sh and the ls of the pipe: only this PID namespace's processes.
	for _, p := range strings.Fields(got["procs"]) {
		require.Less(t, len(p), 3, "a pid of another namespace: %s", out)
	}
	require.Empty(t, got["tmp"], "a fresh /tmp: %s", out)
	require.Equal(t, "/tmp", got["cwd"])
	require.Empty(t, got["hidden"], "the hidden directory is empty: %s", out)
	require.Equal(t, "0000000000000000", got["CapEff"])
	require.Equal(t, "0000000000000000", got["CapBnd"])
	require.Equal(t, "1", got["NoNewPrivs"])
	require.Equal(t, "2", got["Seccomp"])
	require.Equal(t, "1", got["kill-1"], "kill(-1) is denied")
	require.Contains(t, string(out), "wrote")
	_, err = os.Stat("/tmp/mine")
	require.ErrorIs(t, err, os.ErrNotExist, "the file stayed in the helper's own /tmp")
}

func TestConfine_ExitStatus(t *testing.T) {
	t.Parallel()
	err := confineCmd(t, "/bin/sh", "-c", "exit 7").Run()
	var ee *exec.ExitError
	require.True(t, errors.As(err, &ee), "%v", err)
	require.Equal(t, 7, ee.ExitCode())

	// The waiter dies as its child did: by the signal that killed it.
	cmd := confineCmd(t, "/bin/sh", "-c", "echo ready; exec sleep 60")
	r, w, err := os.Pipe()
	require.NoError(t, err)
	cmd.Stdout = w
	require.NoError(t, cmd.Start())
	w.Close()
	buf := make([]byte, 6)
	_, err = r.Read(buf)
	require.NoError(t, err)
	data, err := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/task/" + strconv.Itoa(cmd.Process.Pid) + "/children")
	require.NoError(t, err)
	inner := strings.Fields(string(data))
	require.Len(t, inner, 1, "the waiter has one child, PID 1 of the new namespace")
	threads, err := os.ReadDir("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/task")
	require.NoError(t, err)
	require.Len(t, threads, 1, "the waiter is one thread (no Go runtime)")
	pid, err := strconv.Atoi(inner[0])
	require.NoError(t, err)
	require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
	err = cmd.Wait()
	require.True(t, errors.As(err, &ee), "%v", err)
	ws := ee.Sys().(syscall.WaitStatus)
	require.True(t, ws.Signaled(), "%v", err)
	require.Equal(t, syscall.SIGKILL, ws.Signal())
	// The pipe ends with the child: the waiter held no copy.
	n, err := r.Read(buf)
	require.Zero(t, n)
	require.Error(t, err)
}

func TestConfine_BadArguments(t *testing.T) {
	t.Parallel()
	cmd := confineCmd(t, "relative")
	out, err := cmd.CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "must be an absolute path")
}
