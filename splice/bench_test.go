package splice

import (
	"context"
	"fmt"
	"io"
	"net"
	"testing"
)

// benchPipeline is a client -> Join -> server pipeline for benchmarks.
func benchPipeline(b *testing.B, j *Joiner) (client, server net.Conn, done chan joinOut) {
	b.Helper()
	e := newEnv(b, trTCP, j, context.Background(), nil)
	return e.client, e.server, e.done
}

// BenchmarkPingPong measures a request/response exchange of size bytes each
// way through Join, with the user-space path only (copy: a buffer as large
// as the message) and with splice from 1 KiB on (splice). The crossover is
// how DefaultSpliceThreshold was chosen.
func BenchmarkPingPong(b *testing.B) {
	for _, size := range []int{128, 1 << 10, 4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20} {
		for _, mode := range []string{"copy", "splice", "default"} {
			b.Run(fmt.Sprintf("%s/%d", mode, size), func(b *testing.B) {
				var j Joiner
				switch mode {
				case "copy":
					j.DisableSplice = true
					j.SpliceThreshold = 1 << 20
				case "splice":
					j.SpliceThreshold = 1 << 10
				}
				client, server, done := benchPipeline(b, &j)
				go func() {
					buf := make([]byte, size)
					for {
						if _, err := io.ReadFull(server, buf); err != nil {
							return
						}
						if _, err := server.Write(buf); err != nil {
							return
						}
					}
				}()
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
				client.Close()
				server.Close()
				<-done
			})
		}
	}
}

// BenchmarkStream measures one-way bulk throughput through Join.
func BenchmarkStream(b *testing.B) {
	for _, mode := range []string{"default", "copy"} {
		b.Run(mode, func(b *testing.B) {
			j := Joiner{DisableSplice: mode == "copy"}
			client, server, done := benchPipeline(b, &j)
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
			client.Close()
			server.Close()
			<-done
		})
	}
}
