package accept_test

import (
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sniffsplice/sniff/accept"
	"github.com/sniffsplice/sniff/internal/testnet"
)

// openFDs counts this process's open descriptors.
func openFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	return len(ents)
}

// TestServeEMFILE runs out of descriptors for real: with RLIMIT_NOFILE a few above what is
// open, clients queued in the backlog are accepted until accept4 fails with EMFILE. Serve keeps
// going, backing off, and once the held connections are closed it accepts the rest.
func TestServeEMFILE(t *testing.T) {
	const clients = 24
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var dialed []net.Conn
	for range clients {
		c, err := net.Dial("tcp", ln.Addr().String())
		require.NoError(t, err)
		dialed = append(dialed, c)
	}
	defer func() {
		for _, c := range dialed {
			c.Close()
		}
	}()

	var old syscall.Rlimit
	require.NoError(t, syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old))
	low := old
	low.Cur = uint64(openFDs(t) + 6) // room for a few accepted connections only
	require.NoError(t, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low))
	restored := false
	restore := func() {
		if !restored {
			restored = true
			require.NoError(t, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old))
		}
	}
	defer restore()

	var mu sync.Mutex
	var held []net.Conn
	accepted := make(chan struct{}, clients)
	emfile := make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- accept.Loop{OnTemporary: func(err error, _ time.Duration) {
			if errors.Is(err, syscall.EMFILE) {
				select {
				case emfile <- struct{}{}:
				default:
				}
			}
		}}.Serve(ctx, ln, func(c net.Conn) {
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
			accepted <- struct{}{}
		})
	}()
	testnet.Recv(t, emfile, "accept4 to fail with EMFILE")
	mu.Lock()
	n := len(held)
	mu.Unlock()
	assert.Less(t, n, clients, "not every client fit under the low limit")

	// Free the descriptors: close what was accepted, then raise the limit back.
	mu.Lock()
	for _, c := range held {
		c.Close()
	}
	mu.Unlock()
	restore()
	freed := time.Now()
	for range clients {
		testnet.Recv(t, accepted, "every client accepted once descriptors are free")
	}
	assert.Less(t, time.Since(freed), 2*time.Second, "served again within the longest back-off")
	cancel()
	assert.ErrorIs(t, testnet.Recv(t, done, "Serve to return"), context.Canceled)
	mu.Lock()
	for _, c := range held {
		c.Close()
	}
	mu.Unlock()
}
