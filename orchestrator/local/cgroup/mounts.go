package cgroup

import (
	"bufio"
	"os"
	"strconv"
	"strings"
)

// mount is one cgroup hierarchy's mount point and the cgroup at its root.
type mount struct {
	path, root string
}

type mounts struct {
	v1 map[Controller]mount
	v2 *mount
}

// ownCgroups is the engine's cgroup path in each hierarchy.
type ownCgroups struct {
	v1 map[Controller]string
	v2 string
}

func discover() (mounts, ownCgroups, error) {
	ms := mounts{v1: map[Controller]mount{}}
	own := ownCgroups{v1: map[Controller]string{}}
	f, err := os.Open(mountInfoPath)
	if err != nil {
		return ms, own, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source superoptions
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, x := range fields {
			if x == "-" {
				sep = i
				break
			}
		}
		if sep < 5 || len(fields) < sep+4 {
			continue
		}
		mnt := mount{path: unescape(fields[4]), root: unescape(fields[3])}
		switch fields[sep+1] {
		case "cgroup2":
			if ms.v2 == nil {
				ms.v2 = &mnt
			}
		case "cgroup":
			for _, opt := range strings.Split(fields[sep+3], ",") {
				c := Controller(opt)
				if _, seen := ms.v1[c]; !seen && contains([]string{string(CPU), string(Memory), string(Pids), string(CPUAcct)}, opt) {
					ms.v1[c] = mnt
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		return ms, own, err
	}
	data, err := os.ReadFile(selfCgroup)
	if err != nil {
		return ms, own, err
	}
	for line := range strings.Lines(string(data)) {
		// hierarchy-id:controller-list:path
		parts := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			own.v2 = parts[2]
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			own.v1[Controller(c)] = parts[2]
		}
	}
	return ms, own, nil
}

// relTo returns the cgroup path p relative to a mount whose root is root
// (a container may see a hierarchy mounted from inside it).
func relTo(root, p string) string {
	if p == "" {
		return "/"
	}
	if root != "/" && (p == root || strings.HasPrefix(p, root+"/")) {
		return "/" + strings.TrimPrefix(p[len(root):], "/")
	}
	return p
}

// unescape undoes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
