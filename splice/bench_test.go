package splice

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/sniffsplice/sniff/internal/testnet"
)

// benchPipeline is a client -> Join -> server pipeline for benchmarks.
func benchPipeline(b *testing.B, j *Joiner) (client, server net.Conn, done chan joinOut) {
	b.Helper()
	e := newEnv(b, trTCP, j, context.Background(), nil)
	return e.client, e.server, e.done
}

// BenchmarkPingPong measures a request/response exchange of size bytes each
// way through Join, with the user-space path only (copy: a buffer as large
// as the message), with splice from 1 KiB on (splice), with the defaults,
// and through a bare io.Copy relay. The crossover of copy and splice is how
// DefaultSpliceThreshold was chosen.
func BenchmarkPingPong(b *testing.B) {
	for _, size := range []int{128, 1 << 10, 4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20} {
		for _, mode := range []string{"copy", "splice", "default", "bare"} {
			b.Run(fmt.Sprintf("%s/%d", mode, size), func(b *testing.B) {
				var j Joiner
				switch mode {
				case "copy":
					j.DisableSplice = true
					j.SpliceThreshold = 1 << 20
				case "splice":
					j.SpliceThreshold = 1 << 10
				}
				client, server, done := benchStart(b, mode, &j)
				pingPong(b, client, server, done, size)
			})
		}
	}
}

// pingPong is the timed loop of the ping-pong benchmarks: server echoes,
// client sends size bytes and reads them back per iteration; then the
// pipeline is stopped.
func pingPong(b *testing.B, client, server net.Conn, done chan joinOut, size int) {
	go testnet.EchoMessages(server, size)
	msg := make([]byte, size)
	b.SetBytes(int64(2 * size))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := client.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(client, msg); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	benchStop(client, server, done)
}

// bareStart relays with io.Copy both ways: the baseline of BenchmarkStream
// and BenchmarkPingPong.
func bareStart(b *testing.B) (client, server net.Conn, done chan joinOut) {
	client, server, stop := bareRelay(b)
	done = make(chan joinOut, 1)
	go func() { stop(); done <- joinOut{} }()
	return client, server, done
}

// benchStart starts the relay of mode: bareStart for "bare", else a Join by j.
func benchStart(b *testing.B, mode string, j *Joiner) (client, server net.Conn, done chan joinOut) {
	if mode == "bare" {
		return bareStart(b)
	}
	return benchPipeline(b, j)
}

// benchStop half-closes both ends, waits for the relay to finish and closes
// them.
func benchStop(client, server net.Conn, done chan joinOut) {
	client.(*net.TCPConn).CloseWrite()
	server.(*net.TCPConn).CloseWrite()
	<-done
	client.Close()
	server.Close()
}

// BenchmarkStream measures one-way bulk throughput through Join (default:
// splice for bulk; copy: user space only) and through a bare io.Copy relay,
// side by side.
func BenchmarkStream(b *testing.B) {
	for _, mode := range []string{"default", "copy", "bare"} {
		b.Run(mode, func(b *testing.B) {
			j := Joiner{DisableSplice: mode == "copy"}
			client, server, done := benchStart(b, mode, &j)
			go io.Copy(io.Discard, server)
			msg := make([]byte, 1<<20)
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := client.Write(msg); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			benchStop(client, server, done)
		})
	}
}

// loopModes are the relays BenchmarkLoopPingPong and BenchmarkLoopParallel
// compare side by side: Joiner.Join (two goroutines per join), Loop with
// its workers parked in Go's poller (the default), Loop with its workers
// blocked in epoll_wait, and the bare io.Copy relay.
var loopModes = []string{"join", "loop", "loop-blocking", "bare"}

// startMode starts one client -> relay -> server pipeline of mode.
func startMode(b *testing.B, mode string, l *Loop) (client, server net.Conn, done chan joinOut) {
	switch mode {
	case "join":
		return benchPipeline(b, &Joiner{})
	case "bare":
		return bareStart(b)
	}
	e := newEnvLoop(b, trTCP, l, context.Background(), nil)
	return e.client, e.server, e.done
}

func newBenchLoop(mode string) *Loop {
	return &Loop{blockingWait: mode == "loop-blocking"}
}

// BenchmarkLoopPingPong measures one request/response round trip of size
// bytes each way through one joined connection, for each relay of
// loopModes in the same run.
func BenchmarkLoopPingPong(b *testing.B) {
	for _, size := range []int{128, 4 << 10, 64 << 10} {
		for _, mode := range loopModes {
			b.Run(fmt.Sprintf("%s/%d", mode, size), func(b *testing.B) {
				l := newBenchLoop(mode)
				defer l.Close()
				client, server, done := startMode(b, mode, l)
				pingPong(b, client, server, done, size)
			})
		}
	}
}

// BenchmarkLoopParallel is BenchmarkLoopPingPong with 32 joined
// connections at once (wrk's keep-alive shape): ns/op is per round trip
// of all the connections together.
func BenchmarkLoopParallel(b *testing.B) {
	const conns, size = 32, 128
	for _, mode := range loopModes {
		b.Run(mode, func(b *testing.B) {
			l := newBenchLoop(mode)
			defer l.Close()
			type pipe struct {
				client, server net.Conn
				done           chan joinOut
			}
			pipes := make([]pipe, conns)
			for i := range pipes {
				c, s, d := startMode(b, mode, l)
				pipes[i] = pipe{c, s, d}
				go testnet.EchoMessages(s, size)
			}
			work := make(chan struct{}, conns)
			var wg sync.WaitGroup
			for _, p := range pipes {
				wg.Add(1)
				go func() {
					defer wg.Done()
					msg := make([]byte, size)
					for range work {
						if _, err := p.client.Write(msg); err != nil {
							return
						}
						if _, err := io.ReadFull(p.client, msg); err != nil {
							return
						}
					}
				}()
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				work <- struct{}{}
			}
			close(work)
			wg.Wait()
			b.StopTimer()
			for _, p := range pipes {
				benchStop(p.client, p.server, p.done)
			}
		})
	}
}
