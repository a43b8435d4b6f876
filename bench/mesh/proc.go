//go:build linux

package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// What the harness reads from /proc about the proxy processes: their CPU
// time, their resident memory and their descriptors.

const clkTck = 100 // sysconf(_SC_CLK_TCK) on Linux

// statFields returns the fields of /proc/pid/stat after the command name
// ([0] state, [11] utime, [12] stime).
func statFields(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(string(b[i+1:]))
}

// cpuSeconds is the user and the system CPU time of the processes pids.
func cpuSeconds(pids []int) (user, sys float64) {
	var u, k int64
	for _, pid := range pids {
		f := statFields(pid)
		if len(f) < 13 {
			continue
		}
		a, _ := strconv.ParseInt(f[11], 10, 64)
		b, _ := strconv.ParseInt(f[12], 10, 64)
		u += a
		k += b
	}
	return float64(u) / clkTck, float64(k) / clkTck
}

// boxSeconds is the whole machine's CPU time from /proc/stat: busy (every
// state but idle and iowait) and all of it.
func boxSeconds() (busy, total float64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0
	}
	var all, idle int64
	for i, v := range f[1:] {
		if i >= 8 { // guest time is counted in user already
			break
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		all += n
		if i == 3 || i == 4 { // idle, iowait
			idle += n
		}
	}
	return float64(all-idle) / clkTck, float64(all) / clkTck
}

// rssKiB is the sum of VmRSS of the processes pids.
func rssKiB(pids []int) int64 {
	var total int64
	for _, pid := range pids {
		total += statusField(fmt.Sprintf("/proc/%d/status", pid), "VmRSS:")
	}
	return total
}

func statusField(file, key string) int64 {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, key); ok {
			if f := strings.Fields(v); len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n
			}
		}
	}
	return 0
}

// fds counts the open descriptors of the processes pids.
func fds(pids []int) int {
	n := 0
	for _, pid := range pids {
		ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		n += len(ents)
	}
	return n
}

// loadavg is the first three fields of /proc/loadavg.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func numCPU() int {
	b, _ := os.ReadFile("/proc/cpuinfo")
	return bytes.Count(b, []byte("\nprocessor")) + 1
}
