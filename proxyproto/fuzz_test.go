package proxyproto_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/sniffsplice/sniff/proxyproto"
)

// FuzzParse: Parse never panics; a header it accepts is accepted again from
// exactly its own bytes, every shorter prefix of those is ErrTruncated, and
// the writer writes it back into bytes that parse to the same header. The
// seed corpus (testdata/fuzz/FuzzParse) holds headers of every version,
// command, transport and TLV, HAProxy's own, and broken ones.
func FuzzParse(f *testing.F) {
	for _, s := range []string{hdrV1, hdrV2, "PROXY UNKNOWN\r\n", v2(0x20, 0, "")} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		h, n, err := proxyproto.Parse(in)
		if err != nil {
			var e *proxyproto.Error
			if !errors.As(err, &e) || h != nil || n != 0 {
				t.Fatalf("error %v (%T) with header %v, length %d", err, err, h, n)
			}
			return
		}
		if n <= 0 || n > len(in) {
			t.Fatalf("length %d of %d bytes", n, len(in))
		}
		again, n2, err := proxyproto.Parse(in[:n])
		if err != nil || n2 != n {
			t.Fatalf("its own %d bytes: %v, %d", n, err, n2)
		}
		if again.String() != h.String() {
			t.Fatalf("%v then %v", h, again)
		}
		for i := range n {
			if _, _, err := proxyproto.Parse(in[:i]); !errors.Is(err, proxyproto.ErrTruncated) {
				t.Fatalf("prefix of %d bytes of a %d-byte header: %v", i, n, err)
			}
		}
		wire, err := h.Format()
		if err != nil {
			if id := h.UniqueID(); len(id) > 128 {
				return // Parse takes a longer unique ID than the writer writes
			}
			t.Fatalf("the writer refuses %v: %v", h, err)
		}
		back, n3, err := proxyproto.Parse(wire)
		if err != nil || n3 != len(wire) {
			t.Fatalf("writer's %q: %v, %d", wire, err, n3)
		}
		want := expected(*h, wire)
		if back.String() != want.String() || back.Source != want.Source || back.Destination != want.Destination ||
			back.UnixSource != want.UnixSource || back.UnixDestination != want.UnixDestination || len(back.TLVs) != len(want.TLVs) {
			t.Fatalf("%v written as %q parsed as %v", want, wire, back)
		}
		for i := range want.TLVs {
			if back.TLVs[i].Type != want.TLVs[i].Type || !bytes.Equal(back.TLVs[i].Value, want.TLVs[i].Value) {
				t.Fatalf("TLV %d: %v, want %v", i, back.TLVs[i], want.TLVs[i])
			}
		}
	})
}

// FuzzReadHeader: ReadHeader on a pipe, the bytes cut in two writes at a
// fuzzed point, agrees with Parse: the same header and exactly the bytes
// after it, all the bytes when there is none, an error when Parse finds
// one.
func FuzzReadHeader(f *testing.F) {
	for _, s := range []string{hdrV1 + "data", hdrV2 + "data", "GET / HTTP/1.1\r\n", "PROXY TCP4 x"} {
		f.Add([]byte(s), uint8(7))
	}
	f.Fuzz(func(t *testing.T, in []byte, cut uint8) {
		if len(in) == 0 {
			return
		}
		k := int(cut) % len(in)
		c, s := net.Pipe()
		defer s.Close()
		sent := make(chan struct{})
		go func() {
			defer close(sent)
			defer c.Close()
			if k > 0 {
				if _, err := c.Write(in[:k]); err != nil {
					return
				}
			}
			_, _ = c.Write(in[k:])
		}()
		r := proxyproto.Reader{Default: proxyproto.Allow, Timeout: 5 * time.Second}
		conn, got, err := r.ReadHeader(context.Background(), s)
		h, n, perr := proxyproto.Parse(in)
		switch {
		case perr == nil:
			if err != nil || got == nil || got.String() != h.String() {
				t.Fatalf("Parse: %v; ReadHeader: %v, %v", h, got, err)
			}
		case errors.Is(perr, proxyproto.ErrNoHeader):
			if err != nil || got != nil {
				t.Fatalf("no header, but ReadHeader: %v, %v", got, err)
			}
		case errors.Is(perr, proxyproto.ErrTruncated):
			// ReadHeader saw the pipe close: a truncated header, or no
			// header when the bytes might be something else.
			if got != nil {
				t.Fatalf("truncated, but ReadHeader: %v", got)
			}
		default:
			if err == nil {
				t.Fatalf("Parse: %v; ReadHeader took it", perr)
			}
		}
		if err == nil {
			rest, rerr := io.ReadAll(conn)
			if rerr != nil || !bytes.Equal(rest, in[n:]) {
				t.Fatalf("after the header: %q (%v), want %q", rest, rerr, in[n:])
			}
		} else {
			conn.Close()
		}
		<-sent
	})
}
