package proxy

import (
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

// TestCompactEvent: a parked connection's event comes back as it went in
// (its Duration counted to the moment it is rebuilt), whichever Host the
// connection's last request named; when that Host is the detected one, keeping
// the event allocates nothing.
func TestCompactEvent(t *testing.T) {
	id, err := spiffe.ParseID("spiffe://mesh.test/ns/default/sa/web")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, tc := range []struct {
		name, detected, last string
	}{
		{"same host", "web.default.svc:8080", "web.default.svc:8080"},
		{"another host since", "web.default.svc:8080", "api.default.svc"},
		{"no host detected", "", "web"},
		{"no request host", "web", ""},
		{"host at the limit", strings.Repeat("h", 255), strings.Repeat("h", 255)},
	} {
		ev := Event{
			Direction: opaque.Inbound, Dst: netip.MustParseAddrPort("127.0.0.1:8080"),
			Protocol: detect.HTTP1, Path: PathDetect, PeerID: id, Duration: 3 * time.Second,
			Err: errors.New("x"),
			Detect: detect.Result{Protocol: detect.HTTP1, Reason: detect.ReasonMatched, Bytes: 77,
				Duration: time.Millisecond, HTTP: detect.NewHTTPInfo("POST", tc.detected)},
		}
		pe := compactEvent(&ev, now, tc.last)
		got := pe.event(now.Add(time.Second))
		want := ev
		want.Duration += time.Second
		if got != want {
			t.Errorf("%s: got %+v, want %+v", tc.name, got, want)
		}
		if tc.detected == tc.last {
			if n := testing.AllocsPerRun(50, func() { pe = compactEvent(&ev, now, tc.last) }); n != 0 {
				t.Errorf("%s: compactEvent allocates %v times", tc.name, n)
			}
		}
	}
}

// TestParkedConnSize: what an idle keep-alive connection holds while parked
// stays in the 448-byte size class (it was 704 with the detection result's
// HTTPInfo inline).
func TestParkedConnSize(t *testing.T) {
	if n := unsafe.Sizeof(parkedConn{}); n > 448 {
		t.Errorf("parkedConn is %d bytes, over 448", n)
	}
}
