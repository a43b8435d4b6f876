//go:build linux

// Command relayd is a TCP relay for the relay benchmarks (bench/relay.sh):
// it accepts on -listen, dials -target for every connection and joins the
// two with one of four copy loops:
//
//	loop    sniff's splice.Loop: one accept goroutine hands every connection to
//	        Loop.StartDial, which connects -target itself; no goroutine per connection
//	loopserve  splice.Loop.ServeDial: the loop's workers accept too (accept4 in
//	        their epoll sets), so the accepted sockets never become net.Conns
//	splice  sniff's splice.Join (readiness wait, pooled small buffer, splice for bulk)
//	bare    io.Copy both ways (Go splices *net.TCPConn pairs on its own)
//	buf32k  io.CopyBuffer both ways through a 32 KiB buffer per direction, hiding ReadFrom/WriteTo
//
// It prints the address it listens on, then serves until killed. SIGUSR1
// prints runtime memory statistics to stderr; SIGUSR2 first runs two
// garbage collections and returns freed memory to the OS.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/sniffsplice/sniff/splice"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	target := flag.String("target", "", "address to dial for every connection")
	mode := flag.String("mode", "splice", "loop, loopserve, splice, bare or buf32k")
	threshold := flag.Int("threshold", 0, "SpliceThreshold (-mode splice, loop)")
	nosplice := flag.Bool("nosplice", false, "DisableSplice (-mode splice, loop)")
	workers := flag.Int("workers", 0, "Loop.Workers (-mode loop, loopserve); 0: GOMAXPROCS")
	procs := flag.Int("procs", 0, "runtime.GOMAXPROCS for the relay; 0: the default (one per CPU)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the first -profile-seconds to this file")
	profileSeconds := flag.Int("profile-seconds", 10, "length of the CPU profile")
	flag.Parse()
	if *procs > 0 {
		runtime.GOMAXPROCS(*procs)
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err == nil && pprof.StartCPUProfile(f) == nil {
			time.AfterFunc(time.Duration(*profileSeconds)*time.Second, func() { pprof.StopCPUProfile(); f.Close() })
		}
	}

	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) == nil {
		lim.Cur = lim.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	var handle func(a, b net.Conn)
	var loop *splice.Loop
	switch *mode {
	case "loop", "loopserve":
		loop = &splice.Loop{SpliceThreshold: *threshold, DisableSplice: *nosplice, Workers: *workers}
	case "splice":
		j := &splice.Joiner{SpliceThreshold: *threshold, DisableSplice: *nosplice}
		handle = func(a, b net.Conn) { j.Join(context.Background(), a, b, nil) }
	case "bare":
		handle = bare
	case "buf32k":
		handle = buf32k
	default:
		fmt.Fprintln(os.Stderr, "relayd: unknown -mode", *mode)
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "relayd:", err)
		os.Exit(1)
	}
	fmt.Println(ln.Addr())
	// SIGUSR1 prints the runtime's memory statistics to stderr (the
	// benchmark uses it to explain RSS per idle connection).
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1, syscall.SIGUSR2)
	go func() {
		for sig := range usr1 {
			if sig == syscall.SIGUSR2 {
				// Two collections shrink the stacks of parked goroutines
				// (each halves a stack that uses under a quarter of it);
				// FreeOSMemory returns the freed pages.
				runtime.GC()
				runtime.GC()
				debug.FreeOSMemory()
			}
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			fmt.Fprintf(os.Stderr, "relayd %s: goroutines=%d stack_inuse=%d heap_inuse=%d heap_alloc=%d heap_sys=%d sys=%d gc=%d\n",
				*mode, runtime.NumGoroutine(), m.StackInuse, m.HeapInuse, m.HeapAlloc, m.HeapSys, m.Sys, m.NumGC)
		}
	}()
	if loop != nil {
		addr, err := netip.ParseAddrPort(*target)
		if err != nil {
			fmt.Fprintln(os.Stderr, "relayd: -target:", err)
			os.Exit(2)
		}
		if *mode == "loopserve" {
			err := loop.ServeDial(context.Background(), ln.(*net.TCPListener), addr, nil, nil)
			fmt.Fprintln(os.Stderr, "relayd:", err)
			os.Exit(1)
		}
		for {
			a, err := ln.Accept()
			if err != nil {
				time.Sleep(10 * time.Millisecond) // EMFILE and the like
				continue
			}
			if err := loop.StartDial(context.Background(), a, addr, nil, nil); err != nil {
				a.Close()
			}
		}
	}
	for {
		a, err := ln.Accept()
		if err != nil {
			time.Sleep(10 * time.Millisecond) // EMFILE and the like
			continue
		}
		go func() {
			b, err := net.Dial("tcp", *target)
			if err != nil {
				a.Close()
				return
			}
			handle(a, b)
		}()
	}
}

// bare is the naive relay: io.Copy each way, CloseWrite on EOF.
func bare(a, b net.Conn) {
	done := make(chan struct{})
	go func() {
		io.Copy(b, a)
		b.(*net.TCPConn).CloseWrite()
		close(done)
	}()
	io.Copy(a, b)
	a.(*net.TCPConn).CloseWrite()
	<-done
	a.Close()
	b.Close()
}

type reader struct{ io.Reader }
type writer struct{ io.Writer }

// buf32k copies through a 32 KiB user-space buffer per direction.
func buf32k(a, b net.Conn) {
	done := make(chan struct{})
	go func() {
		io.CopyBuffer(writer{b}, reader{a}, make([]byte, 32<<10))
		b.(*net.TCPConn).CloseWrite()
		close(done)
	}()
	io.CopyBuffer(writer{a}, reader{b}, make([]byte, 32<<10))
	a.(*net.TCPConn).CloseWrite()
	<-done
	a.Close()
	b.Close()
}
