package metrics

import (
	"sync/atomic"

	"github.com/sniffsplice/sniff/opaque"
	"github.com/sniffsplice/sniff/splice"
)

// ConnLabels are the labels of a connection's metrics, resolved once when the connection is opened.
// Every field takes a bounded set of values. ConnLabelsFor fills them in from what a proxy knows
// about a connection.
type ConnLabels struct {
	Direction opaque.Direction
	// Protocol is the detected or declared protocol, e.g. string(detect.HTTP1), or "opaque" for a
	// connection forwarded without detection. "" is recorded as "unknown". Distinct values are
	// capped (Config.MaxLabelValues).
	Protocol string
	TLS      TLSStatus
}

// tcpSeries holds the counters of one label combination. The counters that every chunk of every
// connection touches sit on cache lines of their own.
type tcpSeries struct {
	opened atomic.Uint64
	_      [56]byte
	read   atomic.Uint64
	_      [56]byte
	write  atomic.Uint64
	_      [56]byte
	closed [maxErrnos]atomic.Uint64 // by errno index
	errnos *errnoTable
	dur    histSeries // lifetimes reported by End
}

// Conn is the handle of one open connection: it updates the counters of the connection's label set
// without looking the labels up again. Its zero value (returned by a nil Registry) does nothing.
// Conn is a small value; copy it freely. Call End exactly once.
type Conn struct {
	s *tcpSeries
}

// OpenConn counts a newly opened connection (tcp_open_total, tcp_open_connections) and returns its
// handle.
func (r *Registry) OpenConn(l ConnLabels) Conn {
	if r == nil {
		return Conn{}
	}
	l.Direction = norm(l.Direction)
	if l.TLS > TLSOpaque {
		l.TLS = TLSFalse
	}
	if l.Protocol == "" {
		l.Protocol = "unknown"
	}
	var s *tcpSeries
	es := r.tcp.load()
	for i := range es {
		if es[i].k == l {
			s = es[i].v
			break
		}
	}
	if s == nil {
		s = r.newTCP(l)
	}
	s.opened.Add(1)
	return Conn{s: s}
}

func (r *Registry) newTCP(l ConnLabels) *tcpSeries {
	capped := l
	capped.Protocol = r.protocols.intern(l.Protocol, r.maxValues())
	return r.tcp.create(l, capped, func(s *tcpSeries) { s.errnos = &r.errnos })
}

// AddRead counts n bytes read from the connection's peer (tcp_read_bytes_total). A splice join
// counts them itself through Observer.
func (c Conn) AddRead(n int64) {
	if c.s != nil && n > 0 {
		c.s.read.Add(uint64(n))
	}
}

// AddWritten counts n bytes written to the connection's peer (tcp_write_bytes_total).
func (c Conn) AddWritten(n int64) {
	if c.s != nil && n > 0 {
		c.s.write.Add(uint64(n))
	}
}

// End counts the connection's end from the statistics of its join: tcp_close_total with the errno
// of st.Err as splice.Errno names it ("" for a clean end, else e.g. "ECONNRESET"; distinct values
// are capped) and, when st.Duration is set, the connection's lifetime in
// tcp_connection_duration_seconds. A connection that was not joined by splice ends with a Stats
// holding only its error, e.g. End(splice.Stats{Err: err}).
//
//	st, _ := j.Join(ctx, accepted, upstream, mc.Observer())
//	mc.End(st)
func (c Conn) End(st splice.Stats) {
	if c.s == nil {
		return
	}
	if st.Duration > 0 {
		c.s.dur.observe(connDurationBounds, st.Duration)
	}
	c.s.closed[c.s.errnos.index(splice.Errno(st.Err))].Add(1)
}

// Observer returns a splice.Observer that counts the bytes of a connection joined as side a (the
// accepted connection): bytes of splice.AToB were read from it (tcp_read_bytes_total), bytes of
// splice.BToA written to it (tcp_write_bytes_total). It is nil for the zero Conn, so a disabled
// registry costs splice nothing. Use Reversed when the connection is side b.
func (c Conn) Observer() splice.Observer {
	if c.s == nil {
		return nil
	}
	return sideA(c)
}

// Reversed returns a splice.Observer for a connection joined as side b: splice.BToA counts as read,
// splice.AToB as written. It is nil for the zero Conn.
func (c Conn) Reversed() splice.Observer {
	if c.s == nil {
		return nil
	}
	return sideB(c)
}

// sideA and sideB are a Conn as the splice.Observer of side a or side b.
type (
	sideA Conn
	sideB Conn
)

func (c sideA) Transferred(d splice.Flow, n int64) {
	if d == splice.AToB {
		Conn(c).AddRead(n)
	} else {
		Conn(c).AddWritten(n)
	}
}

func (c sideB) Transferred(d splice.Flow, n int64) {
	if d == splice.BToA {
		Conn(c).AddRead(n)
	} else {
		Conn(c).AddWritten(n)
	}
}
