package detect

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2FrameHeaderLen is the length of an HTTP/2 frame header.
const h2FrameHeaderLen = 9

// emptySettings is an HTTP/2 SETTINGS frame with no parameters on stream 0.
var emptySettings = [h2FrameHeaderLen]byte{0, 0, 0, byte(http2.FrameSettings), 0, 0, 0, 0, 0}

// h2Scan is what scanning the client's frames after the preface found.
type h2Scan struct {
	headers bool // the first HEADERS (with its CONTINUATIONs) was decoded
	grpc    bool // its content-type is application/grpc[+...|;...]
	failed  bool // a framing or HPACK error: stop refining, report HTTP/2
}

// scan decodes the frames after the preface in b with the x/net/http2 Framer and an HPACK decoder,
// from the start each time (b grows).
func (h *h2Scan) scan(b []byte) {
	h.headers, h.grpc = false, false
	if len(b) < len(h2Preface) {
		return
	}
	frames := b[len(h2Preface):]
	rd := bytes.NewReader(frames)
	fr := http2.NewFramer(io.Discard, rd)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	fr.MaxHeaderListSize = uint32(len(b)) * 8 // bounded by the peek limit anyway
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				h.failed = true
			}
			return
		}
		if f, ok := f.(*http2.MetaHeadersFrame); ok {
			h.headers = true
			h.grpc = isGRPCContentType(f.Fields)
			return
		}
	}
}

// isGRPCContentType reports whether the header fields carry a gRPC content-type: application/grpc,
// optionally followed by "+subtype" or ";params".
func isGRPCContentType(fields []hpack.HeaderField) bool {
	for _, f := range fields {
		if f.Name != "content-type" {
			continue
		}
		v := f.Value
		const p = "application/grpc"
		if len(v) < len(p) || !strings.EqualFold(v[:len(p)], p) {
			return false
		}
		return len(v) == len(p) || v[len(p)] == '+' || v[len(p)] == ';'
	}
	return false
}

// refineGRPC continues after an HTTP/2 preface match to tell gRPC from other HTTP/2. It reports
// whether it consumed bytes from c.
func (d *Detector) refineGRPC(s *session, c net.Conn, dl *deadlines, deadline time.Time, consumed bool) bool {
	wait := d.GRPCWait
	if wait <= 0 {
		wait = DefaultGRPCWait
	}
	waitUntil := time.Now().Add(wait)
	if !deadline.IsZero() && deadline.Before(waitUntil) {
		waitUntil = deadline
	}
	s.h2 = h2Scan{}

	if d.GRPC != GRPCActive {
		s.phase = phaseGRPCPassive
		if s.step() {
			return false
		}
		dl.setRead(waitUntil)
		s.stop = stopNone
		if consumed {
			s.readFill(c)
			return false
		}
		if !peekConn(s, c) {
			s.readFill(c)
			return true
		}
		return false
	}

	s.phase = phaseGRPCActive
	if !deadline.IsZero() {
		dl.setWrite(deadline)
	}
	if _, err := c.Write(emptySettings[:]); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			s.stop = stopDL
		} else {
			s.stop, s.err = stopErr, err
		}
		return false
	}
	// From here the client's ACK of our SETTINGS must be filtered out of what the caller reads,
	// wherever it comes (see handBack): detection does not wait for it.
	s.settingsSent = true
	if !consumed {
		s.n = 0 // the peeked bytes are still in the socket: read them again
	}
	s.stop = stopNone
	if s.n > 0 && s.step() {
		s.stop = stopDone
		return true
	}
	dl.setRead(waitUntil)
	s.readFill(c)
	return true
}

// errGRPCOff is what a [Mux] child listener for GRPC returns from Accept when the Mux's Detector
// has its GRPC mode off: no detection would ever report GRPC, so the listener would never get a
// connection, and its gRPC clients would reach whatever serves HTTP/2 instead.
var errGRPCOff = errors.New("detect: Mux.Match(GRPC) with Detector.GRPC off never matches: " +
	"set Detector.GRPC to GRPCActive or GRPCPassive, or Match HTTP2 alone")

// grpcOffListener returns, when protos names GRPC and d cannot detect it, a listener whose Accept
// fails at once with errGRPCOff (so the server given it stops with that error); else nil.
func grpcOffListener(d *Detector, addr net.Addr, protos []Protocol) net.Listener {
	if d.GRPC != GRPCOff || !slices.Contains(protos, GRPC) {
		return nil
	}
	return failedListener{addr: addr, err: errGRPCOff}
}

// failedListener is a listener whose Accept always fails with err.
type failedListener struct {
	addr net.Addr
	err  error
}

func (l failedListener) Accept() (net.Conn, error) {
	return nil, &net.OpError{Op: "accept", Net: l.addr.Network(), Addr: l.addr, Err: l.err}
}

func (l failedListener) Close() error   { return nil }
func (l failedListener) Addr() net.Addr { return l.addr }
