package sandbox

import "golang.org/x/sys/unix"

// nativeArch is this architecture, for the seccomp filters.
var nativeArch = &seccompArch{audit: unix.AUDIT_ARCH_AARCH64}

// archSyscalls are the calls of syscallNumbers this architecture has its
// own way (or none) of making.
var archSyscalls = map[string]int{
	"_sysctl":         -1,
	"create_module":   -1,
	"get_kernel_syms": -1,
	"ioperm":          -1,
	"iopl":            -1,
	"query_module":    -1,
	"sysfs":           -1,
	"uselib":          -1,
	"ustat":           -1,
}
