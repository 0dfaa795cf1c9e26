package sandbox

import "golang.org/x/sys/unix"

// nativeArch is this architecture, for the seccomp filters.
var nativeArch = &seccompArch{audit: unix.AUDIT_ARCH_X86_64, x32: 0x40000000}

// archSyscalls are the calls of syscallNumbers this architecture has its
// own way (or none) of making.
var archSyscalls = map[string]int{
	"_sysctl":         unix.SYS__SYSCTL,
	"create_module":   unix.SYS_CREATE_MODULE,
	"get_kernel_syms": unix.SYS_GET_KERNEL_SYMS,
	"ioperm":          unix.SYS_IOPERM,
	"iopl":            unix.SYS_IOPL,
	"query_module":    unix.SYS_QUERY_MODULE,
	"sysfs":           unix.SYS_SYSFS,
	"uselib":          unix.SYS_USELIB,
	"ustat":           unix.SYS_USTAT,
}
