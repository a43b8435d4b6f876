//go:build linux

// Command overload plays hostile load against the real binaries of the examples and prints what a
// client that speaks sees meanwhile, as Markdown tables (issue 15's harness; bench/overload.sh
// builds and runs it):
//
//	silent N    N connections that connect and send nothing, held while a real client is measured;
//	            RSS, live heap (go_gc_heap_live_bytes, as of the last collection, when one ran after
//	            the connections were detached) and goroutines per waiting connection; the RSS 60 s
//	            after they close
//	slowloris   connections that send one byte of an HTTP request every few seconds
//	burst       connections opened as fast as possible, each sending a request and closing
//	abandon N   (sidecar) N clients each send a request the application answers only after a
//	            minute, and close their connections once all N are at the application: how long
//	            until the application's requests have ended (their contexts cancelled), and the
//	            sidecars' descriptors before, with them in flight, and after
//	greeting N  (sidecar) N silent clients at once of a port whose server speaks first: how many
//	            get the greeting within the hold, how soon, and the peer's handshakes
//	fd          the target under a low RLIMIT_NOFILE, filled with idle connections past its limit:
//	            it must keep running, and serve again within 1 s once they close
//
// The real client is an HTTP/1.1 GET on a new connection every -probe-every; its latency is the time
// from connect to the response's first byte. Each row gives its p50/p99 without the attack (the
// row's own baseline, taken just before) and during it.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

var (
	multiplexBin = flag.String("multiplex", "", "path of the examples/multiplex binary")
	sidecarBin   = flag.String("sidecar", "", "path of the examples/sidecar binary (sidecar targets)")
	targets      = flag.String("targets", "multiplex", "comma-separated targets: multiplex, sidecar")
	scenarios    = flag.String("scenarios", "silent:5000,silent:10000,slowloris:2000,burst:2000,fd:256", "comma-separated scenario:size list")
	hold         = flag.Duration("hold", 8*time.Second, "how long each attack is held while the real client is measured")
	probeEvery   = flag.Duration("probe-every", 20*time.Millisecond, "interval of the real client's requests")
	after        = flag.Duration("after", 60*time.Second, "wait after a silent flood ends before the RSS is read again (0: skip)")
	detectTO     = flag.Duration("detect-timeout", 30*time.Second, "the target's detection timeout (longer than -hold: no silent connection times out while measured)")
)

func main() {
	flag.Parse()
	raiseNoFile()
	fmt.Printf("overload: %s, GOMAXPROCS of the targets: default; hold %v, probe every %v\n\n", time.Now().UTC().Format(time.RFC3339), *hold, *probeEvery)
	fmt.Println("| target | attack | real client p50 / p99 before | during | errors during | closed by the target early | shed | handshakes to the peer | RSS per waiting conn | goroutines per waiting conn | RSS idle → during → after |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|")
	for _, tname := range strings.Split(*targets, ",") {
		for _, sc := range strings.Split(*scenarios, ",") {
			name, sizeS, _ := strings.Cut(sc, ":")
			size, err := strconv.Atoi(sizeS)
			if err != nil {
				fatalf("scenario %q: size: %v", sc, err)
			}
			row, err := runScenario(tname, name, size)
			if err != nil {
				fmt.Printf("| %s | %s %d | error: %v |||||||\n", tname, name, size, err)
				continue
			}
			fmt.Println(row)
		}
	}
}

// target is a running example binary.
type target struct {
	cmd     *exec.Cmd
	addr    string // where the attacks and the real client connect
	metrics string // URL of its /metrics
	done    chan error
	exited  atomic.Bool
	logs    *tail
	peer    *target // the sidecar target's inbound sidecar (B)
	// greet is the sidecar target's forward listener for a server that speaks first (greeter);
	// forwards maps each forward listener's destination to its address.
	greet    string
	forwards map[string]string
}

func (t *target) pid() int { return t.cmd.Process.Pid }

func (t *target) stop() {
	if t.peer != nil {
		defer t.peer.stop()
	}
	if t.exited.Load() {
		return
	}
	t.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-t.done:
	case <-time.After(10 * time.Second):
		t.cmd.Process.Kill()
		<-t.done
	}
}

// tail keeps the last lines a process wrote.
type tail struct {
	mu    sync.Mutex
	lines []string
}

func (t *tail) add(s string) {
	t.mu.Lock()
	t.lines = append(t.lines, s)
	if len(t.lines) > 50 {
		t.lines = t.lines[1:]
	}
	t.mu.Unlock()
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Join(t.lines, "\n")
}

var listenRE = regexp.MustCompile(`listening on (\S+)`)

// startMultiplex starts examples/multiplex on a free port (under prlimit when nofile > 0).
func startMultiplex(nofile int) (*target, error) {
	args := []string{*multiplexBin, "-addr", "127.0.0.1:0", "-quiet", "-detect-timeout", detectTO.String()}
	if nofile > 0 {
		args = append([]string{"prlimit", fmt.Sprintf("--nofile=%d:%d", nofile, nofile), "--"}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = cmd.Stdout
	t := &target{cmd: cmd, done: make(chan error, 1), logs: &tail{}}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	addrc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			t.logs.add(line)
			if m := listenRE.FindStringSubmatch(line); m != nil {
				select {
				case addrc <- m[1]:
				default:
				}
			}
		}
	}()
	go func() { err := cmd.Wait(); t.exited.Store(true); t.done <- err }()
	select {
	case t.addr = <-addrc:
	case err := <-t.done:
		return nil, fmt.Errorf("multiplex exited: %v\n%s", err, t.logs)
	case <-time.After(30 * time.Second):
		t.stop()
		return nil, errors.New("multiplex did not start")
	}
	t.metrics = "http://" + t.addr + "/metrics"
	return t, nil
}

func startTarget(name string, nofile int) (*target, error) {
	switch name {
	case "multiplex":
		return startMultiplex(nofile)
	case "sidecar":
		return startSidecarPair(nofile)
	}
	return nil, fmt.Errorf("unknown target %q", name)
}

func runScenario(tname, name string, size int) (string, error) {
	nofile := 0
	if name == "fd" {
		nofile = size
	}
	t, err := startTarget(tname, nofile)
	if err != nil {
		return "", err
	}
	defer t.stop()
	time.Sleep(300 * time.Millisecond)
	switch name {
	case "silent":
		return silent(t, tname, size)
	case "silentfresh":
		return silentFresh(t, tname, size)
	case "slowloris":
		return slowloris(t, tname, size)
	case "burst":
		return burst(t, tname, size)
	case "fd":
		return fdExhaustion(t, tname, size)
	case "abandon":
		return abandon(t, tname, size)
	case "greeting":
		return greetingFlood(t, tname, size)
	}
	return "", fmt.Errorf("unknown scenario %q", name)
}

// probe is the real client: a GET on a new connection every -probe-every until stop is closed.
type probe struct {
	done chan struct{} // closed when the probe's goroutine has ended
	mu   sync.Mutex
	lat  []time.Duration
	errs int
	last time.Time // when the last success ended
}

func runProbe(addr string, stop <-chan struct{}) *probe {
	p := &probe{done: make(chan struct{})}
	go func() {
		defer close(p.done)
		tick := time.NewTicker(*probeEvery)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			d, err := getOnce(addr, 5*time.Second)
			p.mu.Lock()
			if err != nil {
				p.errs++
			} else {
				p.lat = append(p.lat, d)
				p.last = time.Now()
			}
			p.mu.Unlock()
		}
	}()
	return p
}

// measure runs the real client for d and returns what it saw; a request still in flight at the
// end is waited for (at most its 5 s timeout) and counted.
func measure(addr string, d time.Duration) (lat []time.Duration, errs int) {
	stop := make(chan struct{})
	p := runProbe(addr, stop)
	time.Sleep(d)
	close(stop)
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.lat), p.errs
}

// getOnce connects, sends a GET and returns the time to the response's first byte.
func getOnce(addr string, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(start.Add(timeout))
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: overload\r\nConnection: close\r\n\r\n"); err != nil {
		return 0, err
	}
	var b [1]byte
	if _, err := c.Read(b[:]); err != nil {
		return 0, err
	}
	d := time.Since(start)
	io.Copy(io.Discard, c)
	return d, nil
}

func pct(lat []time.Duration, p float64) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	s := slices.Clone(lat)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p)
	return s[i]
}

func fmtLat(lat []time.Duration) string {
	if len(lat) == 0 {
		return "none"
	}
	return fmt.Sprintf("%s / %s", round(pct(lat, 0.5)), round(pct(lat, 0.99)))
}

func round(d time.Duration) string {
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond).String()
	case d >= time.Millisecond:
		return d.Round(100 * time.Microsecond).String()
	}
	return d.Round(time.Microsecond).String()
}

// rss returns a process's resident set in bytes.
func rss(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// scrape returns the values of the named families' samples in the target's /metrics (summed over
// labels matching the filter, when given).
func scrape(url string, name, labelFilter string) float64 {
	resp, err := http.Get(url)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		if rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		if labelFilter != "" && !strings.Contains(rest, labelFilter) {
			continue
		}
		f := strings.Fields(rest[strings.LastIndex(rest, "}")+1:])
		if len(f) == 0 {
			continue
		}
		v, _ := strconv.ParseFloat(f[0], 64)
		sum += v
	}
	return sum
}

func mib(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

// flood holds n connections to addr that send nothing (or what each says), counting those the
// target closes.
type flood struct {
	conns  []net.Conn
	closed atomic.Int64
	wg     sync.WaitGroup
}

func openFlood(addr string, n int) (*flood, error) {
	f := &flood{}
	for i := range n {
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			f.close()
			return nil, fmt.Errorf("connection %d: %w", i, err)
		}
		f.conns = append(f.conns, c)
	}
	return f, nil
}

// watch reads each connection in the background and counts the ones that end (EOF or reset)
// before close; a read of bytes (an echo) does not count.
func (f *flood) watch() {
	for _, c := range f.conns {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			var b [512]byte
			for {
				if _, err := c.Read(b[:]); err != nil {
					if !errors.Is(err, net.ErrClosed) {
						f.closed.Add(1)
					}
					return
				}
			}
		}()
	}
}

func (f *flood) close() {
	for _, c := range f.conns {
		c.Close()
	}
	f.wg.Wait()
}

// shedCount is what the target shed to make room: a multiplexer's shed connections, and the
// connections a sidecar's first-bytes Waiters shed.
func shedCount(t *target) float64 {
	mux := scrape(t.metrics, "mux_connections_total", `outcome="shed"`)
	waiter := scrape(t.metrics, "waiter_connections_total", `outcome="shed",waiter="first_bytes"`)
	if mux < 0 || waiter < 0 {
		return -1
	}
	return mux + waiter
}

func silent(t *target, tname string, n int) (string, error) {
	base, _ := measure(t.addr, 2*time.Second)
	rss0, g0 := rss(t.pid()), scrape(t.metrics, "go_goroutines", "")
	live0 := scrape(t.metrics, "go_gc_heap_live_bytes", "")
	hs0 := peerHandshakes(t)
	f, err := openFlood(t.addr, n)
	if err != nil {
		return "", err
	}
	f.watch()
	time.Sleep(500 * time.Millisecond) // every connection accepted and waiting
	// Collections after this one saw the connections detached (1 s after they came, with the
	// default DetachAfter): the live heap they measured is what a waiting connection keeps.
	time.Sleep(time.Second)
	gcs0 := scrape(t.metrics, "go_gc_duration_seconds_count", "")
	during, errs := measure(t.addr, *hold)
	rss1, g1 := rss(t.pid()), scrape(t.metrics, "go_goroutines", "")
	live1, gcs1 := scrape(t.metrics, "go_gc_heap_live_bytes", ""), scrape(t.metrics, "go_gc_duration_seconds_count", "")
	shed := shedCount(t)
	hs := "—"
	if hs0 >= 0 {
		// The real client's own requests go through pooled connections: what is left is the flood's.
		hs = fmt.Sprintf("%.0f", peerHandshakes(t)-hs0)
	}
	closedEarly := f.closed.Load()
	f.close()
	afterS := "not measured"
	if *after > 0 {
		time.Sleep(*after)
		afterS = mib(rss(t.pid()))
	}
	if t.exited.Load() {
		return "", fmt.Errorf("the target exited\n%s", t.logs)
	}
	var live string
	switch {
	case gcs1 <= gcs0 || live1 <= 0:
		live = "no collection since the connections were detached"
	case live0 <= 0: // a fresh target has not collected yet: the base is not known
		live = fmt.Sprintf("at most %.2f KiB (the process's own included)", live1/1024/float64(n))
	default:
		live = fmt.Sprintf("%.2f KiB", (live1-live0)/1024/float64(n))
	}
	return fmt.Sprintf("| %s | silent %d | %s | %s | %d | %d | %.0f | %s | %.2f KiB (live heap: %s) | %.3f | %s → %s → %s |",
		tname, n, fmtLat(base), fmtLat(during), errs, closedEarly, shed, hs,
		float64(rss1-rss0)/1024/float64(n), live, (g1-g0)/float64(n), mib(rss0), mib(rss1), afterS), nil
}

// silentFresh floods a target that has served nothing yet on the port (no Learner history: the
// port is not known to be client-first, so its silent clients are raced after their grace) and
// counts the handshakes its peer served within the first second and over the hold.
func silentFresh(t *target, tname string, n int) (string, error) {
	hs0 := peerHandshakes(t)
	f, err := openFlood(t.addr, n)
	if err != nil {
		return "", err
	}
	f.watch()
	time.Sleep(time.Second)
	hs1 := peerHandshakes(t) - hs0
	during, errs := measure(t.addr, *hold)
	hs2 := peerHandshakes(t) - hs0
	closedEarly := f.closed.Load()
	f.close()
	if t.exited.Load() {
		return "", fmt.Errorf("the target exited\n%s", t.logs)
	}
	return fmt.Sprintf("| %s | silent %d on a port it has not served yet | — | %s | %d | %d | — | %.0f after 1 s, %.0f after %v | — | — | — |",
		tname, n, fmtLat(during), errs, closedEarly, hs1, hs2, *hold+time.Second), nil
}

// greetingFlood opens n silent clients at once to a port whose server speaks first (the sidecar
// target's greeter; a port no policy declares, with no history): each is raced against its
// server after its grace, at most MaxRaces at once, and gets the greeting once its race has
// decided. It reports how many got it within the hold, how soon, and the peer's handshakes.
func greetingFlood(t *target, tname string, n int) (string, error) {
	if t.greet == "" {
		return fmt.Sprintf("| %s | greeting %d: no server-first port on this target | — | — | — | — | — | — | — | — | — |", tname, n), nil
	}
	hs0 := peerHandshakes(t)
	f, err := openFlood(t.greet, n)
	if err != nil {
		return "", err
	}
	start := time.Now()
	var (
		mu    sync.Mutex
		times []time.Duration
		wrong atomic.Int64
		wg    sync.WaitGroup
	)
	for _, c := range f.conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.SetReadDeadline(start.Add(*hold))
			line, err := bufio.NewReader(c).ReadString('\n')
			if err != nil {
				return
			}
			if line != greeting {
				wrong.Add(1)
				return
			}
			mu.Lock()
			times = append(times, time.Since(start))
			mu.Unlock()
		}()
	}
	during, errs := measure(t.addr, *hold)
	wg.Wait()
	hs := peerHandshakes(t) - hs0
	f.close()
	if t.exited.Load() {
		return "", fmt.Errorf("the target exited\n%s", t.logs)
	}
	slices.Sort(times)
	when := "—"
	if len(times) > 0 {
		when = fmt.Sprintf("median %v, last %v", times[len(times)/2].Round(time.Millisecond), times[len(times)-1].Round(time.Millisecond))
	}
	return fmt.Sprintf("| %s | greeting %d: silent clients of a server that speaks first; %d greeted within %v (%s), %d wrong | — | %s | %d | — | — | %.0f | — | — | — |",
		tname, n, len(times), *hold, when, wrong.Load(), fmtLat(during), errs, hs), nil
}

func slowloris(t *target, tname string, n int) (string, error) {
	base, _ := measure(t.addr, 2*time.Second)
	rss0 := rss(t.pid())
	f, err := openFlood(t.addr, n)
	if err != nil {
		return "", err
	}
	f.watch()
	stop := make(chan struct{})
	req := "GET /slow HTTP/1.1\r\nHost: overload\r\nX-Slow: " + strings.Repeat("a", 4096)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // one byte per connection every 3 s, spread over the 3 s
		defer wg.Done()
		for i := 0; ; i++ {
			for k, c := range f.conns {
				select {
				case <-stop:
					return
				default:
				}
				c.SetWriteDeadline(time.Now().Add(time.Second))
				c.Write([]byte{req[i%len(req)]})
				if k%100 == 99 {
					time.Sleep(3 * time.Second / time.Duration(len(f.conns)/100+1))
				}
			}
		}
	}()
	time.Sleep(500 * time.Millisecond)
	during, errs := measure(t.addr, *hold)
	rss1 := rss(t.pid())
	shed := shedCount(t)
	close(stop)
	wg.Wait()
	closedEarly := f.closed.Load()
	f.close()
	if t.exited.Load() {
		return "", fmt.Errorf("the target exited\n%s", t.logs)
	}
	return fmt.Sprintf("| %s | slowloris %d (1 byte / 3 s) | %s | %s | %d | %d | %.0f | — | — | — | %s → %s |",
		tname, n, fmtLat(base), fmtLat(during), errs, closedEarly, shed, mib(rss0), mib(rss1)), nil
}

func burst(t *target, tname string, n int) (string, error) {
	base, _ := measure(t.addr, 2*time.Second)
	rss0 := rss(t.pid())
	stop := make(chan struct{})
	p := runProbe(t.addr, stop)
	var ok, failed atomic.Int64
	var wg sync.WaitGroup
	sem := make(chan struct{}, 512)
	start := time.Now()
	for range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if _, err := getOnce(t.addr, 10*time.Second); err != nil {
				failed.Add(1)
			} else {
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	close(stop)
	<-p.done
	p.mu.Lock()
	during, errs := slices.Clone(p.lat), p.errs
	p.mu.Unlock()
	rss1 := rss(t.pid())
	if t.exited.Load() {
		return "", fmt.Errorf("the target exited\n%s", t.logs)
	}
	return fmt.Sprintf("| %s | burst of %d requests, 512 at a time (%d ok, %d failed, %v) | %s | %s | %d | — | — | — | — | — | %s → %s |",
		tname, n, ok.Load(), failed.Load(), took.Round(time.Millisecond), fmtLat(base), fmtLat(during), errs, mib(rss0), mib(rss1)), nil
}

// abandon sends n requests the application holds for a minute, each on a connection of its own,
// and closes the connections once every request is at the application: a proxy that lets go of
// a request whose client has gone ends the application's requests soon after; one that does not
// holds them (and a connection to the peer and to the application each) until they are answered.
func abandon(t *target, tname string, n int) (string, error) {
	if t.peer == nil {
		return fmt.Sprintf("| %s | abandon %d | — (the target has no application behind it) |||||||||", tname, n), nil
	}
	base, _ := measure(t.addr, 2*time.Second)
	fdA0, fdB0 := fds(t.pid()), fds(t.peer.pid())
	// The backend is shared by the targets of one run: requests an earlier target let run on
	// are not this one's.
	before := slowInFlight.Load()
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range n {
		c, err := net.DialTimeout("tcp", t.addr, 5*time.Second)
		if err != nil {
			return "", err
		}
		conns = append(conns, c)
		if _, err := io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: overload\r\n\r\n"); err != nil {
			return "", err
		}
	}
	for start := time.Now(); slowInFlight.Load()-before < int64(n); time.Sleep(10 * time.Millisecond) {
		if time.Since(start) > 20*time.Second {
			return "", fmt.Errorf("%d of %d requests reached the application in 20 s", slowInFlight.Load()-before, n)
		}
	}
	during, errs := measure(t.addr, 2*time.Second)
	fdA1, fdB1 := fds(t.pid()), fds(t.peer.pid())
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	left := time.Now()
	ended := "all ended" // at the application
	for slowInFlight.Load() > before {
		if time.Since(left) > 15*time.Second {
			ended = fmt.Sprintf("%d of %d still running", slowInFlight.Load()-before, n)
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	ended += " " + round(time.Since(left)) + " after their clients left"
	time.Sleep(time.Second)
	fdA2, fdB2 := fds(t.pid()), fds(t.peer.pid())
	if t.exited.Load() {
		return "", fmt.Errorf("the target exited\n%s", t.logs)
	}
	return fmt.Sprintf("| %s | abandon %d requests to a slow application: %s; descriptors A / B %d / %d → %d / %d in flight → %d / %d 1 s after | %s | %s | %d | — | — | — | — | — | — |",
		tname, n, ended, fdA0, fdB0, fdA1, fdB1, fdA2, fdB2, fmtLat(base), fmtLat(during), errs), nil
}

// fds counts a process's open descriptors (-1 when they cannot be read).
func fds(pid int) int {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return -1
	}
	return len(ents)
}

// fdExhaustion fills a target started with RLIMIT_NOFILE = limit with more idle connections than
// it has descriptors, checks that it keeps running, then closes them and measures how long until
// the real client is served again.
func fdExhaustion(t *target, tname string, limit int) (string, error) {
	base, _ := measure(t.addr, 2*time.Second)
	// Keep-alive clients with a request answered, idle long enough to wait detached (the sidecar:
	// parked after 1 s, its descriptor alone after 1 s more), speak again once the limit is hit.
	var parked []*keepAlive
	defer func() {
		for _, k := range parked {
			k.c.Close()
		}
	}()
	for range parkedAtLimit {
		k, err := dialKeepAlive(t.addr)
		if err != nil {
			return "", fmt.Errorf("a keep-alive client: %w", err)
		}
		parked = append(parked, k)
	}
	time.Sleep(2500 * time.Millisecond)
	n := limit + limit/4
	f, err := openFlood(t.addr, n) // connects succeed: the kernel's backlog takes what accept cannot
	if err != nil {
		return "", err
	}
	time.Sleep(2 * time.Second)
	var answered, failed, ended, hung int
	for _, k := range parked {
		switch err := k.get(5 * time.Second); {
		case err == nil:
			answered++
		case errors.Is(err, errNotOK):
			failed++
		case errors.Is(err, os.ErrDeadlineExceeded):
			hung++
		default:
			ended++
		}
	}
	okFull, errsFull := measure(t.addr, 2*time.Second)
	alive := !t.exited.Load()
	f.close()
	freed := time.Now()
	var back time.Duration = -1
	for time.Since(freed) < 10*time.Second {
		if _, err := getOnce(t.addr, time.Second); err == nil {
			back = time.Since(freed)
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	after, errs := measure(t.addr, 2*time.Second)
	if !alive || t.exited.Load() {
		return "", fmt.Errorf("the target exited under RLIMIT_NOFILE %d\n%s", limit, t.logs)
	}
	backS := "never (10 s)"
	if back >= 0 {
		backS = round(back)
	}
	return fmt.Sprintf("| %s | RLIMIT_NOFILE %d, %d idle connections | %s | full: %d served, %d failed (5 s timeout); %d keep-alive clients idle 2.5 s then speaking: %d answered, %d answered with an error, %d ended, %d without an answer in 5 s; freed: served again after %s, then %s (%d errors) | — | — | — | — | — | — | alive |",
		tname, limit, n, fmtLat(base), len(okFull), errsFull, len(parked), answered, failed, ended, hung, backS, fmtLat(after), errs), nil
}

// parkedAtLimit is the number of idle keep-alive clients that speak again when the descriptor
// limit is hit.
const parkedAtLimit = 16

// keepAlive is a keep-alive client connection.
type keepAlive struct {
	c  net.Conn
	br *bufio.Reader
}

// dialKeepAlive connects and has one request answered.
func dialKeepAlive(addr string) (*keepAlive, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	k := &keepAlive{c: c, br: bufio.NewReader(c)}
	if err := k.get(5 * time.Second); err != nil {
		c.Close()
		return nil, err
	}
	return k, nil
}

// errNotOK: an answer came, and it was not 200 OK.
var errNotOK = errors.New("an answer other than 200")

// get sends a GET and reads its answer whole; an answer other than 200 is errNotOK.
func (k *keepAlive) get(timeout time.Duration) error {
	k.c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(k.c, "GET / HTTP/1.1\r\nHost: overload\r\n\r\n"); err != nil {
		return err
	}
	resp, err := http.ReadResponse(k.br, nil)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%w: %s", errNotOK, resp.Status)
	}
	return err
}

func raiseNoFile() {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) == nil {
		l.Cur = l.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "overload: "+format+"\n", args...)
	os.Exit(1)
}

// startSidecarPair is set by sidecar.go.
var startSidecarPair func(nofile int) (*target, error)
