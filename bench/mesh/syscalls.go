//go:build linux

package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// sysEvents are the perf events -syscalls counts in each proxy process: every system call, the
// ones a proxy makes per request by name, and the scheduler's context switches and migrations.
var sysEvents = []string{
	"raw_syscalls:sys_enter",
	"syscalls:sys_enter_read", "syscalls:sys_enter_recvfrom",
	"syscalls:sys_enter_write", "syscalls:sys_enter_sendto", "syscalls:sys_enter_writev",
	"syscalls:sys_enter_epoll_pwait", "syscalls:sys_enter_epoll_wait",
	"syscalls:sys_enter_futex", "syscalls:sys_enter_nanosleep", "syscalls:sys_enter_sched_yield",
	"context-switches", "cpu-migrations", "task-clock",
}

// sysColumns group sysEvents into the table's columns.
var sysColumns = []struct {
	name   string
	events []string
}{
	{"system calls", []string{"raw_syscalls:sys_enter"}},
	{"reads (read, recvfrom)", []string{"syscalls:sys_enter_read", "syscalls:sys_enter_recvfrom"}},
	{"writes (write, sendto, writev)", []string{"syscalls:sys_enter_write", "syscalls:sys_enter_sendto", "syscalls:sys_enter_writev"}},
	{"epoll waits", []string{"syscalls:sys_enter_epoll_pwait", "syscalls:sys_enter_epoll_wait"}},
	{"futex", []string{"syscalls:sys_enter_futex"}},
	{"nanosleep, sched_yield", []string{"syscalls:sys_enter_nanosleep", "syscalls:sys_enter_sched_yield"}},
	{"context switches", []string{"context-switches"}},
	{"CPU migrations", []string{"cpu-migrations"}},
}

// countSyscalls runs one more keep-alive wrk run on each path (but direct) with perf stat on each
// of its proxy processes, and prints what each process did per request completed.
func countSyscalls(s *starter, paths []string) {
	if _, err := exec.LookPath("perf"); err != nil {
		fmt.Fprintln(os.Stderr, "mesh: -syscalls needs perf (Debian: linux-perf)")
		return
	}
	fmt.Printf("### Keep-alive: system calls and scheduling per request, per proxy process\n\n")
	fmt.Printf("One more wrk keep-alive run per path with `perf stat -e %s` on each proxy process (from 0.3 s before wrk to 1 s after it); counts ÷ the requests wrk completed.\n\n", strings.Join(sysEvents, ","))
	fmt.Print("| path | process | req/s under perf | CPU µs (task-clock) |")
	for _, c := range sysColumns {
		fmt.Printf(" %s |", c.name)
	}
	fmt.Print("\n|---|---|---|---|")
	for range sysColumns {
		fmt.Print("---|")
	}
	fmt.Println()
	for _, name := range paths {
		if name == "direct" {
			continue
		}
		p, err := s.start(name)
		if err != nil {
			fatal(err)
		}
		type stat struct {
			cmd *exec.Cmd
			out bytes.Buffer
		}
		var stats []*stat
		for _, pid := range p.pids() {
			st := &stat{}
			st.cmd = exec.Command("perf", "stat", "-x", ",", "-e", strings.Join(sysEvents, ","), "-p", strconv.Itoa(pid),
				"--", "sleep", strconv.Itoa(int(duration.Seconds())+1))
			st.cmd.Stderr = &st.out // perf stat writes its counts to stderr
			if err := st.cmd.Start(); err != nil {
				fatal(err)
			}
			stats = append(stats, st)
		}
		time.Sleep(300 * time.Millisecond)
		t, err := runWrk(p.addr, false)
		for _, st := range stats {
			st.cmd.Wait()
		}
		p.stop()
		if err != nil {
			fatal(err)
		}
		info, _ := infoOf(name)
		for i, st := range stats {
			counts := parsePerfStat(st.out.String())
			// Both kinds of pair start their server side first; task-clock is in ms.
			side := []string{"B (server side)", "A (client side)"}[min(i, 1)]
			fmt.Printf("| %s | %s | %.0f | %.1f |", info.title, side, t.rps, counts["task-clock"]*1000/t.requests)
			for _, c := range sysColumns {
				var n float64
				for _, e := range c.events {
					n += counts[e]
				}
				fmt.Printf(" %.2f |", n/t.requests)
			}
			fmt.Println()
		}
	}
	fmt.Println()
}

// parsePerfStat reads perf stat's CSV output (-x ,): value, unit, event, ... per line.
func parsePerfStat(out string) map[string]float64 {
	m := map[string]float64{}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Split(l, ",")
		if len(f) < 3 {
			continue
		}
		if v, err := strconv.ParseFloat(f[0], 64); err == nil {
			m[f[2]] = v
		}
	}
	return m
}
