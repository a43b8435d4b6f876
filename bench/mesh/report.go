//go:build linux

package main

import (
	"fmt"
	"slices"
	"time"
)

// The report: medians over the rounds, as Markdown tables with ratios.

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// med is the median over rounds of f of a path's results.
func med(rs []result, f func(result) float64) float64 {
	var v []float64
	for _, r := range rs {
		v = append(v, f(r))
	}
	return median(v)
}

func ratio(a, b float64) string {
	if a == 0 || b == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2fx", a/b)
}

func tpOf(load string, f func(throughput) float64) func(result) float64 {
	return func(r result) float64 { return f(r.tp[load]) }
}

func rps(t throughput) float64 { return t.rps }
func cpu(t throughput) float64 { return t.cpuPerReq }

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func report(paths []string, results map[string][]result, load0, load1 string) {

	fmt.Printf("### HTTP through a pair of proxies (median of %d interleaved rounds; load average %s before, %s after)\n\n", *rounds, load0, load1)
	fmt.Printf("wrk -t2 -c%d -d%s (keep-alive; `Connection: close`: a new connection per request), h2load -t2 -c%d -m%d -D%s (h2c); "+
		"proxies' CPU: user + system time of both proxy processes from /proc/PID/stat, per request completed; "+
		"idle: %d keep-alive connections, one request each, held open, growth of both proxies' RSS (2 s after the last one opened, and %s later) and descriptors; "+
		"then, %s later, %d more opened, and what they added once settled (2 s + %s later): the marginal cost of one more idle connection. "+
		"Ratios in brackets: req/s ÷ the compared pair's; CPU and memory: its ÷ the compared pair's (lower is better).\n\n",
		*conns, *duration, *h2Conns, *h2Streams, *duration, *idleConns, *idleSettle, 2**idleSettle, *idleConns, *idleSettle)
	if *idleBody > 0 {
		fmt.Printf("Each idle connection's one request was answered with %d bytes.\n\n", *idleBody)
	}
	fmt.Printf("| path | keep-alive req/s | proxies' CPU µs/req | new connection per request, req/s | proxies' CPU µs/req | h2c req/s | proxies' CPU µs/req | RSS per idle keep-alive connection, KiB, after 2 s | after %s more | marginal, %d more | descriptors per idle connection, after 2 s → after %s more |\n", *idleSettle, *idleConns, *idleSettle)
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|")
	for _, name := range paths {
		rs, vs := results[name], results[versusOf(name)]
		fmt.Printf("| %s |", titleOf(name))
		for _, l := range []string{"keep-alive", "close", "h2c"} {
			if !has(*loadList, l) {
				fmt.Print(" — | — |")
				continue
			}
			r, c := med(rs, tpOf(l, rps)), med(rs, tpOf(l, cpu))
			fmt.Printf(" %.0f%s |", r, bracket(r, med(vs, tpOf(l, rps)), vs))
			if name == "direct" {
				fmt.Print(" — |")
			} else {
				fmt.Printf(" %.0f%s |", c, bracket(c, med(vs, tpOf(l, cpu)), vs))
			}
		}
		if !has(*loadList, "idle") || name == "direct" {
			fmt.Println(" — | — | — | — |")
			continue
		}
		k := med(rs, func(r result) float64 { return r.idle.kibPerConn })
		ks := med(rs, func(r result) float64 { return r.idle.kibSettled })
		f := med(rs, func(r result) float64 { return r.idle.fdsPerConn })
		fs := med(rs, func(r result) float64 { return r.idle.fdsSettled })
		km := med(rs, func(r result) float64 { return r.idle.kibMarginal })
		fmt.Printf(" %.1f%s | %.1f%s | %.1f%s | %.2f → %.2f |\n", k, bracket(k, med(vs, func(r result) float64 { return r.idle.kibPerConn }), vs),
			ks, bracket(ks, med(vs, func(r result) float64 { return r.idle.kibSettled }), vs),
			km, bracket(km, med(vs, func(r result) float64 { return r.idle.kibMarginal }), vs), f, fs)
	}
	fmt.Println()

	if has(*loadList, "rate") {
		direct := results["direct"]
		p50 := func(r result) float64 { return us(r.lat.p50) }
		p99 := func(r result) float64 { return us(r.lat.p99) }
		p999 := func(r result) float64 { return us(r.lat.p999) }
		fmt.Printf("### Fixed rate: %d requests/s, open loop, %s, %d keep-alive connections (median of %d)\n\n", *rate, *rateDuration, *rateConns, *rounds)
		fmt.Println("Latency from a request's dispatch to the end of its response, in µs; added: minus direct's in the same round's median. Ratios in brackets: added latency ÷ the compared pair's (lower is better).")
		fmt.Println()
		fmt.Println("| path | p50 | p99 | p99.9 | added p50 | added p99 | added p99.9 | errors | achieved req/s |")
		fmt.Println("|---|---|---|---|---|---|---|---|---|")
		for _, name := range paths {
			rs, vs := results[name], results[versusOf(name)]
			fmt.Printf("| %s | %.0f | %.0f | %.0f |", titleOf(name), med(rs, p50), med(rs, p99), med(rs, p999))
			for _, q := range []func(result) float64{p50, p99, p999} {
				if name == "direct" || len(direct) == 0 {
					fmt.Print(" — |")
					continue
				}
				a := med(rs, q) - med(direct, q)
				fmt.Printf(" %+.0f%s |", a, bracket(a, med(vs, q)-med(direct, q), vs))
			}
			fmt.Printf(" %.0f | %.0f |\n", med(rs, func(r result) float64 { return float64(r.lat.errs) }),
				med(rs, func(r result) float64 { return r.lat.achieved }))
		}
		fmt.Println()
	}

	if aa, h := results["haproxy-http-again"], results["haproxy-http"]; len(aa) > 0 && len(h) > 0 {
		fmt.Print("A/A control, the HAProxy `mode http` pair measured twice in the same rounds, again ÷ first:")
		for _, l := range []string{"keep-alive", "close", "h2c"} {
			if has(*loadList, l) {
				fmt.Printf(" %s %s req/s, CPU %s;", l, ratio(med(aa, tpOf(l, rps)), med(h, tpOf(l, rps))), ratio(med(aa, tpOf(l, cpu)), med(h, tpOf(l, cpu))))
			}
		}
		if has(*loadList, "idle") {
			fmt.Printf(" idle RSS %s, settled %s, marginal %s;", ratio(med(aa, func(r result) float64 { return r.idle.kibPerConn }), med(h, func(r result) float64 { return r.idle.kibPerConn })),
				ratio(med(aa, func(r result) float64 { return r.idle.kibSettled }), med(h, func(r result) float64 { return r.idle.kibSettled })),
				ratio(med(aa, func(r result) float64 { return r.idle.kibMarginal }), med(h, func(r result) float64 { return r.idle.kibMarginal })))
		}
		fmt.Print("\n\n")
	}
	if has(*loadList, "keep-alive") {
		ceilings(paths, results)
	}
	targets(results)
}

// titleOf is the path's title in the tables.
func titleOf(name string) string { i, _ := infoOf(name); return i.title }

// versusOf is the path the path called name is compared with.
func versusOf(name string) string { i, _ := infoOf(name); return i.versus }

// ceilings prints, for keep-alive, where each path's CPU went and the req/s
// the machine would reach if the path's proxies did all their kernel work
// (the same system calls, TLS in user space included in user time) and no
// user-space work at all: the machine's CPU time per request less the
// proxies' user time, over all its CPUs (as measured, its idle time kept),
// and again with no idle time either. A pair that makes the same system
// calls as another cannot pass the other's ceiling, however little user CPU
// it spends.
func ceilings(paths []string, results map[string][]result) {
	ncpu := float64(numCPU()) * 1e6
	ceil := func(all bool) func(result) float64 {
		return func(r result) float64 {
			t := r.tp["keep-alive"]
			box := t.boxBusyPerReq
			if all {
				box = t.boxPerReq
			}
			if box-t.userPerReq <= 0 {
				return 0
			}
			return ncpu / (box - t.userPerReq)
		}
	}
	fmt.Println("### Keep-alive: where the CPU went, and the ceiling with no user-space work")
	fmt.Println()
	fmt.Println("µs per request, medians; machine: all CPUs' time per request (busy / busy + idle, from /proc/stat). " +
		"Ceiling: the req/s if the proxies spent their kernel time and no user time (idle kept; then no idle either). Ratios: ÷ the compared pair's measured req/s.")
	fmt.Println()
	fmt.Println("| path | req/s | proxies' user | proxies' kernel | machine busy / all | ceiling, no user CPU | ceiling, no user CPU, no idle |")
	fmt.Println("|---|---|---|---|---|---|---|")
	for _, name := range paths {
		rs, vs := results[name], results[versusOf(name)]
		if name == "direct" {
			continue
		}
		r := med(rs, tpOf("keep-alive", rps))
		base := r
		if len(vs) > 0 {
			base = med(vs, tpOf("keep-alive", rps))
		}
		c1, c2 := med(rs, ceil(true)), med(rs, ceil(false))
		fmt.Printf("| %s | %.0f | %.0f | %.0f | %.0f / %.0f | %.0f (%s) | %.0f (%s) |\n", titleOf(name), r,
			med(rs, tpOf("keep-alive", func(t throughput) float64 { return t.userPerReq })),
			med(rs, tpOf("keep-alive", func(t throughput) float64 { return t.sysPerReq })),
			med(rs, tpOf("keep-alive", func(t throughput) float64 { return t.boxBusyPerReq })),
			med(rs, tpOf("keep-alive", func(t throughput) float64 { return t.boxPerReq })),
			c1, ratio(c1, base), c2, ratio(c2, base))
	}
	fmt.Println()
}

// bracket is " (a÷b)" when the compared path was measured.
func bracket(a, b float64, vs []result) string {
	if len(vs) == 0 {
		return ""
	}
	return " (" + ratio(a, b) + ")"
}

// targets prints issue 17's targets, each with the measured ratio and
// whether it is met.
func targets(results map[string][]result) {
	sh, hh, so, ht, d := results["sidecar-http"], results["haproxy-http"], results["sidecar-opaque"], results["haproxy-tcp"], results["direct"]
	type target struct {
		what      string
		got, want float64
		higher    bool // the ratio must be at least want (else at most)
	}
	var ts []target
	r := func(a, b []result, f func(result) float64) float64 {
		if len(a) == 0 || len(b) == 0 {
			return 0
		}
		x, y := med(a, f), med(b, f)
		if y == 0 {
			return 0
		}
		return x / y
	}
	if has(*loadList, "keep-alive") {
		ts = append(ts,
			target{"keep-alive req/s, sidecars (HTTP) ÷ HAProxy http", r(sh, hh, tpOf("keep-alive", rps)), 1.0, true},
			target{"keep-alive proxies' CPU per request, sidecars (HTTP) ÷ HAProxy http", r(sh, hh, tpOf("keep-alive", cpu)), 1.0, false},
			target{"keep-alive req/s, sidecars (opaque) ÷ HAProxy tcp", r(so, ht, tpOf("keep-alive", rps)), 1.5, true})
	}
	if has(*loadList, "close") {
		ts = append(ts, target{"new connection per request req/s, sidecars (HTTP) ÷ HAProxy http", r(sh, hh, tpOf("close", rps)), 1.5, true})
	}
	if has(*loadList, "rate") && len(d) > 0 {
		added := func(q func(latencies) time.Duration) float64 {
			if len(sh) == 0 || len(hh) == 0 {
				return 0
			}
			f := func(r result) float64 { return us(q(r.lat)) }
			a, b := med(sh, f)-med(d, f), med(hh, f)-med(d, f)
			if b <= 0 {
				return 0
			}
			return a / b
		}
		ts = append(ts,
			target{fmt.Sprintf("added p50 at %d req/s, sidecars (HTTP) ÷ HAProxy http", *rate), added(func(l latencies) time.Duration { return l.p50 }), 1.0, false},
			target{fmt.Sprintf("added p99 at %d req/s, sidecars (HTTP) ÷ HAProxy http", *rate), added(func(l latencies) time.Duration { return l.p99 }), 1.0, false})
	}
	if has(*loadList, "idle") {
		ts = append(ts,
			target{"RSS per idle keep-alive connection after 2 s, sidecars (HTTP) ÷ HAProxy http", r(sh, hh, func(r result) float64 { return r.idle.kibPerConn }), 0.5, false},
			target{fmt.Sprintf("RSS per idle keep-alive connection after %s more, sidecars (HTTP) ÷ HAProxy http", *idleSettle), r(sh, hh, func(r result) float64 { return r.idle.kibSettled }), 0.5, false},
			target{fmt.Sprintf("RSS per idle keep-alive connection, marginal (%d more, settled), sidecars (HTTP) ÷ HAProxy http", *idleConns), r(sh, hh, func(r result) float64 { return r.idle.kibMarginal }), 0.5, false})
	}
	fmt.Println("### Issue 17's targets")
	fmt.Println()
	fmt.Println("| target | measured | wanted | met |")
	fmt.Println("|---|---|---|---|")
	for _, t := range ts {
		if t.got == 0 {
			fmt.Printf("| %s | not measured | | |\n", t.what)
			continue
		}
		op, met := "≤", t.got <= t.want
		if t.higher {
			op, met = "≥", t.got >= t.want
		}
		word := "**no**"
		if met {
			word = "yes"
		}
		fmt.Printf("| %s | %.2fx | %s %.1fx | %s |\n", t.what, t.got, op, t.want, word)
	}
	fmt.Println()
}
