//go:build linux

// Command relaybench compares TCP relays on loopback, all in one run, and
// prints the results as Markdown tables with ratios:
//
//	bulk  one stream of -bulk-gib GiB through each relay to a Go sink:
//	      throughput and relay CPU-seconds per GiB (issue 4)
//	load  wrk against a small Go HTTP server through each relay, keep-alive
//	      and Connection: close (issue 9); with each run's relay user and
//	      kernel CPU, the machine's busy and idle CPU, system calls per
//	      request (perf) and the ceilings they put on any relay here
//	idle  RSS and file descriptors of the relay process per idle proxied
//	      connection, at each -idle count (issue 9)
//
// The relays: direct (no relay, the limit), HAProxy (TCP mode, option
// splice-auto), socat, relayd -mode bare (io.Copy both ways), relayd -mode
// buf32k (32 KiB user-space buffers), relayd -mode splice (this
// project's splice.Join, two goroutines per connection) and relayd -mode
// loop (splice.Loop: its own epoll sets, no goroutine per connection;
// StartDial after Go's Accept) and relayd -mode loopserve
// (Loop.ServeDial: the loop's workers accept too). Rounds are interleaved (every relay once per
// round) and the median is reported. Run it through bench/relay.sh, which
// installs haproxy, socat and wrk and builds relayd.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

var (
	relaydPath     = flag.String("relayd", "", "path of the relayd binary")
	sections       = flag.String("sections", "bulk,load,idle", "which comparisons to run (bulk, load, idle, threshold)")
	bulkGiB        = flag.Float64("bulk-gib", 2, "GiB per bulk transfer")
	rounds         = flag.Int("rounds", 3, "interleaved rounds; the median is reported")
	wrkDuration    = flag.Duration("wrk-duration", 5*time.Second, "duration of one wrk run")
	wrkConns       = flag.Int("wrk-conns", 32, "wrk connections")
	idleCounts     = flag.String("idle", "3000,9900", "idle connection counts (each needs 2 descriptors per connection in the relay)")
	socatIdleMax   = flag.Int("socat-idle-max", 3000, "largest idle count tried with socat (one process per connection)")
	thresholdSizes = flag.String("threshold-sizes", "1024,4096,16384,65536,262144", "message sizes of the threshold section")
	spliceArgs     = flag.String("splice-args", "", "extra relayd flags for the splice and loop relays, e.g. \"-threshold 65536\"")
	syscallCount   = flag.Bool("count-syscalls", true, "load: count each relay's system calls per request with perf in one extra wrk run")
	relayList      = flag.String("relays", "direct,haproxy,socat,bare,buf32k,splice,loop,loopserve", "relays to compare (haproxy-again: HAProxy a second time, an A/A control for the load section)")
)

// short names this project's relays in ratio column heads.
var short map[string]string

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

// relay is a running relay process (or none, for direct).
type relay struct {
	name string
	addr string
	cmd  *exec.Cmd
	pss  bool // memory as PSS summed over the process tree (socat forks)
}

func (r *relay) pid() int {
	if r.cmd == nil {
		return 0
	}
	return r.cmd.Process.Pid
}

func (r *relay) stop() {
	if r.cmd == nil {
		return
	}
	syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL) // the process group: socat's children too
	r.cmd.Wait()
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func waitListening(addr string) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("nothing listens on %s", addr)
}

func startRelay(name, backend string, extra ...string) (*relay, error) {
	r := &relay{name: name}
	switch name {
	case "direct":
		r.addr = backend
		return r, nil
	case "bare", "buf32k", "splice", "loop", "loopserve":
		if (name == "splice" || name == "loop" || name == "loopserve") && len(extra) == 0 && *spliceArgs != "" {
			extra = strings.Fields(*spliceArgs)
		}
		r.cmd = exec.Command(*relaydPath, append([]string{"-mode", name, "-target", backend}, extra...)...)
		r.cmd.Stderr = os.Stderr
		r.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		out, err := r.cmd.StdoutPipe()
		if err != nil {
			return nil, err
		}
		if err := r.cmd.Start(); err != nil {
			return nil, err
		}
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil {
			r.stop()
			return nil, fmt.Errorf("relayd: %w", err)
		}
		r.addr = strings.TrimSpace(line)
		return r, nil
	case "haproxy", "haproxy-again":
		port := freePort()
		r.addr = fmt.Sprintf("127.0.0.1:%d", port)
		// This sandbox's hard descriptor limit is 20000 (no CAP_SYS_RESOURCE):
		// HAProxy may not ask for more.
		cfg := fmt.Sprintf(`global
    ulimit-n 20000
    maxconn 9920
    maxpipes 32
defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h
    option splice-auto
frontend f
    bind %s
    default_backend b
backend b
    server s1 %s
`, r.addr, backend)
		f := filepath.Join(os.TempDir(), fmt.Sprintf("relaybench-haproxy-%d.cfg", port))
		if err := os.WriteFile(f, []byte(cfg), 0o644); err != nil {
			return nil, err
		}
		r.cmd = exec.Command("haproxy", "-db", "-f", f)
		r.cmd.Stderr = os.Stderr
	case "socat":
		port := freePort()
		r.addr = fmt.Sprintf("127.0.0.1:%d", port)
		r.cmd = exec.Command("socat", fmt.Sprintf("TCP-LISTEN:%d,bind=127.0.0.1,fork,reuseaddr,backlog=4096", port), "TCP:"+backend)
		r.cmd.Stderr = os.Stderr
		r.pss = true
	default:
		return nil, fmt.Errorf("unknown relay %q", name)
	}
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := r.cmd.Start(); err != nil {
		return nil, err
	}
	if err := waitListening(r.addr); err != nil {
		r.stop()
		return nil, err
	}
	return r, nil
}

// ---- /proc accounting ----

const clkTck = 100 // sysconf(_SC_CLK_TCK) on Linux

// statFields returns the fields of /proc/pid/stat after the command name.
func statFields(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(string(b[i+1:])) // [0]=state [1]=ppid ... [11]=utime
}

// children returns the live descendants of pid.
func descendants(pid int) []int {
	ents, _ := os.ReadDir("/proc")
	parent := map[int]int{}
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f := statFields(p)
		if len(f) > 1 {
			pp, _ := strconv.Atoi(f[1])
			parent[p] = pp
		}
	}
	var out []int
	for p := range parent {
		for q := parent[p]; q > 1; q = parent[q] {
			if q == pid {
				out = append(out, p)
				break
			}
		}
	}
	return out
}

// cpuSeconds is the CPU time of pid, its reaped children and its live
// descendants.
func cpuSeconds(pid int) float64 {
	u, s := cpuTimes(pid)
	return u + s
}

// memKiB is VmRSS of pid, or the PSS of pid and its descendants.
func memKiB(pid int, pss bool) int64 {
	if !pss {
		return statusField(fmt.Sprintf("/proc/%d/status", pid), "VmRSS:")
	}
	total := statusField(fmt.Sprintf("/proc/%d/smaps_rollup", pid), "Pss:")
	for _, c := range descendants(pid) {
		total += statusField(fmt.Sprintf("/proc/%d/smaps_rollup", c), "Pss:")
	}
	return total
}

func statusField(file, key string) int64 {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, key) {
			f := strings.Fields(l[len(key):])
			if len(f) > 0 {
				v, _ := strconv.ParseInt(f[0], 10, 64)
				return v
			}
		}
	}
	return 0
}

// fds counts the descriptors of pid and its descendants.
func fds(pid int) int {
	n := 0
	for _, p := range append([]int{pid}, descendants(pid)...) {
		ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p))
		n += len(ents)
	}
	return n
}

// ---- backends ----

// sink reads every connection to EOF and reports byte counts.
type sink struct {
	ln   net.Listener
	done chan sinkResult
}

type sinkResult struct {
	n   int64
	end time.Time
}

func startSink() *sink {
	s := &sink{done: make(chan sinkResult, 16)}
	s.ln = serveTCP(func(c net.Conn) {
		buf := make([]byte, 1<<20)
		var n int64
		for {
			k, err := c.Read(buf)
			n += int64(k)
			if err != nil {
				break
			}
		}
		if n > 0 {
			s.done <- sinkResult{n, time.Now()}
		}
	})
	return s
}

// serveTCP listens on loopback and runs handle on every accepted
// connection in its own goroutine, closing the connection after it. A
// failed Accept is retried (the relay tests run close to the fd limit)
// until the listener is closed.
func serveTCP(handle func(net.Conn)) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				time.Sleep(10 * time.Millisecond)
				continue
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return ln
}

func startHTTP() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fatal(err)
	}
	body := []byte("hello, relay\n")
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
	})}
	go srv.Serve(ln)
	return ln.Addr().String()
}

// startHolder answers one byte with one byte, then holds the connection
// until the peer closes it.
func startHolder() string {
	return serveTCP(func(c net.Conn) {
		b := make([]byte, 1)
		if _, err := c.Read(b); err != nil {
			return
		}
		c.Write(b)
		c.Read(b) // until EOF
	}).Addr().String()
}

// ---- measurements ----

type bulkResult struct {
	gbps   float64
	cpuGiB float64 // relay CPU-seconds per GiB
}

func bulkOnce(r *relay, s *sink, total int64) (bulkResult, error) {
	c, err := net.Dial("tcp", r.addr)
	if err != nil {
		return bulkResult{}, err
	}
	defer c.Close()
	buf := make([]byte, 1<<20)
	cpu0 := 0.0
	if r.cmd != nil {
		cpu0 = cpuSeconds(r.pid())
	}
	start := time.Now()
	for sent := int64(0); sent < total; {
		k := min(int64(len(buf)), total-sent)
		if _, err := c.Write(buf[:k]); err != nil {
			return bulkResult{}, err
		}
		sent += k
	}
	c.(*net.TCPConn).CloseWrite()
	var res sinkResult
	select {
	case res = <-s.done:
	case <-time.After(5 * time.Minute):
		return bulkResult{}, errors.New("sink got no EOF")
	}
	io.Copy(io.Discard, c) // the relay closes its side
	if res.n != total {
		return bulkResult{}, fmt.Errorf("sink got %d bytes, want %d", res.n, total)
	}
	d := res.end.Sub(start)
	out := bulkResult{gbps: float64(total) * 8 / d.Seconds() / 1e9}
	if r.cmd != nil {
		time.Sleep(200 * time.Millisecond) // let a forked child exit and be reaped
		out.cpuGiB = (cpuSeconds(r.pid()) - cpu0) / (float64(total) / (1 << 30))
	}
	return out, nil
}

type idleResult struct {
	kibPerConn float64
	fdPerConn  float64
	rssKiB     int64
	kibAfterGC float64 // Go relays: after two forced GCs; -1: not measured
}

func idleOnce(r *relay, n int) (idleResult, error) {
	// Warm up: one connection through, closed.
	if err := pingConn(r.addr, true, nil); err != nil {
		return idleResult{}, err
	}
	time.Sleep(500 * time.Millisecond)
	mem0, fd0 := memKiB(r.pid(), r.pss), fds(r.pid())
	conns := make([]net.Conn, n)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	sem := make(chan struct{}, 64)
	for i := range conns {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			var c net.Conn
			if err := pingConn(r.addr, false, &c); err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
			conns[i] = c
		}()
	}
	wg.Wait()
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
		time.Sleep(time.Second)
	}()
	if firstErr != nil {
		return idleResult{}, firstErr
	}
	time.Sleep(2 * time.Second)
	mem1, fd1 := memKiB(r.pid(), r.pss), fds(r.pid())
	res := idleResult{
		kibPerConn: float64(mem1-mem0) / float64(n),
		fdPerConn:  float64(fd1-fd0) / float64(n),
		rssKiB:     mem1,
		kibAfterGC: -1,
	}
	if r.name == "bare" || r.name == "buf32k" || r.name == "splice" || r.name == "loop" || r.name == "loopserve" {
		syscall.Kill(r.pid(), syscall.SIGUSR1) // relayd prints its memory statistics
		time.Sleep(100 * time.Millisecond)
		syscall.Kill(r.pid(), syscall.SIGUSR2) // two GCs (stacks shrink), memory returned
		time.Sleep(2 * time.Second)
		res.kibAfterGC = float64(memKiB(r.pid(), r.pss)-mem0) / float64(n)
	}
	return res, nil
}

// pingConn dials, sends one byte and reads the echo; it keeps the
// connection in *keep unless closeIt.
func pingConn(addr string, closeIt bool, keep *net.Conn) error {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return err
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	b := []byte{'x'}
	if _, err := c.Write(b); err != nil {
		c.Close()
		return err
	}
	if _, err := io.ReadFull(c, b); err != nil {
		c.Close()
		return err
	}
	c.SetDeadline(time.Time{})
	if closeIt || keep == nil {
		return c.Close()
	}
	*keep = c
	return nil
}

// ---- report ----

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func ratio(a, b float64) string {
	if a == 0 || b == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2fx", a/b)
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "relaybench:", err)
	os.Exit(1)
}

func has(list, s string) bool { return slices.Contains(strings.Split(list, ","), s) }

func main() {
	flag.Parse()
	if *relaydPath == "" {
		fatal(errors.New("-relayd is required"))
	}
	lim := syscall.Rlimit{Cur: 1 << 20, Max: 1 << 20}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
		lim.Cur = lim.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	relays := strings.Split(*relayList, ",")
	names := map[string]string{
		"direct": "direct (limit)", "haproxy": "HAProxy 2.6 (splice-auto)", "socat": "socat",
		"bare": "bare io.Copy relay", "buf32k": "32 KiB buffer relay", "splice": "**splice.Join**",
		"loop": "**splice.Loop**", "loopserve": "**Loop.ServeDial**",
		"haproxy-again": "HAProxy 2.6 again (A/A control)",
	}
	short = map[string]string{"splice": "Join", "loop": "Loop", "loopserve": "ServeDial"}
	fmt.Printf("relaybench: %s, GOMAXPROCS default, %d CPUs, rounds=%d\n\n", time.Now().UTC().Format(time.RFC3339), numCPU(), *rounds)

	if has(*sections, "threshold") {
		threshold()
	}
	// Each section's head names the load average before it ran and after.

	if has(*sections, "bulk") {
		load0 := loadavg()
		s := startSink()
		total := int64(*bulkGiB * (1 << 30))
		gbps := map[string][]float64{}
		cpu := map[string][]float64{}
		for round := range *rounds {
			for _, name := range relays {
				r, err := startRelay(name, s.ln.Addr().String())
				if err != nil {
					fatal(err)
				}
				res, err := bulkOnce(r, s, total)
				r.stop()
				if err != nil {
					fatal(fmt.Errorf("bulk %s: %w", name, err))
				}
				fmt.Fprintf(os.Stderr, "bulk round %d %-8s %6.2f Gbit/s %6.3f CPU-s/GiB\n", round, name, res.gbps, res.cpuGiB)
				gbps[name] = append(gbps[name], res.gbps)
				cpu[name] = append(cpu[name], res.cpuGiB)
			}
		}
		fmt.Printf("### bulk: one stream of %.0f GiB to a Go sink (median of %d; load average %s before, %s after)\n\n", *bulkGiB, *rounds, load0, loadavg())
		fmt.Println("| relay | Gbit/s | × direct | splice.Join ÷ it | splice.Loop ÷ it | relay CPU-s per GiB | its CPU ÷ splice.Join's |")
		fmt.Println("|---|---|---|---|---|---|---|")
		me, meCPU := median(gbps["splice"]), median(cpu["splice"])
		lo := median(gbps["loop"])
		for _, name := range relays {
			g, c := median(gbps[name]), median(cpu[name])
			cs, cr := fmt.Sprintf("%.3f", c), ratio(c, meCPU)
			if name == "direct" {
				cs, cr = "—", "—"
			}
			fmt.Printf("| %s | %.2f | %s | %s | %s | %s | %s |\n", names[name], g, ratio(g, median(gbps["direct"])), ratio(me, g), ratio(lo, g), cs, cr)
		}
		fmt.Println()
		s.ln.Close()
	}

	if has(*sections, "load") {
		loadSection(relays, names)
	}

	if has(*sections, "idle") {
		backend := startHolder()
		fmt.Printf("### idle proxied connections: growth of the relay process (socat: PSS summed over its processes; load average %s before)\n", loadavg())
		fmt.Println()
		fmt.Println("| idle connections | relay | KiB per connection | after two GCs (Go relays) | descriptors per connection | RSS total KiB |")
		fmt.Println("|---|---|---|---|---|---|")
		var lim syscall.Rlimit
		syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
		fdPer := map[string]float64{} // measured at a smaller count
		for _, ns := range strings.Split(*idleCounts, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(ns))
			if err != nil {
				fatal(err)
			}
			for _, name := range relays {
				if name == "direct" || name == "buf32k" {
					continue
				}
				if name == "socat" && n > *socatIdleMax {
					fmt.Printf("| %d | %s | not run: one process per connection (-socat-idle-max %d) | | | |\n", n, names[name], *socatIdleMax)
					continue
				}
				if need := fdPer[name] * float64(n); need+64 > float64(lim.Cur) {
					fmt.Printf("| %d | %s | not run: needs %.0f descriptors, the limit is %d | | | |\n", n, names[name], need, lim.Cur)
					continue
				}
				r, err := startRelay(name, backend)
				if err != nil {
					fatal(err)
				}
				res, err := idleOnce(r, n)
				r.stop()
				if err != nil {
					fatal(fmt.Errorf("idle %s %d: %w", name, n, err))
				}
				fdPer[name] = res.fdPerConn
				fmt.Fprintf(os.Stderr, "idle %d %-8s %.2f KiB/conn %.2f fd/conn\n", n, name, res.kibPerConn, res.fdPerConn)
				gc := "—"
				if res.kibAfterGC >= 0 {
					gc = fmt.Sprintf("%.2f", res.kibAfterGC)
				}
				fmt.Printf("| %d | %s | %.2f | %s | %.2f | %d |\n", n, names[name], res.kibPerConn, gc, res.fdPerConn, res.rssKiB)
			}
		}
		fmt.Println()
	}
}

// startEcho answers every message of size bytes with the same bytes.
func startEcho(size int) string {
	return serveTCP(func(c net.Conn) {
		buf := make([]byte, size)
		for {
			if _, err := io.ReadFull(c, buf); err != nil {
				return
			}
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	}).Addr().String()
}

// pingPong sends n messages of size bytes through r, one at a time, and
// returns the relay's CPU microseconds per round trip.
func pingPong(r *relay, size, n int) (float64, error) {
	c, err := net.Dial("tcp", r.addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	msg := make([]byte, size)
	// One round trip first, so that the relay has dialed.
	round := func() error {
		if _, err := c.Write(msg); err != nil {
			return err
		}
		_, err := io.ReadFull(c, msg)
		return err
	}
	if err := round(); err != nil {
		return 0, err
	}
	cpu0 := cpuSeconds(r.pid())
	for range n {
		if err := round(); err != nil {
			return 0, err
		}
	}
	return (cpuSeconds(r.pid()) - cpu0) / float64(n) * 1e6, nil
}

// threshold compares, per message size, the relay CPU of the user-space
// path (a buffer as large as the message, no splice) with splice from 1 KiB
// on: where splice starts to cost less is DefaultSpliceThreshold.
func threshold() {
	var sizes []int
	for _, f := range strings.Split(*thresholdSizes, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			fatal(err)
		}
		sizes = append(sizes, v)
	}
	variants := []struct {
		name string
		args []string
	}{
		{"copy", []string{"-nosplice", "-threshold", "1048576"}},
		{"splice", []string{"-threshold", "1024"}},
	}
	fmt.Printf("### threshold: relay CPU per round trip, one connection, ping-pong of one message each way (median of %d)\n\n", *rounds)
	fmt.Println("| message size | user-space copy, µs | splice, µs | copy ÷ splice |")
	fmt.Println("|---|---|---|---|")
	for _, size := range sizes {
		backend := startEcho(size)
		res := map[string][]float64{}
		n := max(200, min(20000, (256<<20)/size))
		for range *rounds {
			for _, v := range variants {
				r, err := startRelay("splice", backend, v.args...)
				if err != nil {
					fatal(err)
				}
				us, err := pingPong(r, size, n)
				r.stop()
				if err != nil {
					fatal(fmt.Errorf("threshold %s %d: %w", v.name, size, err))
				}
				res[v.name] = append(res[v.name], us)
				fmt.Fprintf(os.Stderr, "threshold %7d %-6s %8.2f µs/round trip\n", size, v.name, us)
			}
		}
		c, sp := median(res["copy"]), median(res["splice"])
		fmt.Printf("| %d | %.2f | %.2f | %s |\n", size, c, sp, ratio(c, sp))
	}
	fmt.Println()
}

func numCPU() int {
	b, _ := os.ReadFile("/proc/cpuinfo")
	return bytes.Count(b, []byte("\nprocessor")) + 1
}
