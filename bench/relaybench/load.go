//go:build linux

package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The load section: wrk through each relay, keep-alive and Connection:
// close, and where the machine's CPU went in each run. On a box where wrk,
// the backend and the relay share the CPUs, a relay's throughput can only
// move by the CPU it saves per request relative to the whole box's CPU per
// request, so the section also prints the ceiling that HAProxy's own run
// allows: a relay that did HAProxy's kernel work, spent no CPU in user space
// and left no CPU idle.

// loadSample is one wrk run through one relay. The CPU figures are µs per
// request: the relay process's user and kernel time, and the whole
// machine's busy and idle time summed over all CPUs (so busy+idle is the
// machine's capacity spent per request).
type loadSample struct {
	rps        float64
	user, sys  float64
	busy, idle float64
}

type loadKey struct {
	relay     string
	closeConn bool
}

func (k loadKey) workload() string {
	if k.closeConn {
		return "Connection: close"
	}
	return "keep-alive"
}

// cpuTimes is the user and system CPU time of pid, its reaped children and
// its live descendants, in seconds.
func cpuTimes(pid int) (user, sys float64) {
	var u, s int64
	add := func(f []string, ui, si int) {
		if si < len(f) {
			a, _ := strconv.ParseInt(f[ui], 10, 64)
			b, _ := strconv.ParseInt(f[si], 10, 64)
			u, s = u+a, s+b
		}
	}
	f := statFields(pid)
	add(f, 11, 12) // utime stime
	add(f, 13, 14) // cutime cstime
	for _, c := range descendants(pid) {
		add(statFields(c), 11, 12)
	}
	return float64(u) / clkTck, float64(s) / clkTck
}

// boxTimes is the machine's busy and idle CPU time since boot, summed over
// all CPUs, in seconds (/proc/stat: user nice system idle iowait irq
// softirq steal).
func boxTimes() (busy, idle float64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0
	}
	var v [8]float64
	for i := range v {
		v[i], _ = strconv.ParseFloat(f[i+1], 64)
	}
	busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
	idle = v[3] + v[4]
	return busy / clkTck, idle / clkTck
}

var (
	rpsRe  = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	reqsRe = regexp.MustCompile(`(\d+) requests in `)
)

// wrk runs wrk once against addr and returns its requests per second and
// the number of requests it completed, with any socket-error or non-2xx
// line it printed as notes.
func wrk(addr string, closeConn bool) (rps, requests float64, notes string, err error) {
	args := []string{"-t2", fmt.Sprintf("-c%d", *wrkConns), fmt.Sprintf("-d%ds", int(wrkDuration.Seconds())), "http://" + addr + "/"}
	if closeConn {
		args = append([]string{"-H", "Connection: close"}, args...)
	}
	out, err := exec.Command("wrk", args...).CombinedOutput()
	if err != nil {
		return 0, 0, string(out), fmt.Errorf("wrk: %w: %s", err, out)
	}
	mr, mn := rpsRe.FindSubmatch(out), reqsRe.FindSubmatch(out)
	if mr == nil || mn == nil {
		return 0, 0, string(out), fmt.Errorf("wrk printed no Requests/sec or request count: %s", out)
	}
	rps, _ = strconv.ParseFloat(string(mr[1]), 64)
	requests, _ = strconv.ParseFloat(string(mn[1]), 64)
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "Socket errors") || strings.Contains(l, "Non-2xx") {
			notes += strings.TrimSpace(l) + "; "
		}
	}
	return rps, requests, notes, nil
}

// loadOnce runs wrk once through r.
func loadOnce(r *relay, closeConn bool) (loadSample, string, error) {
	var u0, s0 float64
	if r.cmd != nil {
		u0, s0 = cpuTimes(r.pid())
	}
	b0, i0 := boxTimes()
	v, n, notes, err := wrk(r.addr, closeConn)
	b1, i1 := boxTimes()
	if err != nil || n == 0 {
		return loadSample{}, notes, err
	}
	perReq := 1e6 / n
	s := loadSample{rps: v, busy: (b1 - b0) * perReq, idle: (i1 - i0) * perReq}
	if r.cmd != nil {
		time.Sleep(200 * time.Millisecond) // let the relay finish the last closes
		u1, s1 := cpuTimes(r.pid())
		s.user, s.sys = (u1-u0)*perReq, (s1-s0)*perReq
		notes += fmt.Sprintf("relay CPU %.1f+%.1f µs/req ", s.user, s.sys)
	}
	notes += fmt.Sprintf("box busy %.1f idle %.1f µs/req", s.busy, s.idle)
	return s, notes, nil
}

// syscallsPerRequest runs wrk once more through r while perf counts the
// system calls r's process makes; it returns them per request. socat is
// not counted (its work is in a child per connection).
func syscallsPerRequest(r *relay, closeConn bool) (float64, error) {
	d := wrkDuration.Seconds() + 1
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(d+30)*time.Second)
	defer cancel()
	perf := exec.CommandContext(ctx, "perf", "stat", "-x,", "-e", "raw_syscalls:sys_enter",
		"-p", strconv.Itoa(r.pid()), "--", "sleep", strconv.FormatFloat(d, 'f', -1, 64))
	var out bytes.Buffer
	perf.Stderr = &out
	if err := perf.Start(); err != nil {
		return 0, err
	}
	time.Sleep(300 * time.Millisecond) // perf attaches
	_, n, _, err := wrk(r.addr, closeConn)
	if werr := perf.Wait(); err == nil && werr != nil {
		err = fmt.Errorf("perf stat: %w: %s", werr, out.Bytes())
	}
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(out.String(), "\n") {
		if f := strings.Split(l, ","); len(f) > 2 && strings.HasPrefix(f[2], "raw_syscalls:sys_enter") {
			calls, err := strconv.ParseFloat(f[0], 64)
			if err != nil {
				return 0, fmt.Errorf("perf stat printed %q", l)
			}
			return calls / n, nil
		}
	}
	return 0, fmt.Errorf("perf stat printed no count: %s", out.Bytes())
}

// syscallNs is the cost of one system call's entry and exit on this
// machine: getppid, which does nothing else (the best of three runs).
func syscallNs() float64 {
	best := 0.0
	for range 3 {
		const n = 1_000_000
		t := time.Now()
		for range n {
			syscall.RawSyscall(syscall.SYS_GETPPID, 0, 0, 0)
		}
		if ns := float64(time.Since(t).Nanoseconds()) / n; best == 0 || ns < best {
			best = ns
		}
	}
	return best
}

func loadSection(relays []string, names map[string]string) {
	load0 := loadavg()
	backend := startHTTP()
	var cols []string
	for _, name := range relays {
		if name != "buf32k" {
			cols = append(cols, name)
		}
	}
	samples := map[loadKey][]loadSample{}
	for round := range *rounds {
		for _, name := range cols {
			r, err := startRelay(name, backend)
			if err != nil {
				fatal(err)
			}
			for _, closeConn := range []bool{false, true} {
				s, notes, err := loadOnce(r, closeConn)
				if err != nil {
					r.stop()
					fatal(err)
				}
				k := loadKey{name, closeConn}
				samples[k] = append(samples[k], s)
				fmt.Fprintf(os.Stderr, "load round %d %-9s %-17s %8.0f req/s %s\n", round, name, k.workload(), s.rps, notes)
				time.Sleep(time.Second)
			}
			r.stop()
		}
	}
	load1 := loadavg()

	// One more run per relay with perf counting its system calls (it slows
	// the relay, so it is not one of the measured rounds).
	calls := map[loadKey]float64{}
	if _, err := exec.LookPath("perf"); *syscallCount && err == nil {
		for _, name := range cols {
			if name == "direct" || name == "socat" || name == "haproxy-again" {
				continue
			}
			r, err := startRelay(name, backend)
			if err != nil {
				fatal(err)
			}
			for _, closeConn := range []bool{false, true} {
				n, err := syscallsPerRequest(r, closeConn)
				if err != nil {
					fmt.Fprintf(os.Stderr, "relaybench: counting system calls of %s: %v\n", name, err)
					continue
				}
				calls[loadKey{name, closeConn}] = n
				time.Sleep(time.Second)
			}
			r.stop()
		}
	}

	med := func(k loadKey, f func(loadSample) float64) float64 {
		var v []float64
		for _, s := range samples[k] {
			v = append(v, f(s))
		}
		return median(v)
	}
	rps := func(s loadSample) float64 { return s.rps }
	cpu := func(s loadSample) float64 { return s.user + s.sys }
	user := func(s loadSample) float64 { return s.user }
	sys := func(s loadSample) float64 { return s.sys }
	busy := func(s loadSample) float64 { return s.busy }
	idle := func(s loadSample) float64 { return s.idle }
	capacity := func(s loadSample) float64 { return s.busy + s.idle }

	fmt.Printf("### load: wrk -t2 -c%d -d%s against a Go HTTP server (median of %d; load average %s before, %s after)\n\n", *wrkConns, *wrkDuration, *rounds, load0, load1)
	fmt.Print("| workload |")
	for _, c := range cols {
		fmt.Printf(" %s |", names[c])
	}
	// Ratios of this project's relays to HAProxy and to the bare relay.
	var ours []string
	for _, c := range cols {
		if c == "splice" || c == "loop" || c == "loopserve" {
			ours = append(ours, c)
			fmt.Printf(" %s ÷ HAProxy | %s ÷ bare |", short[c], short[c])
		}
	}
	fmt.Println()
	fmt.Println("|---" + strings.Repeat("|---", len(cols)+2*len(ours)) + "|")
	// row prints one row per workload: f's median for every relay, then
	// each of ours against HAProxy and against the bare relay (for CPU,
	// lower is better: the ratio says how many times less it uses).
	row := func(what string, f func(loadSample) float64, format string, lowerBetter bool) {
		for _, closeConn := range []bool{false, true} {
			fmt.Printf("| %s, %s |", loadKey{"", closeConn}.workload(), what)
			for _, c := range cols {
				if lowerBetter && c == "direct" {
					fmt.Print(" — |")
					continue
				}
				fmt.Printf(" "+format+" |", med(loadKey{c, closeConn}, f))
			}
			hp, bare := med(loadKey{"haproxy", closeConn}, f), med(loadKey{"bare", closeConn}, f)
			for _, c := range ours {
				me := med(loadKey{c, closeConn}, f)
				if lowerBetter {
					fmt.Printf(" %s less | %s less |", ratio(hp, me), ratio(bare, me))
				} else {
					fmt.Printf(" %s | %s |", ratio(me, hp), ratio(me, bare))
				}
			}
			fmt.Println()
		}
	}
	row("req/s", rps, "%.0f", false)
	row("relay CPU µs/req", cpu, "%.1f", true)
	fmt.Println()
	if len(samples[loadKey{"haproxy-again", false}]) > 0 {
		// The same relay measured twice in the same rounds: how far apart
		// two medians land when nothing differs.
		fmt.Print("HAProxy measured against itself in the same rounds (-relays haproxy-again), again ÷ first:")
		for _, closeConn := range []bool{false, true} {
			a, b := med(loadKey{"haproxy-again", closeConn}, rps), med(loadKey{"haproxy", closeConn}, rps)
			ca, cb := med(loadKey{"haproxy-again", closeConn}, cpu), med(loadKey{"haproxy", closeConn}, cpu)
			fmt.Printf(" %s %s req/s, CPU %s;", loadKey{"", closeConn}.workload(), ratio(a, b), ratio(ca, cb))
		}
		fmt.Print("\n\n")
	}

	fmt.Printf("Where the CPU went (medians, µs per request; box = all %d CPUs, busy + idle = the machine's capacity per request; system calls counted by perf in one extra run):\n\n", numCPU())
	fmt.Println("| workload | relay | req/s | relay user | relay kernel | relay system calls | box busy | box idle |")
	fmt.Println("|---|---|---|---|---|---|---|---|")
	for _, closeConn := range []bool{false, true} {
		for _, c := range cols {
			k := loadKey{c, closeConn}
			u, s, n := "—", "—", "—"
			if c != "direct" {
				u, s = fmt.Sprintf("%.1f", med(k, user)), fmt.Sprintf("%.1f", med(k, sys))
			}
			if v, ok := calls[k]; ok {
				n = fmt.Sprintf("%.1f", v)
			}
			fmt.Printf("| %s | %s | %.0f | %s | %s | %s | %.1f | %.1f |\n", k.workload(), names[c], med(k, rps), u, s, n, med(k, busy), med(k, idle))
		}
	}
	fmt.Println()

	// The ceilings: HAProxy's run, less HAProxy's user-space CPU (and
	// less the CPU the machine left idle), is what a relay making HAProxy's
	// kernel calls could at best leave per request; direct's idle says how
	// much idle there is with no relay at all. Collapsing all of a relay's
	// system calls into one (io_uring) saves at most their entry and exit.
	ns := syscallNs()
	fmt.Printf("Ceilings on this machine (one system call's entry and exit: getppid, %.0f ns):\n\n", ns)
	fmt.Println("| workload | HAProxy: box µs/req (busy + idle) | its user µs/req | box idle µs/req (direct's) | ceiling ÷ HAProxy, its kernel work and no user CPU | … and no idle either | relay | its system calls/req | ceiling ÷ itself, one call per request |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|")
	for _, closeConn := range []bool{false, true} {
		h := loadKey{"haproxy", closeConn}
		if len(samples[h]) == 0 {
			continue
		}
		box, u, i := med(h, capacity), med(h, user), med(h, idle)
		direct := "—"
		if d := (loadKey{"direct", closeConn}); len(samples[d]) > 0 {
			direct = fmt.Sprintf("%.1f", med(d, idle))
		}
		head := fmt.Sprintf("| %s | %.1f | %.1f | %.1f (%s) | %s | %s |", h.workload(), box, u, i, direct, ratio(box, box-u), ratio(box, box-u-i))
		printed := false
		for _, c := range ours {
			k := loadKey{c, closeConn}
			n, ok := calls[k]
			if !ok {
				continue
			}
			own := med(k, capacity)
			save := (n - 1) * ns / 1000
			fmt.Printf("%s %s | %.1f | %s |\n", head, names[c], n, ratio(own, own-save))
			printed = true
		}
		if !printed {
			fmt.Println(head + " — | not counted | — |")
		}
	}
	fmt.Println()
}
