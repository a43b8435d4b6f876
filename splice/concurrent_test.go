package splice

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/sniffsplice/sniff/detect"
	"github.com/sniffsplice/sniff/internal/testnet"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// relay is a small proxy built on Join: it accepts on front, dials back and
// joins the two. wrapA/wrapB wrap the accepted and dialed connections.
type relay struct {
	front   net.Listener
	wg      sync.WaitGroup
	mu      sync.Mutex
	results []joinOut
}

func startRelay(t testing.TB, j *Joiner, backAddr string, wrapA, wrapB func(net.Conn) net.Conn) *relay {
	r := &relay{front: listen(t)}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for {
			a, err := r.front.Accept()
			if err != nil {
				return
			}
			r.wg.Add(1)
			go func() {
				defer r.wg.Done()
				b, err := net.Dial("tcp", backAddr)
				if err != nil {
					a.Close()
					r.add(joinOut{err: err})
					return
				}
				st, err := j.Join(context.Background(), wrapA(a), wrapB(b), nil)
				r.add(joinOut{st, err})
			}()
		}
	}()
	return r
}

func (r *relay) add(o joinOut) {
	r.mu.Lock()
	r.results = append(r.results, o)
	r.mu.Unlock()
}

func (r *relay) stop() []joinOut {
	r.front.Close()
	r.wg.Wait()
	return r.results
}

// startEcho serves every accepted connection by sending back what it reads
// and half-closing after EOF. stop closes the listener; the handlers are
// waited for when the test ends.
func startEcho(t testing.TB, wrap func(net.Conn) net.Conn) (addr string, stop func()) {
	return startEchoOn(t, "127.0.0.1:0", wrap)
}

// startEchoOn is startEcho listening on address.
func startEchoOn(t testing.TB, address string, wrap func(net.Conn) net.Conn) (addr string, stop func()) {
	ln := testnet.ServeOn(t, address, func(c net.Conn) {
		w := wrap(c)
		buf := make([]byte, 8<<10)
		for {
			n, err := w.Read(buf)
			if n > 0 {
				if _, werr := w.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				break
			}
		}
		w.(interface{ CloseWrite() error }).CloseWrite()
		io.Copy(io.Discard, w)
	})
	return ln.Addr().String(), func() { ln.Close() }
}

// TestConcurrentJoins runs many joins of small transfers at once and checks
// every byte of every one.
func TestConcurrentJoins(t *testing.T) {
	same := func(c net.Conn) net.Conn { return c }
	// Under the race detector (5-10x the CPU per join), fewer joins: still hundreds at once.
	n, tlsN := 1000, 1000
	if testnet.RaceEnabled || testing.Short() {
		n, tlsN = 400, 200
	}
	cases := []struct {
		name         string
		n            int
		wrapA, wrapB func(net.Conn) net.Conn
		client, echo func(net.Conn) net.Conn
	}{
		{"tcp", n, same, same, same, same},
		{"detect", n, func(c net.Conn) net.Conn { return detect.NewReplayConn(c, nil) }, same, same, same},
	}
	srv, cli := tlsConfigs(t)
	cases = append(cases, struct {
		name         string
		n            int
		wrapA, wrapB func(net.Conn) net.Conn
		client, echo func(net.Conn) net.Conn
	}{"tls", tlsN,
		func(c net.Conn) net.Conn { return tls.Server(c, srv) },
		func(c net.Conn) net.Conn { return tls.Client(c, cli) },
		func(c net.Conn) net.Conn { return tls.Client(c, cli) },
		func(c net.Conn) net.Conn { return tls.Server(c, srv) }})

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			addr, stopEcho := startEcho(t, c.echo)
			defer stopEcho()
			j := &Joiner{hooks: &hooks{}}
			r := startRelay(t, j, addr, c.wrapA, c.wrapB)
			runClients(t, r.front.Addr().String(), c.n, c.client)
			// Joins may still be closing: every one returns.
			require.True(t, eventually(30*time.Second, func() bool {
				r.mu.Lock()
				defer r.mu.Unlock()
				return len(r.results) == c.n
			}), "every Join returned")
			res := r.stop()
			for _, o := range res {
				require.NoError(t, o.err)
				require.Equal(t, o.st.AToB, o.st.BToA, "echo: as many bytes back as forth")
			}
			assert.Zero(t, j.hooks.buffersOut.Load())
		})
	}
}

// runClients runs n oneClient at once against addr (seeds 0..n-1) and
// fails the test if any of them failed, naming the first few.
func runClients(t testing.TB, addr string, n int, wrap func(net.Conn) net.Conn) {
	t.Helper()
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- oneClient(addr, uint64(i), wrap)
		}()
	}
	wg.Wait()
	close(errs)
	failed := 0
	for err := range errs {
		if err != nil {
			failed++
			if failed < 5 {
				t.Error(err)
			}
		}
	}
	require.Zero(t, failed, "clients that failed")
}

// oneClient sends 1 B .. 48 KiB of random bytes, half-closes and checks
// that the echo is the same bytes, then EOF.
func oneClient(addr string, seed uint64, wrap func(net.Conn) net.Conn) error {
	rnd := rand.New(rand.NewPCG(seed, 42))
	msg := make([]byte, 1+rnd.IntN(48<<10))
	for i := range msg {
		msg[i] = byte(rnd.Uint32())
	}
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(2 * time.Minute))
	c := wrap(raw)
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(msg)
		if err == nil {
			err = c.(interface{ CloseWrite() error }).CloseWrite()
		}
		werr <- err
	}()
	got, err := io.ReadAll(c)
	if e := <-werr; e != nil {
		return fmt.Errorf("client %d write: %w", seed, e)
	}
	if err != nil {
		return fmt.Errorf("client %d read: %w", seed, err)
	}
	if !bytes.Equal(got, msg) {
		return fmt.Errorf("client %d: echo differs (%d bytes sent, %d back)", seed, len(msg), len(got))
	}
	return nil
}
