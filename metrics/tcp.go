package metrics

import "sync/atomic"

// ConnLabels are the labels of a connection's metrics, resolved once when
// the connection is opened. Every field takes a bounded set of values.
type ConnLabels struct {
	Direction Direction
	// Protocol is the detected or declared protocol, e.g. string(detect.HTTP1),
	// or "opaque" for a connection forwarded without detection. "" is
	// recorded as "unknown". Distinct values are capped (Config.MaxLabelValues).
	Protocol string
	TLS      TLSStatus
}

// tcpSeries holds the counters of one label combination. The counters that
// every chunk of every connection touches sit on cache lines of their own.
type tcpSeries struct {
	opened atomic.Uint64
	_      [56]byte
	read   atomic.Uint64
	_      [56]byte
	write  atomic.Uint64
	_      [56]byte
	closed [maxErrnos]atomic.Uint64 // by errno index
	errnos *errnoTable
	dur    histSeries // lifetimes reported by CloseStats
}

// Conn is the handle of one open connection: it updates the counters of the
// connection's label set without looking the labels up again. Its zero value
// (returned by a nil Registry) does nothing. Conn is a small value; copy it
// freely. Call Close exactly once.
//
// Conn implements splice.Observer (see Transferred), so it can be passed
// straight to splice.Joiner.Join.
type Conn struct {
	s *tcpSeries
}

// OpenConn counts a newly opened connection (tcp_open_total,
// tcp_open_connections) and returns its handle.
func (r *Registry) OpenConn(l ConnLabels) Conn {
	if r == nil {
		return Conn{}
	}
	l.Direction = l.Direction.norm()
	if l.TLS > TLSOpaque {
		l.TLS = TLSFalse
	}
	if l.Protocol == "" {
		l.Protocol = "unknown"
	}
	var s *tcpSeries
	es := r.tcp.load()
	for i := range es {
		if e := &es[i]; e.k.Direction == l.Direction && e.k.TLS == l.TLS && e.k.Protocol == l.Protocol {
			s = e.v
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

// Read counts n bytes read from the connection's peer (tcp_read_bytes_total).
func (c Conn) Read(n int64) {
	if c.s != nil && n > 0 {
		c.s.read.Add(uint64(n))
	}
}

// Write counts n bytes written to the connection's peer (tcp_write_bytes_total).
func (c Conn) Write(n int64) {
	if c.s != nil && n > 0 {
		c.s.write.Add(uint64(n))
	}
}

// Close counts the connection's end (tcp_close_total{errno}). errno is ""
// for a clean close, else a short error name such as splice.Errno returns
// ("ECONNRESET", "ETIMEDOUT", ...). Distinct errno values are capped.
func (c Conn) Close(errno string) {
	if c.s != nil {
		c.s.closed[c.s.errnos.index(errno)].Add(1)
	}
}

// Valid reports whether c counts anything (false for the zero Conn).
func (c Conn) Valid() bool { return c.s != nil }
