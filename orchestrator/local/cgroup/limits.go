package cgroup

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// OOMKillsOne makes the kernel's OOM killer take a single process of the
// group on v2 (where SetMemory otherwise has it kill the whole group): for
// a worker whose executions are processes of their own that the kernel
// should pick first. Call it before SetMemory. v1 always kills one.
func (g *Group) OOMKillsOne() { g.oomOne = true }

// SetPids limits the group's processes and threads to n; n <= 0 sets nothing.
func (g *Group) SetPids(n int) {
	if dir, ok := g.dirs[Pids]; ok && n > 0 {
		if err := writeFile(filepath.Join(dir, "pids.max"), strconv.Itoa(n)); err != nil {
			g.m.Warn(Pids, "cannot set the limit", err)
		}
	}
}

// SetCPU limits the group to millicores thousandths of a CPU: a CFS quota
// of millicores × period / 1000 per 100 ms period, as upstream's cglimit.
// millicores <= 0 sets nothing.
func (g *Group) SetCPU(millicores int) {
	dir := g.cpuDir
	if dir == "" || millicores <= 0 {
		return
	}
	period := CPUPeriod.Microseconds()
	quota := int64(millicores) * period / 1000
	var err error
	if g.m.ctrls[CPU].v2 {
		err = writeFile(filepath.Join(dir, "cpu.max"), fmt.Sprintf("%d %d", quota, period))
	} else {
		err = writeFile(filepath.Join(dir, "cpu.cfs_period_us"), strconv.FormatInt(period, 10))
		if err == nil {
			err = writeFile(filepath.Join(dir, "cpu.cfs_quota_us"), strconv.FormatInt(quota, 10))
		}
	}
	if err != nil {
		g.m.Warn(CPU, "cannot set the limit", err)
	}
}

// SetMemory limits the group's memory to bytes, and its swap so that it
// cannot page out instead (where the kernel accounts swap). On v2 an OOM
// kills the whole group, unless OOMKillsOne was called. bytes <= 0 sets
// nothing.
func (g *Group) SetMemory(bytes int64) {
	dir, ok := g.dirs[Memory]
	if !ok || bytes <= 0 {
		return
	}
	v := strconv.FormatInt(bytes, 10)
	var err error
	if g.m.ctrls[Memory].v2 {
		err = writeFile(filepath.Join(dir, "memory.max"), v)
		if err == nil {
			err = writeOptional(filepath.Join(dir, "memory.swap.max"), "0")
		}
		if err == nil {
			oomGroup := "1"
			if g.oomOne {
				oomGroup = "0"
			}
			err = writeOptional(filepath.Join(dir, "memory.oom.group"), oomGroup)
		}
	} else {
		// memory+swap must never be below memory: lowering writes memory
		// first, raising writes memory+swap first.
		mem, memsw := filepath.Join(dir, "memory.limit_in_bytes"), filepath.Join(dir, "memory.memsw.limit_in_bytes")
		if err = writeFile(mem, v); errors.Is(err, syscall.EINVAL) {
			if err = writeOptional(memsw, v); err == nil {
				err = writeFile(mem, v)
			}
		} else if err == nil {
			err = writeOptional(memsw, v)
		}
	}
	if err != nil {
		g.m.Warn(Memory, "cannot set the limit", err)
	}
}

// writeOptional writes a file the kernel may not offer (swap accounting off).
func writeOptional(path, v string) error {
	if err := writeFile(path, v); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// Events are the group's counters of limits hit.
type Events struct {
	// OOMKills counts processes the kernel killed for the memory limit.
	OOMKills int64
	// PidsMax counts forks refused by the pids limit.
	PidsMax int64
}

// Events reads the counters; a controller the group lacks counts zero.
// After Destroy it returns the counters as they were then, so whoever
// explains a worker's death can still read them after it was cleaned up.
func (g *Group) Events() Events {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.final != nil {
		return *g.final
	}
	return g.read()
}

func (g *Group) read() Events {
	var ev Events
	if dir, ok := g.dirs[Memory]; ok {
		file := "memory.oom_control"
		if g.m.ctrls[Memory].v2 {
			file = "memory.events"
		}
		ev.OOMKills = counter(filepath.Join(dir, file), "oom_kill")
	}
	if dir, ok := g.dirs[Pids]; ok {
		ev.PidsMax = counter(filepath.Join(dir, "pids.events"), "max")
	}
	return ev
}

// counter returns the value of key in a flat-keyed cgroup file ("key N" lines).
func counter(path, key string) int64 {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for line := range bytes.Lines(data) {
		k, v, ok := bytes.Cut(bytes.TrimSpace(line), []byte(" "))
		if ok && string(k) == key {
			n, _ := strconv.ParseInt(string(v), 10, 64)
			return n
		}
	}
	return 0
}

// CPUTime is the CPU time the group's processes used since it was created,
// and whether it is known (v1 needs the cpuacct controller).
func (g *Group) CPUTime() (time.Duration, bool) {
	if dir, ok := g.dirs[CPUAcct]; ok {
		ns, err := g.readCounter(filepath.Join(dir, "cpuacct.usage"))
		return time.Duration(ns), err == nil
	}
	for _, c := range Controllers {
		if dir, ok := g.dirs[c]; ok && g.m.ctrls[c].v2 {
			// cpu.stat is a core file of every v2 group, cpu controller or not.
			if _, err := os.Stat(filepath.Join(dir, "cpu.stat")); err == nil {
				return time.Duration(counter(filepath.Join(dir, "cpu.stat"), "usage_usec")) * time.Microsecond, true
			}
		}
	}
	return 0, false
}

// PeakMemory is the most memory the group held since ResetPeakMemory (v1)
// or since it was created (v2 before Linux 6.12 cannot reset it, and later
// kernels only per open file), in bytes; 0 when unknown.
func (g *Group) PeakMemory() int64 {
	dir, ok := g.dirs[Memory]
	if !ok {
		return 0
	}
	file := "memory.max_usage_in_bytes"
	if g.m.ctrls[Memory].v2 {
		file = "memory.peak"
	}
	n, _ := g.readCounter(filepath.Join(dir, file))
	return n
}

// ResetPeakMemory starts PeakMemory anew from the current usage (v1 only).
func (g *Group) ResetPeakMemory() {
	if dir, ok := g.dirs[Memory]; ok && !g.m.ctrls[Memory].v2 {
		_ = g.writeCounter(filepath.Join(dir, "memory.max_usage_in_bytes"), "0")
	}
}

// readCounter reads a file of the group holding one integer, through a
// descriptor kept open (fds); a kernel file read at offset 0 is produced
// anew each time.
func (g *Group) readCounter(path string) (int64, error) {
	var buf [64]byte
	n, err := g.onCounter(path, syscall.O_RDONLY, func(fd int) (int, error) { return syscall.Pread(fd, buf[:], 0) })
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(buf[:n])), 10, 64)
}

// writeCounter writes v to a file of the group, as writeFile, through a
// descriptor kept open.
func (g *Group) writeCounter(path, v string) error {
	_, err := g.onCounter(path, syscall.O_WRONLY, func(fd int) (int, error) { return syscall.Pwrite(fd, []byte(v), 0) })
	return err
}

// counterFile is one open descriptor of fds: a file may be open for
// reading and, apart, for writing (memory.max_usage_in_bytes).
type counterFile struct {
	path string
	mode int
}

// onCounter runs op on path's descriptor open with mode. The lock keeps
// Destroy from closing it meanwhile; once destroyed the group's files are
// gone and op does not run.
func (g *Group) onCounter(path string, mode int, op func(fd int) (int, error)) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.final != nil {
		return 0, fs.ErrNotExist
	}
	key := counterFile{path, mode}
	fd, ok := g.fds[key]
	if !ok {
		var err error
		if fd, err = syscall.Open(path, mode|syscall.O_CLOEXEC, 0); err != nil {
			return 0, &fs.PathError{Op: "open", Path: path, Err: err}
		}
		if g.fds == nil {
			g.fds = map[counterFile]int{}
		}
		g.fds[key] = fd
	}
	n, err := op(fd)
	if err != nil {
		return 0, &fs.PathError{Op: "access", Path: path, Err: err}
	}
	return n, nil
}
