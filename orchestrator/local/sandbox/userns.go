package sandbox

import (
	"bufio"
	"debug/elf"
	"os"
	"strings"
	"sync"
)

// The helper's last step executes this binary again inside the sandbox
// (userns_cgo.go), so the sandbox must hold what the dynamic loader needs
// for it: its ELF interpreter and the shared libraries it has loaded (libc).
// The runtimes' layouts usually hold them already; withSelf adds what is
// missing.

// selfMounts returns the read-only binds and links that show this binary's
// interpreter and loaded libraries.
var selfMounts = sync.OnceValues(func() ([]Mount, error) {
	var l Layout
	f, err := elf.Open("/proc/self/exe")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type != elf.PT_INTERP {
			continue
		}
		data := make([]byte, p.Filesz)
		if _, err := p.ReadAt(data, 0); err != nil {
			return nil, err
		}
		if err := l.Expose(strings.TrimRight(string(data), "\x00")); err != nil {
			return nil, err
		}
	}
	maps, err := os.Open("/proc/self/maps")
	if err != nil {
		return nil, err
	}
	defer maps.Close()
	sc := bufio.NewScanner(maps)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 {
			continue
		}
		path := fields[5]
		if strings.HasPrefix(path, "/") && (strings.HasSuffix(path, ".so") || strings.Contains(path, ".so.")) {
			if err := l.Expose(path); err != nil {
				return nil, err
			}
		}
	}
	return l.Mounts(), sc.Err()
})

// withSelf appends to mounts the binds and links of selfMounts whose target
// is not already there, or under a directory bound there.
func withSelf(mounts []Mount) ([]Mount, error) {
	self, err := selfMounts()
	if err != nil {
		return nil, err
	}
	out := mounts
	for _, m := range self {
		covered := false
		for _, e := range mounts {
			if m.Target == e.Target || strings.HasPrefix(m.Target, e.Target+"/") {
				covered = true
				break
			}
		}
		if !covered {
			out = append(out, m)
		}
	}
	return out, nil
}
