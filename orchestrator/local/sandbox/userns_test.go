package sandbox

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/testutil"
)

// hostileProbe tries, from inside a worker's sandbox, what the workers'
// seccomp filter and user namespace must stop, and what strict isolation
// still needs (a nested user and mount namespace with a tmpfs).
const hostileProbe = `
import ctypes, json, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def call(nr, *args):
    r = libc.syscall(nr, *args)
    return 'ok' if r >= 0 else os.strerror(ctypes.get_errno())
NR = dict(x86_64=dict(add_key=248, keyctl=250, ptrace=101, bpf=321, perf_event_open=298, unshare=272, mount=165),
          aarch64=dict(add_key=217, keyctl=219, ptrace=117, bpf=280, perf_event_open=241, unshare=97, mount=40))[os.uname().machine]
st = dict(l.split(':\t', 1) for l in open('/proc/self/status').read().splitlines() if ':\t' in l)
out = {
    'uid': [os.getuid(), os.geteuid(), os.getgid()],
    'uid_map': open('/proc/self/uid_map').read().split(),
    'seccomp': st['Seccomp'].strip(), 'capbnd': st['CapBnd'].strip(), 'capeff': st['CapEff'].strip(),
    'add_key': call(NR['add_key'], b'user', b'qinling-secret', b'sesame', 6, ctypes.c_long(-3)),  # KEY_SPEC_SESSION_KEYRING
    'keyctl': call(NR['keyctl'], 0, ctypes.c_long(-4), 0),    # KEYCTL_GET_KEYRING_ID of the user keyring
    'ptrace': call(NR['ptrace'], 0, 0, 0, 0),                 # PTRACE_TRACEME
    'bpf': call(NR['bpf'], 0, 0, 0),
    'perf_event_open': call(NR['perf_event_open'], 0, 0, -1, -1, 0),
}
# What strict isolation does in each execution process: still allowed.
if libc.unshare(0x10000000 | 0x00020000) == 0:
    open('/proc/self/setgroups', 'w').write('deny')
    open('/proc/self/uid_map', 'w').write('%d %d 1' % (os.getuid(), os.getuid()))
    out['nested'] = 'ok' if libc.mount(b'tmpfs', b'/tmp', b'tmpfs', 0, None) == 0 else os.strerror(ctypes.get_errno())
else:
    out['nested'] = os.strerror(ctypes.get_errno())
print(json.dumps(out), flush=True)
sys.stdin.read()
`

func TestSandbox_HostIdentity(t *testing.T) {
	testutil.RequireRoot(t, "sandboxes need root (namespaces and mounts)")
	requireSeccomp(t)
	t.Parallel()
	const host = 1234567
	iso := &Isolation{Root: t.TempDir(), UID: 65534, GID: 65534, HostUID: host, HostGID: host + 1}
	iso.Mounts = append(pythonLayout(t), SystemMounts(1<<20, "/tmp")...)
	cmd, err := Command(Spec{Env: []string{"PATH=/usr/bin"}, Dir: "/tmp", Isolate: iso}, []string{python3, "-I", "-S", "-c", hostileProbe})
	require.NoError(t, err)
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	// The probe's stderr, read only once it has exited (exec copies into
	// the buffer from a goroutine of its own).
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("the probe's first line: %v; stderr:\n%s", err, stderr.String())
	}
	var got map[string]any
	require.NoError(t, json.Unmarshal([]byte(line), &got), line)

	// Inside: the configured uid, its host uid mapped and nothing else.
	require.Equal(t, []any{65534.0, 65534.0, 65534.0}, got["uid"])
	require.Equal(t, []any{"65534", fmt.Sprint(host), "1"}, got["uid_map"])
	require.Equal(t, "2", got["seccomp"], "a seccomp filter, in reuse mode too")
	zero := "0000000000000000"
	require.Equal(t, zero, got["capbnd"])
	require.Equal(t, zero, got["capeff"])
	for _, call := range []string{"add_key", "keyctl", "ptrace", "bpf", "perf_event_open"} {
		require.Equal(t, "Operation not permitted", got[call], call)
	}
	require.Equal(t, "ok", got["nested"], "strict isolation's confinement still works")

	// The host's view of the same process: its own uid and gid.
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
	require.NoError(t, err)
	require.Contains(t, string(status), fmt.Sprintf("\nUid:\t%d\t%d\t%d\t%d\n", host, host, host, host))
	require.Contains(t, string(status), fmt.Sprintf("\nGid:\t%d\t%d\t%d\t%d\n", host+1, host+1, host+1, host+1))
	require.NoError(t, stdin.Close())
	require.NoError(t, cmd.Wait())
}

// TestSandbox_SeccompWithoutIsolation: an unconfined worker (development)
// gets the filter too.
func TestSandbox_SeccompWithoutIsolation(t *testing.T) {
	requireSeccomp(t)
	t.Parallel()
	cmd, err := Command(Spec{}, []string{python3, "-I", "-S", "-c", "print(open('/proc/self/status').read())"})
	require.NoError(t, err)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	require.Contains(t, string(out), "\nSeccomp:\t2\n")
	require.Contains(t, string(out), "\nNoNewPrivs:\t1\n")
}

func TestCommand_HostIDsValidation(t *testing.T) {
	t.Parallel()
	for _, iso := range []Isolation{{HostUID: 5}, {HostGID: 5}, {HostUID: -1, HostGID: 3}} {
		iso.Root, iso.UID, iso.GID = "/x", 1, 1
		_, err := Command(Spec{Isolate: &iso}, []string{"/bin/true"})
		require.ErrorContains(t, err, "host uid", "%+v", iso)
	}
}
