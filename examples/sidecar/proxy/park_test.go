package proxy

import (
	"cmp"
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/sniffsplice/sniff/detect"
	"github.com/sniffsplice/sniff/opaque"
	"github.com/sniffsplice/sniff/spiffe"
)

// TestParkedConnRoundTrip: what a parked connection keeps gives back its
// connection state and its event as they went in (the event's Duration
// counted to the moment it is rebuilt), for a connection like most (kept in
// the 128 bytes of the parkedConn alone: one allocation) and for each rare
// case (kept in x); and the Host a later request names replaces the last
// one, not the detected one.
func TestParkedConnRoundTrip(t *testing.T) {
	id, err := spiffe.ParseID("spiffe://mesh.test/ns/default/sa/web")
	if err != nil {
		t.Fatal(err)
	}
	l := &listener{p: &Proxy{}, connCtx: context.WithValue(context.Background(), listenerKey{}, "l")}
	dst := netip.MustParseAddrPort("127.0.0.1:8080")
	base := func() (h1Conn, Event) {
		h := h1Conn{ctx: l.connCtx, p: l.p, t: &pooledTransport{}, dir: opaque.Outbound, read: 120, written: 4000, host: "web:8080", wait: l, target: dst}
		ev := Event{Direction: opaque.Outbound, Dst: dst, Protocol: detect.HTTP1, Path: PathDetect, Duration: 3 * time.Second,
			Detect: detect.Result{Protocol: detect.HTTP1, Reason: detect.ReasonMatched, Bytes: 77, Duration: time.Millisecond,
				HTTP: detect.NewHTTPInfo("GET", "web:8080")}}
		return h, ev
	}
	now := time.Now()
	for _, tc := range []struct {
		name   string
		change func(*h1Conn, *Event)
		extra  bool // kept in x
	}{
		{"like most", func(*h1Conn, *Event) {}, false},
		{"host at the limit", func(h *h1Conn, ev *Event) {
			h.host = strings.Repeat("h", 255)
			ev.Detect.HTTP = detect.NewHTTPInfo("GET", h.host)
		}, false},
		{"no host detected", func(h *h1Conn, ev *Event) { ev.Detect.HTTP = detect.NewHTTPInfo("GET", "") }, false},
		{"another host since", func(h *h1Conn, ev *Event) { h.host = "api" }, true},
		{"declared, no detection", func(h *h1Conn, ev *Event) { ev.Path, ev.Detect = PathDeclared, detect.Result{} }, false},
		{"inbound from a peer", func(h *h1Conn, ev *Event) {
			h.dir, ev.Direction = opaque.Inbound, opaque.Inbound
			h.clientID, ev.PeerID, h.idLine = id, id, clientIDKey+": "+id.String()+"\r\n"
		}, true},
		{"errors", func(h *h1Conn, ev *Event) { h.firstErr, ev.Err = errors.New("up"), errors.New("x") }, true},
		{"context of its own", func(h *h1Conn, ev *Event) { h.ctx = context.WithValue(h.ctx, listenerKey{}, "own") }, true},
		{"target apart from Dst", func(h *h1Conn, ev *Event) { h.target = netip.MustParseAddrPort("10.0.0.1:80") }, true},
		{"TLS detected", func(h *h1Conn, ev *Event) { ev.Detect.TLS.LegacyVersion = 0x0303 }, true},
		{"a protocol of its own", func(h *h1Conn, ev *Event) { ev.Protocol = "ssh-custom" }, true},
		{"a WebDAV method", func(h *h1Conn, ev *Event) { ev.Detect.HTTP = detect.NewHTTPInfo("PROPFIND", "web:8080") }, true},
		{"more bytes than an int32", func(h *h1Conn, ev *Event) { ev.Detect.Bytes = 1 << 40 }, true},
	} {
		h, ev := base()
		tc.change(&h, &ev)
		pk := newParkedConn(&h, &ev, now)
		if got := pk.x != nil; got != tc.extra {
			t.Errorf("%s: kept in x: %v, want %v", tc.name, got, tc.extra)
		}
		if got := pk.conn(nil); got != h {
			t.Errorf("%s: connection state\n got %+v\nwant %+v", tc.name, got, h)
		}
		want := ev
		want.Duration += time.Second
		want.ClientBytes, want.ServerBytes = h.read, h.written
		if got := pk.event(now.Add(time.Second)); got != want {
			t.Errorf("%s: event\n got %+v\nwant %+v", tc.name, got, want)
		}

		// A later request: more bytes, another Host, an upstream error.
		h.read, h.written, h.host, h.firstErr = 200, 5000, "other:9090", cmp.Or(h.firstErr, errors.New("later"))
		pk.update(&h)
		if got := pk.conn(nil); got != h {
			t.Errorf("%s: connection state after update\n got %+v\nwant %+v", tc.name, got, h)
		}
		want.ClientBytes, want.ServerBytes = h.read, h.written
		if got := pk.event(now.Add(time.Second)); got != want {
			t.Errorf("%s: event after update (the detected Host stays)\n got %+v\nwant %+v", tc.name, got, want)
		}
	}
	h, ev := base()
	if n := testing.AllocsPerRun(50, func() { newParkedConn(&h, &ev, now) }); n != 1 {
		t.Errorf("newParkedConn allocates %v times for a connection like most, want 1", n)
	}
}

// TestParkedConnSize: what an idle keep-alive connection like most holds
// while parked stays in the 128-byte size class (it was 416 with its whole
// h1Conn and the event's fields, 704 with the detection result's HTTPInfo
// inline).
func TestParkedConnSize(t *testing.T) {
	if n := unsafe.Sizeof(parkedConn{}); n > 128 {
		t.Errorf("parkedConn is %d bytes, over 128", n)
	}
}
