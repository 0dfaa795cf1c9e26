package sandbox

import (
	_ "embed"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The seccomp filters of workers, from one policy (seccomp.txt):
//   - WorkerSeccompProgram, installed by the sandbox helper on every worker
//     just before the runtime starts (init.go), in both isolation modes: it
//     denies what container runtimes deny by default (keyrings, tracing,
//     eBPF, kernel modules, clocks, ...);
//   - SeccompProgram, installed in addition by each execution process of a
//     strict worker once confined (confine.go for Node.js; the Python
//     runtime builds the same program itself, seccomp_test.go compares).
// Filters stack: an execution process is under both.

//go:embed seccomp.txt
var policyText string

// Policy is the parsed seccomp.txt: system call names by section.
type Policy struct {
	// Worker: denied to every process of every worker.
	Worker []string
	// Execution: denied outright to the execution processes of strict workers.
	Execution []string
	// ExecutionPid: denied to them when aimed at a protected pid or -1.
	ExecutionPid []string
}

// SeccompPolicy returns the policy built into this binary.
func SeccompPolicy() Policy {
	p, err := parsePolicy(policyText)
	if err != nil {
		panic(err) // seccomp_test.go parses it: a broken file never ships
	}
	return p
}

func parsePolicy(text string) (Policy, error) {
	var p Policy
	var cur *[]string
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case line == "[worker]":
			cur = &p.Worker
		case line == "[execution]":
			cur = &p.Execution
		case line == "[execution-pid]":
			cur = &p.ExecutionPid
		case strings.HasPrefix(line, "["):
			return p, fmt.Errorf("seccomp.txt:%d: unknown section %s", i+1, line)
		case cur == nil:
			return p, fmt.Errorf("seccomp.txt:%d: %s outside a section", i+1, line)
		default:
			if _, ok := syscallNumbers[line]; !ok && nativeArch != nil {
				return p, fmt.Errorf("seccomp.txt:%d: unknown system call %q", i+1, line)
			}
			*cur = append(*cur, line)
		}
	}
	return p, nil
}

// WorkerSeccompAvailable tells whether workers get a seccomp filter on this
// architecture (amd64 and arm64).
func WorkerSeccompAvailable() bool { return nativeArch != nil }

// seccompArch is what the filter needs to know of an architecture: its
// audit value, and the first syscall number of an ABI sharing it (x32), 0
// for none.
type seccompArch struct {
	audit uint32
	x32   uint32
}

// Constants of the filter (the same on amd64 and arm64).
const (
	fSetOwn    = 8      // F_SETOWN
	fSetOwnEx  = 15     // F_SETOWN_EX
	fioSetOwn  = 0x8901 // FIOSETOWN
	siocSPgrp  = 0x8902 // SIOCSPGRP
	retAllow   = unix.SECCOMP_RET_ALLOW
	retEPERM   = unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
	bpfLdAbs   = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
	bpfJeq     = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
	bpfJge     = unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K
	bpfRet     = unix.BPF_RET | unix.BPF_K
	offNr      = 0  // struct seccomp_data: nr
	offArch    = 4  // arch
	offArgsLow = 16 // low 32 bits of args[0]; args[i] at + 8*i (little endian)
)

var errNoSeccomp = fmt.Errorf("no seccomp filter for %s", runtime.GOARCH)

// bpf assembles a classic-BPF program with symbolic jump targets.
type bpf struct {
	prog   []bpfIns
	labels map[string]int
}

type bpfIns struct {
	code   uint16
	jt, jf string // labels; "" falls through
	k      uint32
}

func (b *bpf) emit(code uint16, k uint32, jt, jf string) {
	b.prog = append(b.prog, bpfIns{code, jt, jf, k})
}

func (b *bpf) label(name string) {
	if b.labels == nil {
		b.labels = map[string]int{}
	}
	b.labels[name] = len(b.prog)
}

// header checks the architecture (another ABI, such as int 0x80 or x32,
// may make no system call at all) and loads the system call number.
func (b *bpf) header(arch *seccompArch) {
	b.emit(bpfLdAbs, offArch, "", "")
	b.emit(bpfJeq, arch.audit, "", "deny")
	b.emit(bpfLdAbs, offNr, "", "")
	if arch.x32 != 0 {
		b.emit(bpfJge, arch.x32, "deny", "")
	}
}

// jumpIf jumps to label when the loaded number is one of names' system calls.
func (b *bpf) jumpIf(names []string, label string) {
	for _, n := range names {
		if nr, ok := syscallNumbers[n]; ok && nr >= 0 {
			b.emit(bpfJeq, uint32(nr), label, "")
		}
	}
}

func (b *bpf) assemble() ([]unix.SockFilter, error) {
	out := make([]unix.SockFilter, len(b.prog))
	for i, in := range b.prog {
		jump := func(label string) (uint8, error) {
			if label == "" {
				return 0, nil
			}
			at, ok := b.labels[label]
			d := at - i - 1
			if !ok || d < 0 || d > 255 {
				return 0, fmt.Errorf("seccomp program: jump to %s out of range (%d)", label, d)
			}
			return uint8(d), nil
		}
		jt, err := jump(in.jt)
		if err != nil {
			return nil, err
		}
		jf, err := jump(in.jf)
		if err != nil {
			return nil, err
		}
		out[i] = unix.SockFilter{Code: in.code, Jt: jt, Jf: jf, K: in.k}
	}
	return out, nil
}

// WorkerSeccompProgram returns the filter of every worker: the policy's
// [worker] calls fail with EPERM, everything else is allowed.
func WorkerSeccompProgram() ([]unix.SockFilter, error) {
	if nativeArch == nil {
		return nil, errNoSeccomp
	}
	var b bpf
	b.header(nativeArch)
	b.jumpIf(SeccompPolicy().Worker, "deny")
	b.emit(bpfRet, retAllow, "", "")
	b.label("deny")
	b.emit(bpfRet, retEPERM, "", "")
	return b.assemble()
}

// SeccompProgram returns the classic-BPF seccomp program of an execution
// process, the same as the Python runtime's (runtimes/python3,
// seccomp_program): it denies, with EPERM, the policy's [execution] calls
// outright; its [execution-pid] calls aimed at the processes in protect,
// their process groups or -1 (every process); and F_SETOWN(_EX), FIOSETOWN
// and SIOCSPGRP (SIGIO to a chosen process).
func SeccompProgram(protect []int) ([]unix.SockFilter, error) {
	if nativeArch == nil {
		return nil, errNoSeccomp
	}
	pol := SeccompPolicy()
	pidSet := map[uint32]bool{0xFFFFFFFF: true}
	for _, p := range protect {
		pidSet[uint32(int32(p))] = true
		pidSet[uint32(int32(-p))] = true
	}
	pids := make([]uint32, 0, len(pidSet))
	for p := range pidSet {
		pids = append(pids, p)
	}
	slices.Sort(pids)

	var b bpf
	b.header(nativeArch)
	b.jumpIf(pol.Execution, "deny")
	b.jumpIf(pol.ExecutionPid, "pid")
	b.jumpIf([]string{"fcntl"}, "fcntl")
	b.jumpIf([]string{"ioctl"}, "ioctl")
	b.emit(bpfRet, retAllow, "", "")
	b.label("pid") // the first argument is a pid
	b.emit(bpfLdAbs, offArgsLow, "", "")
	for _, p := range pids {
		b.emit(bpfJeq, p, "deny", "")
	}
	b.emit(bpfRet, retAllow, "", "")
	b.label("fcntl")
	b.emit(bpfLdAbs, offArgsLow+8, "", "")
	b.emit(bpfJeq, fSetOwnEx, "deny", "")
	b.emit(bpfJeq, fSetOwn, "", "allow")
	b.emit(bpfLdAbs, offArgsLow+16, "", "")
	for _, p := range pids {
		b.emit(bpfJeq, p, "deny", "")
	}
	b.label("allow")
	b.emit(bpfRet, retAllow, "", "")
	b.label("ioctl")
	b.emit(bpfLdAbs, offArgsLow+8, "", "")
	b.emit(bpfJeq, fioSetOwn, "deny", "")
	b.emit(bpfJeq, siocSPgrp, "deny", "")
	b.emit(bpfRet, retAllow, "", "")
	b.label("deny")
	b.emit(bpfRet, retEPERM, "", "")
	return b.assemble()
}

// installSeccomp installs prog on the calling thread (and what it execs);
// no_new_privs must be set, or the caller privileged.
func installSeccomp(prog []unix.SockFilter) error {
	if len(prog) == 0 {
		return errors.New("install the seccomp filter: empty program")
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if err := unix.Prctl(unix.PR_SET_SECCOMP, unix.SECCOMP_MODE_FILTER, uintptr(unsafe.Pointer(&fprog)), 0, 0); err != nil {
		return fmt.Errorf("install the seccomp filter: %w", err)
	}
	runtime.KeepAlive(prog)
	return nil
}
