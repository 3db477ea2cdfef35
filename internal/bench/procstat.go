package bench

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of utime and stime in /proc/<pid>/stat: USER_HZ is
// 100 on every Linux ABI Go supports.
const userHZ = 100

// processCPU returns the CPU time (user + system) this process has used;
// 0 where there is no /proc.
func processCPU() time.Duration {
	d, _ := pidCPU(os.Getpid())
	return d
}

// pidCPU returns the CPU time (user + system, all threads) process pid
// has used, from /proc/<pid>/stat.
func pidCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("bench: cpu of pid %d: %w", pid, err)
	}
	// The command name (field 2) may hold spaces: count from its ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("bench: cpu of pid %d: malformed stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("bench: cpu of pid %d: malformed stat", pid)
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("bench: cpu of pid %d: malformed stat", pid)
	}
	return time.Duration(ut+st) * time.Second / userHZ, nil
}

// pidRSS returns the resident set size of process pid in bytes (VmRSS in
// /proc/<pid>/status).
func pidRSS(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, fmt.Errorf("bench: rss of pid %d: %w", pid, err)
	}
	for line := range strings.Lines(string(b)) {
		rest, ok := strings.CutPrefix(line, "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			break
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			break
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("bench: rss of pid %d: no VmRSS in status", pid)
}

// cpuSnapshot is the CPU time of named processes at one moment.
type cpuSnapshot map[string]time.Duration

// snapshotCPU reads the CPU time of each process; one that has exited
// keeps no entry.
func snapshotCPU(pids map[string]int) cpuSnapshot {
	s := cpuSnapshot{}
	for name, pid := range pids {
		if d, err := pidCPU(pid); err == nil {
			s[name] = d
		}
	}
	return s
}

// since returns the CPU used by each process between before and s.
func (s cpuSnapshot) since(before cpuSnapshot) map[string]time.Duration {
	out := map[string]time.Duration{}
	for name, d := range s {
		out[name] = d - before[name]
	}
	return out
}
