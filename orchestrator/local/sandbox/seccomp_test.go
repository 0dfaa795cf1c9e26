package sandbox

import (
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func requireSeccomp(t *testing.T) {
	t.Helper()
	if !WorkerSeccompAvailable() {
		t.Skip("no seccomp filter for " + runtime.GOARCH)
	}
}

func TestSeccompPolicy(t *testing.T) {
	t.Parallel()
	requireSeccomp(t)
	p, err := parsePolicy(policyText)
	require.NoError(t, err)
	for name, section := range map[string][]string{"worker": p.Worker, "execution": p.Execution, "execution-pid": p.ExecutionPid} {
		sorted := slices.Clone(section)
		slices.Sort(sorted)
		require.Len(t, slices.Compact(sorted), len(section), "a name twice in [%s]", name)
	}
	// What containers deny by default (Docker's profile), the keyrings first.
	for _, name := range []string{"add_key", "keyctl", "request_key", "ptrace", "bpf", "perf_event_open", "userfaultfd",
		"init_module", "finit_module", "delete_module", "clock_settime", "clock_adjtime", "settimeofday", "adjtimex",
		"kexec_load", "kexec_file_load", "reboot", "swapon", "swapoff", "acct", "lookup_dcookie", "open_by_handle_at",
		"name_to_handle_at", "quotactl", "setns", "umount2", "pivot_root"} {
		require.Contains(t, p.Worker, name)
	}
	for _, bad := range []string{"[worker]\nno_such_call\n", "stray\n", "[nowhere]\n"} {
		_, err := parsePolicy(bad)
		require.Error(t, err, bad)
	}
}

// pythonSeccomp finds the Python runtime's seccomp_program and returns its
// source and the module defining it.
func pythonSeccomp(t *testing.T) string {
	t.Helper()
	// The server and its private package (runtimes/python3/README.md).
	files, err := filepath.Glob("../../../runtimes/python3/*.py")
	require.NoError(t, err)
	modules, err := filepath.Glob("../../../runtimes/python3/_qinling_runtime/*.py")
	require.NoError(t, err)
	files = append(files, modules...)
	var all strings.Builder
	found := false
	for _, f := range files {
		data, err := os.ReadFile(f)
		require.NoError(t, err)
		found = found || strings.Contains(string(data), "def seccomp_program(")
		all.Write(data)
	}
	require.True(t, found, "seccomp_program not found in runtimes/python3")
	return all.String()
}

// TestSeccompPolicy_MatchesPython fails when the Python runtime's execution
// filter and seccomp.txt disagree: the calls it denies outright, those it
// checks the pid of, and their numbers.
func TestSeccompPolicy_MatchesPython(t *testing.T) {
	t.Parallel()
	requireSeccomp(t)
	src := pythonSeccomp(t)
	fn := src[strings.Index(src, "def seccomp_program("):]
	loops := regexp.MustCompile(`for name in \(([^)]*)\):`).FindAllStringSubmatch(fn, 2)
	require.Len(t, loops, 2, "the two loops of seccomp_program")
	names := func(s string) []string {
		var out []string
		for _, m := range regexp.MustCompile(`"(\w+)"`).FindAllStringSubmatch(s, -1) {
			out = append(out, m[1])
		}
		slices.Sort(out)
		return out
	}
	pol := SeccompPolicy()
	sorted := func(s []string) []string { s = slices.Clone(s); slices.Sort(s); return s }
	require.Equal(t, sorted(pol.Execution), names(loops[0][1]), "denied outright")
	require.Equal(t, sorted(pol.ExecutionPid), names(loops[1][1]), "denied for protected pids")

	machine := map[string]string{"amd64": "x86_64", "arm64": "aarch64"}[runtime.GOARCH]
	table := regexp.MustCompile(`"` + machine + `": \([^)]*?dict\(([^)]*)\)`).FindStringSubmatch(src)
	require.NotNil(t, table, "the %s table of _SYSCALLS", machine)
	common := regexp.MustCompile(`_SYSCALLS_COMMON = dict\(([^)]*)\)`).FindStringSubmatch(src)
	require.NotNil(t, common)
	numbers := 0
	for _, m := range regexp.MustCompile(`(\w+)=(\d+)`).FindAllStringSubmatch(table[1]+","+common[1], -1) {
		n, err := strconv.Atoi(m[2])
		require.NoError(t, err)
		require.Equal(t, syscallNumbers[m[1]], n, "number of %s", m[1])
		numbers++
	}
	require.Equal(t, len(pol.Execution)+len(pol.ExecutionPid)+2, numbers, "every call the filter looks at (fcntl and ioctl too)")
}

// checkJumps checks that every jump of prog lands inside it.
func checkJumps(t *testing.T, prog []unix.SockFilter) {
	t.Helper()
	require.Equal(t, uint16(bpfLdAbs), prog[0].Code)
	require.Equal(t, unix.SockFilter{Code: bpfRet, K: retEPERM}, prog[len(prog)-1])
	for i, ins := range prog {
		if ins.Code == bpfJeq || ins.Code == bpfJge {
			require.Less(t, i+1+int(ins.Jt), len(prog))
			require.Less(t, i+1+int(ins.Jf), len(prog))
		}
	}
}

func TestWorkerSeccompProgram(t *testing.T) {
	t.Parallel()
	requireSeccomp(t)
	prog, err := WorkerSeccompProgram()
	require.NoError(t, err)
	checkJumps(t, prog)
	denied := map[uint32]bool{}
	for i, ins := range prog {
		if ins.Code == bpfJeq && i > 1 && prog[i+1+int(ins.Jt)] == prog[len(prog)-1] {
			denied[ins.K] = true
		}
	}
	for _, nr := range []int{unix.SYS_ADD_KEY, unix.SYS_KEYCTL, unix.SYS_REQUEST_KEY, unix.SYS_PTRACE, unix.SYS_BPF, unix.SYS_PERF_EVENT_OPEN} {
		require.True(t, denied[uint32(nr)], "syscall %d", nr)
	}
	for _, nr := range []int{unix.SYS_READ, unix.SYS_UNSHARE, unix.SYS_MOUNT, unix.SYS_CLONE, unix.SYS_EXECVE} {
		require.False(t, denied[uint32(nr)], "syscall %d is needed (strict isolation confines with it)", nr)
	}
}
func TestSeccompProgram(t *testing.T) {
	t.Parallel()
	requireSeccomp(t)
	prog, err := SeccompProgram([]int{1, 42})
	require.NoError(t, err)
	checkJumps(t, prog)
	var pids []uint32
	for i, ins := range prog {
		if ins.Code == bpfJeq && prog[i+1+int(ins.Jt)] == prog[len(prog)-1] && ins.K >= 0x80000000 {
			pids = append(pids, ins.K)
		}
	}
	// -1 (every process), -1 and -42 (the groups), each in the kill and the F_SETOWN checks.
	require.Contains(t, pids, uint32(0xFFFFFFFF))
	require.Contains(t, pids, uint32(0xFFFFFFD6))
	short, err := SeccompProgram(nil)
	require.NoError(t, err)
	require.Less(t, len(short), len(prog))
}
