//go:build amd64 || arm64

package sandbox

import "golang.org/x/sys/unix"

// syscallNumbers maps the names seccomp.txt uses (and fcntl and ioctl,
// whose arguments the filters look at) to this architecture's system call
// numbers (the unix package's constants); -1 marks a call the architecture
// does not have. Calls of one architecture only come from its file
// (archSyscalls): variables, so that they are set before any init function
// (init.go's may run the helper at once).
var syscallNumbers = func() map[string]int {
	m := map[string]int{
		"fcntl":             unix.SYS_FCNTL,
		"ioctl":             unix.SYS_IOCTL,
		"acct":              unix.SYS_ACCT,
		"add_key":           unix.SYS_ADD_KEY,
		"adjtimex":          unix.SYS_ADJTIMEX,
		"bpf":               unix.SYS_BPF,
		"clock_adjtime":     unix.SYS_CLOCK_ADJTIME,
		"clock_settime":     unix.SYS_CLOCK_SETTIME,
		"delete_module":     unix.SYS_DELETE_MODULE,
		"finit_module":      unix.SYS_FINIT_MODULE,
		"fsconfig":          unix.SYS_FSCONFIG,
		"fsmount":           unix.SYS_FSMOUNT,
		"fsopen":            unix.SYS_FSOPEN,
		"fspick":            unix.SYS_FSPICK,
		"init_module":       unix.SYS_INIT_MODULE,
		"io_uring_enter":    unix.SYS_IO_URING_ENTER,
		"io_uring_register": unix.SYS_IO_URING_REGISTER,
		"io_uring_setup":    unix.SYS_IO_URING_SETUP,
		"kcmp":              unix.SYS_KCMP,
		"kexec_file_load":   unix.SYS_KEXEC_FILE_LOAD,
		"kexec_load":        unix.SYS_KEXEC_LOAD,
		"keyctl":            unix.SYS_KEYCTL,
		"kill":              unix.SYS_KILL,
		"lookup_dcookie":    unix.SYS_LOOKUP_DCOOKIE,
		"mount_setattr":     unix.SYS_MOUNT_SETATTR,
		"move_mount":        unix.SYS_MOVE_MOUNT,
		"name_to_handle_at": unix.SYS_NAME_TO_HANDLE_AT,
		"nfsservctl":        unix.SYS_NFSSERVCTL,
		"open_by_handle_at": unix.SYS_OPEN_BY_HANDLE_AT,
		"open_tree":         unix.SYS_OPEN_TREE,
		"perf_event_open":   unix.SYS_PERF_EVENT_OPEN,
		"pidfd_getfd":       unix.SYS_PIDFD_GETFD,
		"pidfd_open":        unix.SYS_PIDFD_OPEN,
		"pidfd_send_signal": unix.SYS_PIDFD_SEND_SIGNAL,
		"pivot_root":        unix.SYS_PIVOT_ROOT,
		"process_vm_readv":  unix.SYS_PROCESS_VM_READV,
		"process_vm_writev": unix.SYS_PROCESS_VM_WRITEV,
		"ptrace":            unix.SYS_PTRACE,
		"quotactl":          unix.SYS_QUOTACTL,
		"quotactl_fd":       unix.SYS_QUOTACTL_FD,
		"reboot":            unix.SYS_REBOOT,
		"request_key":       unix.SYS_REQUEST_KEY,
		"rt_sigqueueinfo":   unix.SYS_RT_SIGQUEUEINFO,
		"rt_tgsigqueueinfo": unix.SYS_RT_TGSIGQUEUEINFO,
		"setns":             unix.SYS_SETNS,
		"settimeofday":      unix.SYS_SETTIMEOFDAY,
		"swapoff":           unix.SYS_SWAPOFF,
		"swapon":            unix.SYS_SWAPON,
		"syslog":            unix.SYS_SYSLOG,
		"tgkill":            unix.SYS_TGKILL,
		"tkill":             unix.SYS_TKILL,
		"umount2":           unix.SYS_UMOUNT2,
		"userfaultfd":       unix.SYS_USERFAULTFD,
		"vhangup":           unix.SYS_VHANGUP,
		"vm86":              -1,
		"vm86old":           -1,
	}
	for name, nr := range archSyscalls {
		m[name] = nr
	}
	return m
}()
