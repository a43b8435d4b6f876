package metrics_test

import (
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sniffsplice/sniff/detect"
	"github.com/sniffsplice/sniff/internal/testnet"
	"github.com/sniffsplice/sniff/metrics"
)

// TestWaiterFamilies: a real Waiter's counts reach the waiter_* families under its name, read at
// each snapshot; a name added again is replaced, not doubled; names beyond MaxLabelValues are
// not kept.
func TestWaiterFamilies(t *testing.T) {
	client, server := tcpPair(t)
	defer client.Close()
	defer server.Close()

	var w detect.Waiter
	defer w.Close()
	r := metrics.New(metrics.Config{MaxLabelValues: 2})
	r.AddWaiter("first_bytes", w.Stats)
	s := r.Snapshot()
	assert.Zero(t, s.Value("waiter_waiting_connections", "waiter", "first_bytes"))

	done := make(chan error, 1)
	w.Wait(server, time.Hour, func(c net.Conn, err error) { done <- err })
	assert.Equal(t, 1.0, r.Snapshot().Value("waiter_waiting_connections", "waiter", "first_bytes"), "read at the snapshot")
	_, err := client.Write([]byte{'x'})
	require.NoError(t, err)
	require.NoError(t, testnet.Recv(t, done, "the wait's end"))
	_, err = server.Read(make([]byte, 1)) // nothing left to read: the next wait times out
	require.NoError(t, err)
	w.Wait(server, 20*time.Millisecond, func(c net.Conn, err error) { c.Close(); done <- err })
	require.ErrorIs(t, testnet.Recv(t, done, "the wait's end"), detect.ErrWaitTimeout)
	s = r.Snapshot()
	assert.Zero(t, s.Value("waiter_waiting_connections", "waiter", "first_bytes"))
	assert.Equal(t, 1.0, s.Value("waiter_connections_total", "waiter", "first_bytes", "outcome", "ready"))
	assert.Equal(t, 1.0, s.Value("waiter_connections_total", "waiter", "first_bytes", "outcome", "timed_out"))
	assert.Equal(t, 2.0, s.Value("waiter_connections_total", "waiter", "first_bytes"), "two waits ended in all")
	assert.Zero(t, s.Value("waiter_detached_total"))

	r.AddWaiter("first_bytes", func() detect.WaitStats { return detect.WaitStats{Ready: 7, Detached: 4, Reduced: 2} })
	r.AddWaiter("idle", func() detect.WaitStats { return detect.WaitStats{Waiting: 3} })
	r.AddWaiter("third", func() detect.WaitStats { return detect.WaitStats{Waiting: 100} })
	s = r.Snapshot()
	assert.Equal(t, 7.0, s.Value("waiter_connections_total", "waiter", "first_bytes"), "replaced, not added")
	assert.Equal(t, 4.0, s.Value("waiter_detached_total"))
	assert.Equal(t, 2.0, s.Value("waiter_reduced_total"))
	assert.Equal(t, 3.0, s.Value("waiter_waiting_connections"), "the third name is beyond the cap")
}
