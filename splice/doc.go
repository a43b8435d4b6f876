// Package splice joins two connections: it copies both directions at once
// until both are done, moving the bytes with splice(2) where the kernel
// allows and with pooled buffers where it does not.
//
// Join (or Joiner.Join with knobs) is the whole API:
//
//	st, err := splice.Join(ctx, client, upstream) // closes both before it returns
//
// # How bytes move
//
// When the source of a direction is a *net.TCPConn on Linux, the direction
// waits for readability without holding a buffer or a pipe: a non-blocking
// read runs inside SyscallConn().Read and, when the socket is empty, the
// runtime's poller parks the goroutine with nothing else checked out. When
// bytes arrive, one pooled buffer (Joiner.SpliceThreshold bytes) is taken, the
// bytes are read and written and the buffer goes back to the pool before the
// next wait. A read that fills the buffer marks the direction as bulk: from
// then on, when the receive queue holds at least SpliceThreshold bytes, they
// move with splice(2) through the destination's (*net.TCPConn).ReadFrom and
// an io.LimitedReader bounded by the queued byte count, so a splice never
// blocks waiting for data and never holds a pipe while the connection is
// idle. An idle joined TCP connection therefore costs its two sockets and
// two parked goroutines, nothing else.
//
// Any other connection (TLS, pipes, wrappers) is copied with one pooled
// buffer of Joiner.BufferSize bytes per direction, taken for the life of the
// direction; reads and writes allocate nothing. A connection that implements
// Unwrapper (the replaying connection returned by package detect) is first
// drained through its Read until its replay buffer is empty and then
// replaced by the connection it wraps, so a detected TCP connection still
// reaches splice.
//
// # Ending
//
// A clean end of stream (EOF) on one side's read becomes CloseWrite on the
// other side, and the other direction keeps flowing until it ends too. A
// reset (or any other error) on one side is propagated as a reset
// (SO_LINGER 0, then close) to the other side, never as a clean close. An
// idle timeout (no byte in either direction), a total lifetime and the
// cancellation of the context end the join too. Join always closes both
// connections before it returns and no goroutine it started outlives it.
//
// Stats says how many bytes moved each way, how long the join lasted, which
// side ended first and how; Errno classifies the error the way Linkerd's
// tcp_close_total{errno} label does.
package splice
