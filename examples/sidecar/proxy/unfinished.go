package proxy

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/sniffsplice/sniff/detect"
	"github.com/sniffsplice/sniff/opaque"
)

// Detection that ends undecided (the detection buffer filled, or the
// detection timeout passed) makes a connection opaque. When its first bytes
// could still be the start of an HTTP request, that would carry HTTP past the
// HTTP layer, and with it any header the client wrote: a forged
// l5d-client-id would reach the application. On ports not declared opaque
// such a connection is refused instead, as an HTTP server would refuse the
// request: 431 when the request line did not fit the detection buffer, 408
// when it did not arrive within the detection timeout.

// unfinished reports whether res is an undecided detection that may have
// been an HTTP request, on a proxy that serves HTTP at the HTTP layer (with
// NoHTTP, HTTP is carried as bytes anyway and no identity header is
// injected or stripped).
func (p *Proxy) unfinished(res *detect.Result) bool {
	return !p.NoHTTP && res.Protocol == detect.Unknown && res.Bytes > 0 &&
		(res.Reason == detect.ReasonLimit || res.Reason == detect.ReasonTimeout)
}

// refuseWait bounds the reads of refuseUnfinished: the bytes detection saw,
// which are already there, and the client's remaining bytes after the answer.
const refuseWait = 500 * time.Millisecond

// checkUnfinished is called with a connection whose detection ended as
// unfinished says. It reads the res.Bytes bytes detection saw; when they can
// still begin an HTTP/1 request line or the HTTP/2 preface, it answers 431 or
// 408, counts the answer on dir, closes c and returns an error matching
// ErrUnfinishedHTTP. Otherwise it returns c with those bytes put back in
// front, to be carried opaque. A read error closes c and is returned.
func (p *Proxy) checkUnfinished(c net.Conn, res *detect.Result, dir opaque.Direction) (net.Conn, error) {
	b := make([]byte, res.Bytes)
	c.SetReadDeadline(time.Now().Add(refuseWait))
	_, err := io.ReadFull(c, b)
	c.SetReadDeadline(time.Time{})
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("sidecar: reading back %d detected bytes: %w", len(b), err)
	}
	var r detect.Result
	if detect.HTTP1Matcher().Match(b, &r) != detect.NeedMore && detect.HTTP2Matcher().Match(b, &r) != detect.NeedMore {
		return detect.NewReplayConn(c, b), nil
	}
	status := http.StatusRequestHeaderFieldsTooLarge
	if res.Reason == detect.ReasonTimeout {
		status = http.StatusRequestTimeout
	}
	refuse(c, status)
	p.Metrics.ObserveHTTPError(dir, status, res.Duration)
	return nil, fmt.Errorf("%w: %d after %d bytes (%s)", ErrUnfinishedHTTP, status, res.Bytes, res.Reason)
}

// refuse writes an HTTP/1.1 answer with status, in net/http's format for the
// answers it writes itself, and closes c once the client has had a moment to
// read it (closing with unread bytes would reset the connection and could
// destroy the answer in flight).
func refuse(c net.Conn, status int) {
	text := strconv.Itoa(status) + " " + http.StatusText(status)
	c.SetWriteDeadline(time.Now().Add(refuseWait))
	io.WriteString(c, "HTTP/1.1 "+text+"\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: "+
		strconv.Itoa(len(text))+"\r\n\r\n"+text)
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	c.SetReadDeadline(time.Now().Add(refuseWait))
	io.Copy(io.Discard, io.LimitReader(c, 256<<10))
	c.Close()
}
