//go:build linux

// Command mesh compares HTTP through a pair of sidecars (examples/sidecar)
// with HTTP through a pair of HAProxy 2.6 with mutual TLS 1.3, on the same
// small Go HTTP backend, in one run, and prints Markdown tables with ratios
// (issue 17). Run it through bench/mesh.sh, which installs haproxy, wrk and
// h2load (nghttp2-client) when missing and builds the sidecar.
//
// The paths, each a pair of proxy processes between the load generator and
// the backend (except direct):
//
//	direct              no proxy, the limit
//	sidecar-http        sidecar A (explicit outbound listener, detection,
//	                    HTTP layer) → mutual TLS 1.3 → sidecar B (HTTP
//	                    layer) → backend
//	sidecar-opaque      the same sidecars with the port declared opaque on
//	                    both: no detection, bytes spliced through mutual TLS
//	haproxy-http        HAProxy (mode http) → mutual TLS 1.3 (verify
//	                    required, ca-file, crt) → HAProxy (mode http) → backend
//	haproxy-tcp         the same pair in mode tcp
//	haproxy-http-again  haproxy-http a second time: an A/A control that
//	                    shows how far two medians of the same thing land
//
// The certificates of both pairs come from one throw-away SPIFFE CA
// (mtls/mtlstest). The loads, per round and path, on processes started
// fresh for the path:
//
//	idle        -idle keep-alive connections, one request each, held open:
//	            the growth of the proxies' RSS and descriptors per connection,
//	            2 s after the last one opened and -idle-settle later; then,
//	            2 x -idle-settle later, as many more, and what each added
//	            once settled (the marginal cost, without a fresh process's
//	            one-time costs); with -idle-body N each of those requests is
//	            answered with N bytes (a connection that streamed once, then
//	            went idle)
//	keep-alive  wrk -t2 -c32, HTTP/1.1 keep-alive
//	close       wrk -t2 -c32 -H 'Connection: close': a new connection per request
//	h2c         h2load, HTTP/2 with prior knowledge, several streams per connection
//	rate        an open-loop client at -rate requests/s on keep-alive
//	            connections: p50, p99 and p99.9 latency, and what each adds to direct's
//
// For the closed-loop loads it reads the CPU time of the path's proxy
// processes from /proc/PID/stat and divides it by the requests completed.
// Rounds are interleaved (every path once per round) and the median is
// reported. After the rounds, -syscalls counts each proxy process's system
// calls (by kind) and context switches per request with perf stat during one
// more keep-alive run per path, and -profile records the sidecars with perf.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

var (
	sidecarBin   = flag.String("sidecar", "", "path of the examples/sidecar binary")
	sidecarArgs  = flag.String("sidecar-args", "", "more flags for both sidecars, space-separated")
	sidecarEnv   = flag.String("sidecar-env", "", "more environment for both sidecars, space-separated NAME=value (GOMAXPROCS=1, GOGC=200...)")
	pathList     = flag.String("paths", "direct,sidecar-http,haproxy-http,sidecar-opaque,haproxy-tcp,haproxy-http-again", "paths to compare")
	loadList     = flag.String("loads", "idle,keep-alive,close,h2c,rate", "loads to run on each path")
	rounds       = flag.Int("rounds", 3, "interleaved rounds; the median is reported")
	duration     = flag.Duration("duration", 6*time.Second, "duration of one wrk or h2load run")
	conns        = flag.Int("conns", 32, "wrk connections")
	h2Conns      = flag.Int("h2-conns", 8, "h2load connections")
	h2Streams    = flag.Int("h2-streams", 16, "h2load concurrent streams per connection")
	rate         = flag.Int("rate", 2000, "requests per second of the fixed-rate load")
	rateDuration = flag.Duration("rate-duration", 10*time.Second, "duration of the fixed-rate load")
	rateConns    = flag.Int("rate-conns", 32, "keep-alive connections of the fixed-rate client")
	idleConns    = flag.Int("idle", 2000, "idle keep-alive connections held through each path")
	idleBody     = flag.Int("idle-body", 0, "bytes of the answer to each idle connection's request (0: the backend's short answer); at most 64 MiB (the haproxy-http path does not finish 2000 connections with 256-KiB answers: one waits past the 10-s deadline; 400 and fewer pass)")
	idleSettle   = flag.Duration("idle-settle", 10*time.Second, "how much longer the idle connections are held before the proxies' RSS is read again")
	syscalls     = flag.Bool("syscalls", false, "after the rounds, count each proxy process's system calls and context switches per request (perf stat) during one more keep-alive run per path")
	profileLoad  = flag.String("profile-load", "keep-alive", "the load -profile records: keep-alive, close or h2c")
	profileDir   = flag.String("profile", "", "after the rounds, record each sidecar process with perf during one more keep-alive run and write the reports here")
	serveBack    = flag.Bool("serve-backend", false, "internal: run as the backend process")
)

func init() {
	flag.Func("alt", "another build of the sidecar to compare, `label=binary` (repeatable): path sidecar-http+label runs it", func(v string) error {
		label, bin, ok := strings.Cut(v, "=")
		if !ok || label == "" || bin == "" || strings.ContainsAny(label, "+,") {
			return fmt.Errorf("want label=binary")
		}
		altBinaries[label] = bin
		return nil
	})
}

var loads = []string{"idle", "keep-alive", "close", "h2c", "rate"}

// result is everything measured on one path in one round.
type result struct {
	tp   map[string]throughput // keep-alive, close, h2c
	lat  latencies
	idle idle
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "mesh:", err)
	os.Exit(1)
}

func has(list, s string) bool { return slices.Contains(strings.Split(list, ","), s) }

func main() {
	flag.Parse()
	if *serveBack {
		serveBackend()
		return
	}
	if *sidecarBin == "" {
		fatal(fmt.Errorf("-sidecar is required"))
	}
	if *idleBody < 0 || *idleBody > maxBulk {
		fatal(fmt.Errorf("-idle-body %d: want 0 to %d", *idleBody, maxBulk))
	}
	var paths []string
	for _, p := range strings.Split(*pathList, ",") {
		if _, ok := infoOf(p); !ok {
			fatal(fmt.Errorf("unknown path %q", p))
		}
		paths = append(paths, p)
	}
	for _, l := range strings.Split(*loadList, ",") {
		if !slices.Contains(loads, l) {
			fatal(fmt.Errorf("unknown load %q", l))
		}
	}
	raiseNoFile()
	dir, err := os.MkdirTemp("", "meshbench")
	if err != nil {
		fatal(err)
	}
	defer os.RemoveAll(dir)
	ids, err := writeIdentities(dir)
	if err != nil {
		fatal(err)
	}
	backend, baddr, err := startBackend()
	if err != nil {
		fatal(err)
	}
	defer backend.stop()
	s := &starter{dir: dir, sidecar: *sidecarBin, extra: strings.Fields(*sidecarArgs), env: strings.Fields(*sidecarEnv), ids: ids, backend: baddr}

	fmt.Printf("mesh: %s, %d CPUs, rounds=%d, sidecar flags %q, environment %q, load average %s\n\n",
		time.Now().UTC().Format(time.RFC3339), numCPU(), *rounds, *sidecarArgs, *sidecarEnv, loadavg())
	load0 := loadavg()
	results := map[string][]result{}
	for round := range *rounds {
		for _, name := range paths {
			r, err := measurePath(s, name)
			if err != nil {
				backend.stop()
				fatal(fmt.Errorf("round %d: %s: %w", round, name, err))
			}
			results[name] = append(results[name], r)
			logResult(round, name, r)
		}
	}
	report(paths, results, load0, loadavg())
	if *syscalls {
		countSyscalls(s, paths)
	}
	if *profileDir != "" {
		profile(s)
	}
}

// measurePath starts the path's processes and runs every load on them.
func measurePath(s *starter, name string) (result, error) {
	p, err := s.start(name)
	if err != nil {
		return result{}, err
	}
	defer p.stop()
	r := result{tp: map[string]throughput{}}
	pids := p.pids()
	if has(*loadList, "idle") && name != "direct" {
		if r.idle, err = holdIdle(p, *idleConns); err != nil {
			return r, err
		}
		time.Sleep(time.Second) // the proxies see the closes
	}
	for _, l := range []string{"keep-alive", "close", "h2c"} {
		if !has(*loadList, l) {
			continue
		}
		var t throughput
		switch l {
		case "keep-alive":
			t, err = withCPU(pids, func() (throughput, error) { return runWrk(p.addr, false) })
		case "close":
			t, err = withCPU(pids, func() (throughput, error) { return runWrk(p.addr, true) })
		case "h2c":
			t, err = withCPU(pids, func() (throughput, error) { return runH2load(p.addr) })
		}
		if err != nil {
			return r, fmt.Errorf("%s: %w", l, err)
		}
		r.tp[l] = t
		time.Sleep(time.Second)
	}
	if has(*loadList, "rate") {
		if r.lat, err = fixedRate(p.addr, *rate, *rateDuration); err != nil {
			return r, err
		}
	}
	return r, p.alive()
}

func logResult(round int, name string, r result) {
	var b strings.Builder
	fmt.Fprintf(&b, "round %d %-18s", round, name)
	for _, l := range []string{"keep-alive", "close", "h2c"} {
		if t, ok := r.tp[l]; ok {
			fmt.Fprintf(&b, " %s %.0f req/s %.0f µs/req %s", l, t.rps, t.cpuPerReq, t.notes)
		}
	}
	if r.lat.sent > 0 {
		fmt.Fprintf(&b, " rate p50/p99/p99.9 %v/%v/%v (%d errors, %.0f/s)", r.lat.p50, r.lat.p99, r.lat.p999, r.lat.errs, r.lat.achieved)
	}
	if r.idle.kibPerConn != 0 {
		fmt.Fprintf(&b, " idle %.1f KiB (settled %.1f, by process %.1f, marginal %.1f, by process %.1f) %.2f fds per conn (settled %.2f)", r.idle.kibPerConn, r.idle.kibSettled, r.idle.perProc, r.idle.kibMarginal, r.idle.perProcMarginal, r.idle.fdsPerConn, r.idle.fdsSettled)
	}
	fmt.Fprintln(os.Stderr, b.String())
}

// raiseNoFile lifts the descriptor limit to the hard limit (the idle load
// holds thousands of connections; the processes started inherit it).
func raiseNoFile() {
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) == nil {
		lim.Cur = lim.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
}

// profile records each sidecar process of sidecar-http (and sidecar-opaque
// when it was compared) with perf during one more run of -profile-load, and
// writes perf report's flat profile of each, the top of it printed.
func profile(s *starter) {
	if _, err := exec.LookPath("perf"); err != nil {
		fmt.Fprintln(os.Stderr, "mesh: -profile needs perf (Debian: linux-perf)")
		return
	}
	if err := os.MkdirAll(*profileDir, 0o755); err != nil {
		fatal(err)
	}
	for _, name := range strings.Split(*pathList, ",") {
		if !strings.HasPrefix(name, "sidecar-") {
			continue
		}
		p, err := s.start(name)
		if err != nil {
			fatal(err)
		}
		var recs []*exec.Cmd
		var outs []string
		for i, pid := range p.pids() {
			side := []string{"B", "A"}[i] // started B first
			out := filepath.Join(*profileDir, fmt.Sprintf("%s-%s.perf.data", name, side))
			rec := exec.Command("perf", "record", "-q", "-F", "1999", "-g", "-p", fmt.Sprint(pid), "-o", out,
				"--", "sleep", fmt.Sprint(int(duration.Seconds())+1))
			rec.Stderr = os.Stderr
			if err := rec.Start(); err != nil {
				fatal(err)
			}
			recs, outs = append(recs, rec), append(outs, out)
		}
		time.Sleep(300 * time.Millisecond)
		var t throughput
		switch *profileLoad {
		case "close":
			t, err = runWrk(p.addr, true)
		case "h2c":
			t, err = runH2load(p.addr)
		default:
			t, err = runWrk(p.addr, false)
		}
		for _, rec := range recs {
			rec.Wait()
		}
		p.stop()
		if err != nil {
			fatal(err)
		}
		fmt.Printf("### profile: %s, %s, %.0f req/s under perf (sidecar A: client side; B: server side)\n\n", name, *profileLoad, t.rps)
		for _, out := range outs {
			rep, err := exec.Command("perf", "report", "-i", out, "--stdio", "--no-children", "-g", "none",
				"--percent-limit", "0.7", "--sort", "dso,symbol").Output()
			if err != nil {
				fmt.Fprintf(os.Stderr, "mesh: perf report %s: %v\n", out, err)
				continue
			}
			txt := strings.TrimSuffix(out, ".perf.data") + ".txt"
			os.WriteFile(txt, rep, 0o644)
			fmt.Printf("%s (top of %s):\n\n", filepath.Base(out), txt)
			n := 0
			for _, l := range strings.Split(string(rep), "\n") {
				if l == "" || strings.HasPrefix(l, "#") {
					continue
				}
				fmt.Println("    " + strings.Join(strings.Fields(strings.TrimSuffix(strings.TrimRight(l, " "), "-      -")), " "))
				if n++; n == 25 {
					break
				}
			}
			fmt.Println()
		}
	}
}
