// Package splice joins two connections: it copies both directions at once
// until both are done, moving the bytes with splice(2) where the kernel
// allows and with pooled buffers where it does not.
//
// Join (or Joiner.Join with knobs) joins two connections and blocks until
// both directions are done; Loop.Start and Loop.StartDial hand the pair to
// an event loop and return at once:
//
//	st, err := splice.Join(ctx, client, upstream) // closes both before it returns
//
//	var l splice.Loop                             // zero value: GOMAXPROCS workers
//	err := l.StartDial(ctx, client, upstreamAddr, nil, func(st splice.Stats) { ... })
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
// Any other connection (TLS, pipes, wrappers) is copied through pooled
// buffers; reads and writes allocate nothing. The only way to wait on such a
// connection is a Read, which holds its buffer, so a direction that may wait
// reads into Joiner.WaitBufferSize bytes (16 KiB), moves to
// Joiner.BufferSize once a read fills that, and back after a read that ends
// a shorter message. A direction that reads a *tls.Conn waits in 1 KiB
// (DefaultTLSWaitBufferSize): crypto/tls keeps the rest of a record in
// memory, and a read that fills the wait buffer takes that rest at once,
// under a read deadline in the past, into one record's 16 KiB, so a message
// is still written whole; an idle joined TLS connection holds 1 KiB per
// direction. (crypto/tls itself keeps a record buffer that never shrinks:
// 37 KiB once full records have arrived; see BENCHMARKS.md.) It never
// reads into more than one record's 16 KiB while it streams (a larger
// buffer would never be filled past one record). A connection that implements
// Unwrapper (the replaying connection returned by package detect) is first
// drained through its Read until its replay buffer is empty and then
// replaced by the connection it wraps, so a detected TCP connection still
// reaches splice.
//
// # The event loop
//
// Join parks two goroutines per joined connection in Go's poller, which
// costs at least 4 KiB of stack each once they have done any I/O, and Go's
// poller does not report EPOLLRDHUP, so every short read must be followed by
// a read that says EAGAIN before the goroutine may park. Loop removes both:
// on Linux it takes the two sockets out of Go's poller (a dup of each, then
// Close of the net.Conn) and registers them once, edge-triggered for reading
// and writing, in the epoll set of one of its workers. A worker is one
// goroutine; its epoll set is itself registered in Go's poller, so it parks
// like any goroutine waiting on a socket. On a readiness edge it reads into
// its one buffer and writes to the other socket at once; a short read needs
// no EAGAIN read (a FIN or a reset shows as EPOLLRDHUP or EPOLLHUP). A write
// that cannot finish keeps the rest in a pooled buffer until the
// destination's EPOLLOUT edge. A read that fills the buffer switches the
// direction to splice(2) through a pipe held only while bytes are in it. An
// idle joined connection costs its two sockets and a struct of about 300
// bytes: no goroutine, no buffer, no pipe. StartDial also connects the
// upstream socket itself (a non-blocking connect the loop waits for), and
// ServeDial has the workers accept too, so that a plain TCP relay never
// makes a net.Conn or starts a goroutine per connection.
// Other pairs (TLS, pipes) and other systems go to Joiner.Join in a
// goroutine.
//
// # Ending
//
// A clean end of stream (EOF) on one side's read becomes CloseWrite on the
// other side, and the other direction keeps flowing until it ends too. A
// reset (or any other error) on one side is propagated as a reset
// (SO_LINGER 0, then close) to the other side, never as a clean close. An
// idle timeout (no byte in either direction), a total lifetime and the
// cancellation of the context end the join too. Join always closes both
// connections before it returns and no goroutine it started outlives it;
// Loop calls the join's done function once both are closed, and Loop.Close
// ends every join and waits for the workers.
//
// Stats says how many bytes moved each way, how long the join lasted, which
// side ended first and how; Errno classifies the error the way Linkerd's
// tcp_close_total{errno} label does.
package splice
