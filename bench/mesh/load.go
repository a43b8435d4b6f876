//go:build linux

package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The loads: wrk (keep-alive and Connection: close), h2load (h2c), a
// fixed-rate open-loop client, and idle keep-alive connections held open.

// throughput is one closed-loop run: requests per second, requests
// completed, and the proxies' CPU per request.
type throughput struct {
	rps, requests float64
	cpuPerReq     float64 // µs, all the path's proxy processes together; 0 for direct
	// userPerReq and sysPerReq split cpuPerReq into user and kernel time;
	// boxPerReq and boxBusyPerReq are the whole machine's CPU time per
	// request, all of it and its busy part (µs).
	userPerReq, sysPerReq    float64
	boxPerReq, boxBusyPerReq float64
	notes                    string
}

var (
	wrkRPSRe  = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	wrkReqsRe = regexp.MustCompile(`(\d+) requests in `)
	h2RPSRe   = regexp.MustCompile(`finished in [0-9.]+m?s, ([0-9.]+) req/s`)
	h2ReqsRe  = regexp.MustCompile(`requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored`)
)

// withCPU runs load and divides the CPU the processes pids spent meanwhile
// by the requests it completed.
func withCPU(pids []int, load func() (throughput, error)) (throughput, error) {
	u0, s0 := cpuSeconds(pids)
	busy0, box0 := boxSeconds()
	t, err := load()
	if err != nil {
		return t, err
	}
	busy1, box1 := boxSeconds()
	if t.requests > 0 {
		t.boxPerReq, t.boxBusyPerReq = (box1-box0)*1e6/t.requests, (busy1-busy0)*1e6/t.requests
	}
	if len(pids) > 0 && t.requests > 0 {
		time.Sleep(200 * time.Millisecond) // the last closes
		u1, s1 := cpuSeconds(pids)
		t.userPerReq, t.sysPerReq = (u1-u0)*1e6/t.requests, (s1-s0)*1e6/t.requests
		t.cpuPerReq = t.userPerReq + t.sysPerReq
	}
	return t, nil
}

// runWrk runs wrk against addr: keep-alive, or a new connection per
// request (Connection: close).
func runWrk(addr string, closeConn bool) (throughput, error) {
	args := []string{"-t2", fmt.Sprintf("-c%d", *conns), fmt.Sprintf("-d%ds", int(duration.Seconds())), "http://" + addr + "/"}
	if closeConn {
		args = append([]string{"-H", "Connection: close"}, args...)
	}
	out, err := exec.Command("wrk", args...).CombinedOutput()
	if err != nil {
		return throughput{}, fmt.Errorf("wrk: %w: %s", err, out)
	}
	mr, mn := wrkRPSRe.FindSubmatch(out), wrkReqsRe.FindSubmatch(out)
	if mr == nil || mn == nil {
		return throughput{}, fmt.Errorf("wrk printed no Requests/sec or request count: %s", out)
	}
	var t throughput
	t.rps, _ = strconv.ParseFloat(string(mr[1]), 64)
	t.requests, _ = strconv.ParseFloat(string(mn[1]), 64)
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "Socket errors") || strings.Contains(l, "Non-2xx") {
			t.notes += strings.TrimSpace(l) + "; "
		}
	}
	return t, nil
}

// runH2load runs h2load against addr with HTTP/2 prior knowledge (h2c):
// -h2-conns connections, -h2-streams concurrent streams on each.
func runH2load(addr string) (throughput, error) {
	args := []string{"-t2", fmt.Sprintf("-c%d", *h2Conns), fmt.Sprintf("-m%d", *h2Streams),
		fmt.Sprintf("-D%d", int(duration.Seconds())), "--warm-up-time=1", "http://" + addr + "/"}
	out, err := exec.Command("h2load", args...).CombinedOutput()
	if err != nil {
		return throughput{}, fmt.Errorf("h2load: %w: %s", err, out)
	}
	mr, mn := h2RPSRe.FindSubmatch(out), h2ReqsRe.FindSubmatch(out)
	if mr == nil || mn == nil {
		return throughput{}, fmt.Errorf("h2load printed no req/s or request count: %s", out)
	}
	var t throughput
	t.rps, _ = strconv.ParseFloat(string(mr[1]), 64)
	t.requests, _ = strconv.ParseFloat(string(mn[1]), 64)
	if string(mn[2]) != "0" || string(mn[3]) != "0" {
		t.notes = fmt.Sprintf("%s failed, %s errored; ", mn[2], mn[3])
	}
	return t, nil
}

// latencies is one fixed-rate run.
type latencies struct {
	p50, p99, p999 time.Duration
	sent, errs     int
	achieved       float64 // responses per second
}

// fixedRate sends rate requests per second for d to addr, open loop: the
// n-th request is due at start + n/rate whether or not earlier ones have
// been answered, and is handed to the first free one of -rate-conns
// keep-alive connections. A request's latency runs from when it was
// dispatched to the end of its response, so a request that waits for a free
// connection counts its wait.
func fixedRate(addr string, rate int, d time.Duration) (latencies, error) {
	n := int(float64(rate) * d.Seconds())
	jobs := make(chan time.Time, n)
	var (
		mu   sync.Mutex
		lat  = make([]time.Duration, 0, n)
		errs int
		wg   sync.WaitGroup
		last time.Time
	)
	cs := make([]*rateConn, *rateConns)
	for i := range cs {
		c, err := dialRate(addr)
		if err != nil {
			for _, c := range cs[:i] {
				c.Close()
			}
			return latencies{}, err
		}
		cs[i] = c
	}
	for _, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			for t := range jobs {
				err := c.get()
				end := time.Now()
				mu.Lock()
				if err != nil {
					errs++
				} else {
					lat = append(lat, end.Sub(t))
				}
				last = end
				mu.Unlock()
				if err != nil { // a broken connection: replace it
					c.Close()
					if nc, err := dialRate(addr); err == nil {
						c = nc
					}
				}
			}
		}()
	}
	start := time.Now()
	interval := time.Duration(float64(time.Second) / float64(rate))
	for i := range n {
		if w := time.Until(start.Add(time.Duration(i) * interval)); w > 0 {
			time.Sleep(w)
		}
		jobs <- time.Now()
	}
	close(jobs)
	wg.Wait()
	if len(lat) == 0 {
		return latencies{}, fmt.Errorf("fixed rate: no request succeeded (%d errors)", errs)
	}
	slices.Sort(lat)
	q := func(f float64) time.Duration { return lat[min(len(lat)-1, int(f*float64(len(lat))))] }
	return latencies{
		p50: q(0.50), p99: q(0.99), p999: q(0.999),
		sent: n, errs: errs,
		achieved: float64(len(lat)) / last.Sub(start).Seconds(),
	}, nil
}

// rateConn is one keep-alive HTTP/1.1 connection of the fixed-rate client.
type rateConn struct {
	net.Conn
	br *bufio.Reader
}

var rateRequest = []byte("GET / HTTP/1.1\r\nHost: mesh.bench\r\nUser-Agent: meshbench\r\n\r\n")

func dialRate(addr string) (*rateConn, error) { return dialGet(addr, rateRequest) }

// dialGet connects to addr and makes request once.
func dialGet(addr string, request []byte) (*rateConn, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	rc := &rateConn{Conn: c, br: bufio.NewReader(c)}
	if err := rc.do(request); err != nil { // the path's connections are set up before the clock starts
		c.Close()
		return nil, err
	}
	return rc, nil
}

func (c *rateConn) get() error { return c.do(rateRequest) }

func (c *rateConn) do(request []byte) error {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(request); err != nil {
		return err
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err == nil && resp.StatusCode != 200 {
		err = fmt.Errorf("status %d", resp.StatusCode)
	}
	return err
}

// idle is what the path's proxies hold per idle keep-alive connection.
type idle struct {
	kibPerConn, fdsPerConn float64
	// kibSettled is the RSS growth per connection -idle-settle later: the
	// memory the proxies keep for idle connections, once what they freed
	// after setting them up has gone back (a Go process returns freed
	// memory in the background; the sidecar's memreturn every 5 s).
	kibSettled float64
	// fdsSettled is the descriptor growth per connection -idle-settle
	// later: the upstream connections a burst opened that are still held.
	fdsSettled float64
	// perProc is kibSettled for each of the path's processes, in the order
	// the path starts them (the sidecars: B, the server side, then A).
	perProc []float64
	// kibMarginal is what n more connections, opened 2 x -idle-settle
	// after the settled reading and settled in turn, added per connection:
	// the cost of one more idle connection, without what the first
	// connections through a fresh process pay once (a Go runtime's first
	// collections set up its collector's metadata, about 1.7 MB per
	// sidecar). The wait lets the first opening's upstream connections
	// close and their memory go back (pools halve every 5 s), so that it
	// does not count against the second.
	kibMarginal float64
	// perProcMarginal is kibMarginal for each process, in perProc's order.
	perProcMarginal []float64
}

// holdIdle opens n keep-alive connections through the path (64 at a time),
// makes one request on each, and with all n open and idle reads how much
// the proxies' RSS and descriptors grew per connection; then it opens n
// more and reads what they added.
func holdIdle(p *path, n int) (idle, error) {
	pids := p.pids()
	time.Sleep(500 * time.Millisecond)
	rss0, fd0 := rssKiB(pids), fds(pids)
	each0 := rssEach(pids)
	cs := make([]*rateConn, 2*n)
	defer func() {
		for _, c := range cs {
			if c != nil {
				c.Close()
			}
		}
	}()
	if err := openIdle(p.addr, cs[:n]); err != nil {
		return idle{}, err
	}
	time.Sleep(2 * time.Second)
	rss1, fd1 := rssKiB(pids), fds(pids)
	time.Sleep(*idleSettle)
	rss2, fd2 := rssKiB(pids), fds(pids)
	perProc := grownPer(rssEach(pids), each0, n)
	time.Sleep(2 * *idleSettle)
	rssMid, each2 := rssKiB(pids), rssEach(pids)
	if err := openIdle(p.addr, cs[n:]); err != nil {
		return idle{}, err
	}
	time.Sleep(2*time.Second + *idleSettle)
	rss3 := rssKiB(pids)
	perProcMarginal := grownPer(rssEach(pids), each2, n)
	return idle{
		perProc:     perProc,
		kibPerConn:  float64(rss1-rss0) / float64(n),
		fdsPerConn:  float64(fd1-fd0) / float64(n),
		kibSettled:  float64(rss2-rss0) / float64(n),
		fdsSettled:  float64(fd2-fd0) / float64(n),
		kibMarginal: float64(rss3-rssMid) / float64(n),

		perProcMarginal: perProcMarginal,
	}, nil
}

// rssEach is the RSS of each of pids, KiB.
func rssEach(pids []int) []int64 {
	kib := make([]int64, len(pids))
	for i, pid := range pids {
		kib[i] = rssKiB([]int{pid})
	}
	return kib
}

// grownPer is what each process grew from before to after, per connection
// of n.
func grownPer(after, before []int64, n int) []float64 {
	per := make([]float64, len(after))
	for i := range after {
		per[i] = float64(after[i]-before[i]) / float64(n)
	}
	return per
}

// openIdle fills cs with keep-alive connections to addr (64 at a time),
// one request made on each.
func openIdle(addr string, cs []*rateConn) error {
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	request := rateRequest
	if *idleBody > 0 {
		request = fmt.Appendf(nil, "GET %s%d HTTP/1.1\r\nHost: mesh.bench\r\nUser-Agent: meshbench\r\n\r\n", bulkPrefix, *idleBody)
	}
	sem := make(chan struct{}, 64)
	for i := range cs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := dialGet(addr, request)
			if err != nil {
				mu.Lock()
				firstErr = cmpErr(firstErr, err)
				mu.Unlock()
				return
			}
			c.SetDeadline(time.Time{})
			cs[i] = c
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return fmt.Errorf("idle connections: %w", firstErr)
	}
	return nil
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}
