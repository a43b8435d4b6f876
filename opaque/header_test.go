package opaque

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
)

func mustHex(t testing.TB, s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	require.NoError(t, err)
	return b
}

// TestHeaderGolden checks the exact bytes against the format worked out by
// hand from Linkerd's header.proto.
func TestHeaderGolden(t *testing.T) {
	bound(t)
	cases := []struct {
		name string
		h    Header
		msg  string // hex of the protobuf message
	}{
		// field 1 varint (0x08), 3306 = 0xCEA -> varint EA 19.
		{"port 3306", Header{Port: 3306}, "08 ea 19"},
		{"port 1", Header{Port: 1}, "08 01"},
		{"port 65535", Header{Port: 65535}, "08 ff ff 03"},
		// field 2 bytes (0x12), length 19; field 3 bytes (0x1a) length 2 holding field 2 (http2, 0x12) length 0.
		{"name and HTTP/2", Header{Port: 4040, Name: "foo.bar.example.com", SessionProtocol: SessionHTTP2},
			"08 c8 1f 12 13" + hex.EncodeToString([]byte("foo.bar.example.com")) + "1a 02 12 00"},
		{"HTTP/1", Header{Port: 80, SessionProtocol: SessionHTTP1}, "08 50 1a 02 0a 00"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			msg := mustHex(t, c.msg)
			want := append([]byte(headerPreface), binary.BigEndian.AppendUint32(nil, uint32(len(msg)))...)
			want = append(want, msg...)
			got, err := c.h.MarshalBinary()
			require.NoError(t, err)
			assert.Equal(t, want, got)
			assert.Equal(t, len(want), c.h.EncodedLen())

			var back Header
			require.NoError(t, back.UnmarshalBinary(got))
			assert.Equal(t, c.h, back)
		})
	}

	b, err := Header{Port: 3306}.MarshalBinary()
	require.NoError(t, err)
	require.Len(t, b, 30, "the header for port 3306 alone is exactly 30 bytes")
	assert.Equal(t, "transport.l5d.io/v1\r\n\r\n\x00\x00\x00\x03\x08\xea\x19", string(b))
}

// headerDescriptor builds Linkerd's transport.l5d.io Header message type from
// its .proto definition, so that the real protobuf runtime can check our
// encoding both ways.
func headerDescriptor(t testing.TB) protoreflect.MessageDescriptor {
	s := proto.String
	msgType := descriptorpb.FieldDescriptorProto_TYPE_MESSAGE.Enum()
	opt := descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum()
	fdp := &descriptorpb.FileDescriptorProto{
		Name:    s("transport-header.proto"),
		Package: s("transport.l5d.io"),
		Syntax:  s("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{
			{
				Name: s("Header"),
				Field: []*descriptorpb.FieldDescriptorProto{
					{Name: s("port"), Number: proto.Int32(1), Label: opt, Type: descriptorpb.FieldDescriptorProto_TYPE_INT32.Enum(), JsonName: s("port")},
					{Name: s("name"), Number: proto.Int32(2), Label: opt, Type: descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum(), JsonName: s("name")},
					{Name: s("session_protocol"), Number: proto.Int32(3), Label: opt, Type: msgType, TypeName: s(".transport.l5d.io.SessionProtocol"), JsonName: s("sessionProtocol")},
				},
			},
			{
				Name:       s("SessionProtocol"),
				NestedType: []*descriptorpb.DescriptorProto{{Name: s("Http1")}, {Name: s("Http2")}},
				Field: []*descriptorpb.FieldDescriptorProto{
					{Name: s("http1"), Number: proto.Int32(1), Label: opt, Type: msgType, TypeName: s(".transport.l5d.io.SessionProtocol.Http1"), OneofIndex: proto.Int32(0), JsonName: s("http1")},
					{Name: s("http2"), Number: proto.Int32(2), Label: opt, Type: msgType, TypeName: s(".transport.l5d.io.SessionProtocol.Http2"), OneofIndex: proto.Int32(0), JsonName: s("http2")},
				},
				OneofDecl: []*descriptorpb.OneofDescriptorProto{{Name: s("kind")}},
			},
		},
	}
	fd, err := protodesc.NewFile(fdp, nil)
	require.NoError(t, err)
	return fd.Messages().ByName("Header")
}

func TestHeaderAgainstProtobufRuntime(t *testing.T) {
	bound(t)
	md := headerDescriptor(t)
	spd := md.Fields().ByName("session_protocol").Message()
	for _, h := range []Header{
		{Port: 3306},
		{Port: 8080, Name: "web.default.svc.cluster.local"},
		{Port: 65535, Name: "a", SessionProtocol: SessionHTTP1},
		{Port: 443, Name: "gw.example.com.", SessionProtocol: SessionHTTP2},
	} {
		// The runtime's encoding decodes to h.
		m := dynamicpb.NewMessage(md)
		m.Set(md.Fields().ByName("port"), protoreflect.ValueOfInt32(int32(h.Port)))
		if h.Name != "" {
			m.Set(md.Fields().ByName("name"), protoreflect.ValueOfString(h.Name))
		}
		if h.SessionProtocol != SessionNone {
			sp := dynamicpb.NewMessage(spd)
			kind := spd.Fields().ByName("http1")
			if h.SessionProtocol == SessionHTTP2 {
				kind = spd.Fields().ByName("http2")
			}
			sp.Set(kind, protoreflect.ValueOfMessage(dynamicpb.NewMessage(kind.Message())))
			m.Set(md.Fields().ByName("session_protocol"), protoreflect.ValueOfMessage(sp))
		}
		theirs, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
		require.NoError(t, err)
		got, err := decodeMessage(theirs)
		require.NoError(t, err)
		assert.Equal(t, h, got)

		// Our encoding is byte-for-byte the runtime's, and it parses back.
		ours, err := h.MarshalBinary()
		require.NoError(t, err)
		assert.Equal(t, theirs, ours[fixedLen:], "%+v", h)
		back := dynamicpb.NewMessage(md)
		require.NoError(t, proto.Unmarshal(ours[fixedLen:], back))
		assert.True(t, proto.Equal(m, back))
	}
}

func TestHeaderRoundTripReaders(t *testing.T) {
	bound(t)
	app := []byte("application bytes that follow the header")
	for _, h := range []Header{
		{Port: 3306},
		{Port: 80, Name: "web.ns.svc.cluster.local", SessionProtocol: SessionHTTP1},
		{Port: 50051, Name: "grpc.example.com", SessionProtocol: SessionHTTP2},
		{Port: 9, Name: strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 61)},
	} {
		var buf bytes.Buffer
		require.NoError(t, WriteHeader(&buf, h))
		enc := buf.Bytes()
		wrap := map[string]func(io.Reader) io.Reader{
			"plain":    func(r io.Reader) io.Reader { return r },
			"one byte": iotest.OneByteReader,
			"half":     iotest.HalfReader,
		}
		for name, w := range wrap {
			t.Run(name, func(t *testing.T) {
				src := bytes.NewReader(append(append([]byte(nil), enc...), app...))
				got, err := ReadHeader(w(src))
				require.NoError(t, err)
				assert.Equal(t, h, got)
				rest, err := io.ReadAll(src)
				require.NoError(t, err)
				assert.Equal(t, app, rest, "ReadHeader must not consume a byte after the header")
			})
		}
		// A reader that returns its final data together with io.EOF.
		got, err := ReadHeader(iotest.DataErrReader(bytes.NewReader(enc)))
		require.NoError(t, err)
		assert.Equal(t, h, got)
	}
}

func TestHeaderWriteErrors(t *testing.T) {
	bound(t)
	cases := []struct {
		h    Header
		kind error
	}{
		{Header{}, ErrBadPort},
		{Header{Port: 80, Name: "not a name"}, ErrBadName},
		{Header{Port: 80, Name: strings.Repeat("a", 64) + ".com"}, ErrBadName},
		{Header{Port: 80, Name: strings.Repeat("a.", 127) + "b"}, ErrBadName}, // 255 > 253
		{Header{Port: 80, SessionProtocol: 7}, ErrBadProtobuf},
	}
	for _, c := range cases {
		var buf bytes.Buffer
		err := WriteHeader(&buf, c.h)
		assert.ErrorIs(t, err, c.kind, "%+v", c.h)
		assert.Zero(t, buf.Len(), "nothing written for an invalid header")
		_, err = c.h.AppendBinary(nil)
		assert.ErrorIs(t, err, c.kind)
	}
	err := WriteHeader(shortWriter{}, Header{Port: 80})
	assert.ErrorIs(t, err, io.ErrShortWrite)
	var he *HeaderError
	require.ErrorAs(t, err, &he)
	assert.Equal(t, RejectIO, he.Reason)
}

type shortWriter struct{}

func (shortWriter) Write(p []byte) (int, error) { return len(p) / 2, nil }

func encodeRaw(msg []byte) []byte {
	b := append([]byte(headerPreface), binary.BigEndian.AppendUint32(nil, uint32(len(msg)))...)
	return append(b, msg...)
}

func TestReadHeaderErrors(t *testing.T) {
	bound(t)
	good, err := Header{Port: 3306, Name: "db.example.com"}.MarshalBinary()
	require.NoError(t, err)
	varint := func(v uint64) []byte { return protowire.AppendVarint([]byte{0x08}, v) }
	name := func(n string) []byte { return protowire.AppendString([]byte{0x12}, n) }
	cases := []struct {
		name   string
		in     []byte
		kind   error
		reason RejectReason
	}{
		{"empty", nil, ErrShortHeader, RejectShort},
		{"http request", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), ErrNoPreface, RejectNoPreface},
		{"first byte", []byte("x"), ErrNoPreface, RejectNoPreface},
		{"wrong version", []byte("transport.l5d.io/v2\r\n\r\n\x00\x00\x00\x02\x08\x01"), ErrNoPreface, RejectNoPreface},
		{"preface only", []byte(headerPreface), ErrShortHeader, RejectShort},
		{"half the length", []byte(headerPreface + "\x00\x00"), ErrShortHeader, RejectShort},
		{"message cut", good[:len(good)-1], ErrShortHeader, RejectShort},
		{"too long", []byte(headerPreface + "\x00\x00\x04\x01"), ErrHeaderTooLong, RejectTooLong},
		{"absurd length", []byte(headerPreface + "\xff\xff\xff\xff"), ErrHeaderTooLong, RejectTooLong},
		{"truncated varint", encodeRaw([]byte{0x08, 0xff}), ErrBadProtobuf, RejectBadProtobuf},
		{"bad tag", encodeRaw([]byte{0x00}), ErrBadProtobuf, RejectBadProtobuf},
		{"port wire type", encodeRaw([]byte{0x0a, 0x00}), ErrBadProtobuf, RejectBadProtobuf},
		{"name wire type", encodeRaw([]byte{0x08, 0x01, 0x10, 0x01}), ErrBadProtobuf, RejectBadProtobuf},
		{"name overruns", encodeRaw([]byte{0x08, 0x01, 0x12, 0x05, 'a'}), ErrBadProtobuf, RejectBadProtobuf},
		{"session kind wire type", encodeRaw([]byte{0x08, 0x01, 0x1a, 0x02, 0x08, 0x00}), ErrBadProtobuf, RejectBadProtobuf},
		{"session inner garbage", encodeRaw([]byte{0x08, 0x01, 0x1a, 0x03, 0x0a, 0x01, 0x00}), ErrBadProtobuf, RejectBadProtobuf},
		{"no port", encodeRaw(nil), ErrBadPort, RejectBadPort},
		{"port 0", encodeRaw(varint(0)), ErrBadPort, RejectBadPort},
		{"port 65536", encodeRaw(varint(65536)), ErrBadPort, RejectBadPort},
		{"port -1", encodeRaw(varint(^uint64(0))), ErrBadPort, RejectBadPort},
		{"port 2^32+80", encodeRaw(varint(1<<32 + 80)), ErrBadPort, RejectBadPort}, // int32 truncation is 80 ... see below
		{"name with space", encodeRaw(append(varint(80), name("a b")...)), ErrBadName, RejectBadName},
		{"name with dash start", encodeRaw(append(varint(80), name("-a.com")...)), ErrBadName, RejectBadName},
		{"name empty label", encodeRaw(append(varint(80), name("a..com")...)), ErrBadName, RejectBadName},
		{"name not utf8", encodeRaw(append(varint(80), name("\xff")...)), ErrBadName, RejectBadName},
		{"name too long", encodeRaw(append(varint(80), name(strings.Repeat("a.", 127)+"b")...)), ErrBadName, RejectBadName},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			obs := &countingObserver{}
			codec := HeaderCodec{Observer: obs}
			src := bytes.NewReader(append(append([]byte(nil), c.in...), "tail"...))
			if c.name == "empty" || c.name == "message cut" || strings.HasPrefix(c.name, "preface") || strings.HasPrefix(c.name, "half") {
				src = bytes.NewReader(c.in) // EOF right after the input
			}
			h, _, err := codec.Read(src)
			if c.name == "port 2^32+80" {
				// protobuf int32 fields keep the low 32 bits, as prost and
				// the Go runtime do: this is port 80, not an error.
				require.NoError(t, err)
				assert.Equal(t, uint16(80), h.Port)
				return
			}
			require.Error(t, err)
			assert.Zero(t, h)
			assert.ErrorIs(t, err, c.kind)
			var he *HeaderError
			require.ErrorAs(t, err, &he)
			assert.Equal(t, c.reason, he.Reason)
			assert.Equal(t, map[RejectReason]int{c.reason: 1}, obs.rejected)
			if c.reason == RejectShort && c.name != "empty" {
				assert.ErrorIs(t, err, io.ErrUnexpectedEOF, "short reads also match io.ErrUnexpectedEOF")
			}
			if c.reason == RejectTooLong {
				assert.Equal(t, 4, src.Len(), "only the preface and length are consumed before rejecting")
			}
			if c.reason == RejectNoPreface {
				assert.NotEmpty(t, he.Read)
				assert.True(t, bytes.HasPrefix(c.in, he.Read) || bytes.HasPrefix(append(c.in, "tail"...), he.Read))
			}
		})
	}
}

func TestReadHeaderEmptyEOF(t *testing.T) {
	bound(t)
	_, err := ReadHeader(bytes.NewReader(nil))
	assert.ErrorIs(t, err, ErrShortHeader)
	assert.ErrorIs(t, err, io.EOF, "nothing at all read: the EOF is io.EOF")
}

// TestReadHeaderMaxLen checks that the limit is configurable and that a
// header longer than the default pool buffer still reads.
func TestReadHeaderMaxLen(t *testing.T) {
	bound(t)
	msg := protowire.AppendVarint([]byte{0x08}, 80)
	msg = protowire.AppendTag(msg, 99, protowire.BytesType) // an unknown field, skipped
	msg = protowire.AppendBytes(msg, make([]byte, 3000))
	in := encodeRaw(msg)
	_, err := ReadHeader(bytes.NewReader(in))
	assert.ErrorIs(t, err, ErrHeaderTooLong)
	c := HeaderCodec{MaxLen: 4096}
	h, n, err := c.Read(bytes.NewReader(in))
	require.NoError(t, err)
	assert.Equal(t, Header{Port: 80}, h)
	assert.Equal(t, len(in), n)
}

// TestReadHeaderNoPrefaceIsPrompt shows that a peer that is not sending a
// header is turned away at its first wrong byte, not after a timeout.
func TestReadHeaderNoPrefaceIsPrompt(t *testing.T) {
	bound(t)
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go a.Write([]byte("GET ")) // and then nothing: a client waiting for a reply
	done := make(chan error, 1)
	go func() { _, err := ReadHeader(b); done <- err }()
	select {
	case err := <-done:
		assert.ErrorIs(t, err, ErrNoPreface)
		var he *HeaderError
		require.ErrorAs(t, err, &he)
		assert.Equal(t, "GET ", string(he.Read))
	case <-time.After(10 * time.Second):
		t.Fatal("ReadHeader waited for more bytes after a wrong first byte")
	}
}

func TestReadHeaderContextTimeoutAndCancel(t *testing.T) {
	bound(t)
	t.Run("context deadline", func(t *testing.T) {
		a, b := net.Pipe()
		defer a.Close()
		defer b.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		obs := &countingObserver{}
		c := HeaderCodec{Observer: obs}
		_, _, err := c.ReadContext(ctx, b)
		require.Error(t, err)
		var he *HeaderError
		require.ErrorAs(t, err, &he)
		assert.Equal(t, RejectTimeout, he.Reason)
		assert.True(t, errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded), err)
		assert.Equal(t, map[RejectReason]int{RejectTimeout: 1}, obs.rejected)
		// The deadline was cleared: the conn is usable afterwards.
		go a.Write([]byte("x"))
		buf := make([]byte, 1)
		_, err = io.ReadFull(b, buf)
		require.NoError(t, err)
	})
	t.Run("codec timeout", func(t *testing.T) {
		a, b := net.Pipe()
		defer a.Close()
		defer b.Close()
		c := HeaderCodec{Timeout: 50 * time.Millisecond}
		_, _, err := c.ReadContext(context.Background(), b)
		assert.ErrorIs(t, err, os.ErrDeadlineExceeded)
		var he *HeaderError
		require.ErrorAs(t, err, &he)
		assert.Equal(t, RejectTimeout, he.Reason)
	})
	t.Run("cancel", func(t *testing.T) {
		a, b := net.Pipe()
		defer a.Close()
		defer b.Close()
		ctx, cancel := context.WithCancel(context.Background())
		go a.Write([]byte(headerPreface[:5])) // part of a header, then silence
		time.AfterFunc(50*time.Millisecond, cancel)
		_, err := ReadHeaderContext(ctx, b)
		assert.ErrorIs(t, err, context.Canceled)
		var he *HeaderError
		require.ErrorAs(t, err, &he)
		assert.Equal(t, RejectCanceled, he.Reason)
	})
	t.Run("already canceled", func(t *testing.T) {
		a, b := net.Pipe()
		defer a.Close()
		defer b.Close()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := ReadHeaderContext(ctx, b)
		assert.ErrorIs(t, err, context.Canceled)
	})
	t.Run("success clears deadline", func(t *testing.T) {
		a, b := net.Pipe()
		defer a.Close()
		defer b.Close()
		go WriteHeader(a, Header{Port: 6379})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		h, err := ReadHeaderContext(ctx, b)
		require.NoError(t, err)
		assert.Equal(t, uint16(6379), h.Port)
	})
}

// TestHeaderLoopbackTCP sends a header and 4 MiB of application bytes over a
// real loopback TCP connection; the receiver reads the header from the
// *net.TCPConn itself (nothing wraps it, so splice still applies) and then
// every application byte arrives intact.
func TestHeaderLoopbackTCP(t *testing.T) {
	bound(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()

	payload := make([]byte, 4<<20)
	_, _ = rand.Read(payload)
	want := Header{Port: 5432, Name: "postgres.db.svc.cluster.local"}

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := net.Dial("tcp", ln.Addr().String())
		if !assert.NoError(t, err) {
			return
		}
		defer c.Close()
		// The header and the first application bytes in one write, so they
		// share TCP segments: the reader must split them exactly.
		b, err := want.AppendBinary(nil)
		assert.NoError(t, err)
		b = append(b, payload[:1000]...)
		_, err = c.Write(b)
		assert.NoError(t, err)
		_, err = c.Write(payload[1000:])
		assert.NoError(t, err)
		assert.NoError(t, c.(*net.TCPConn).CloseWrite())
	}()

	conn, err := ln.Accept()
	require.NoError(t, err)
	defer conn.Close()
	tcp, ok := conn.(*net.TCPConn)
	require.True(t, ok)

	obs := &countingObserver{}
	codec := HeaderCodec{Observer: obs, Timeout: 30 * time.Second}
	got, n, err := codec.ReadContext(context.Background(), tcp)
	require.NoError(t, err)
	assert.Equal(t, want, got)
	assert.Equal(t, want.EncodedLen(), n)
	assert.Equal(t, 1, obs.read)

	// Hand the very same *net.TCPConn on: io.Copy into another TCP conn
	// would use splice(2); here we check the bytes.
	var rest bytes.Buffer
	_, err = io.Copy(&rest, tcp)
	require.NoError(t, err)
	wg.Wait()
	require.Equal(t, len(payload), rest.Len())
	assert.True(t, bytes.Equal(payload, rest.Bytes()), "application bytes after the header differ")
}

func TestHeaderObserverWritten(t *testing.T) {
	bound(t)
	obs := &countingObserver{}
	c := HeaderCodec{Observer: obs}
	var buf bytes.Buffer
	n, err := c.Write(&buf, Header{Port: 3306})
	require.NoError(t, err)
	assert.Equal(t, 30, n)
	_, err = c.Write(&buf, Header{})
	assert.ErrorIs(t, err, ErrBadPort)
	assert.Equal(t, 1, obs.written)
	assert.Equal(t, map[RejectReason]int{RejectBadPort: 1}, obs.rejected)
}

func TestRejectReasonStrings(t *testing.T) {
	bound(t)
	seen := map[string]bool{}
	for r := RejectNoPreface; r <= RejectIO; r++ {
		s := r.String()
		assert.NotContains(t, s, "RejectReason(")
		assert.False(t, seen[s], s)
		seen[s] = true
		err := &HeaderError{Reason: r}
		assert.NotEmpty(t, err.Error())
	}
	assert.Equal(t, "RejectReason(0)", RejectReason(0).String())
	// Past the last reason (the first value past the names table, and the
	// largest): a number, and the error text of an I/O error.
	for _, r := range []RejectReason{RejectIO + 1, 255} {
		assert.Equal(t, "RejectReason("+strconv.Itoa(int(r))+")", r.String())
		assert.Equal(t, (&HeaderError{Reason: RejectIO}).Error(), (&HeaderError{Reason: r}).Error())
	}
	assert.Equal(t, (&HeaderError{Reason: RejectIO}).Error(), (&HeaderError{}).Error())
	assert.NotEqual(t, (&HeaderError{Reason: RejectIO}).Error(), (&HeaderError{Reason: RejectCanceled}).Error())
	assert.Equal(t, "none", SessionNone.String())
	assert.Equal(t, "HTTP/2", SessionHTTP2.String())
}

func TestIsDNSName(t *testing.T) {
	bound(t)
	good := []string{"a", "a.b", "web.default.svc.cluster.local", "web.default.svc.cluster.local.", "x_y.example", "A-1.B-2", "1.2.3.4"}
	bad := []string{"", ".", "a..b", ".a", "-a", "a-", "a-.b", "a b", "a/b", "ü.com", strings.Repeat("a", 64), strings.Repeat("a.", 127) + "b",
		"a" + strings.Repeat("-", 62) + "b", "x.a" + strings.Repeat("-", 62) + "b"} // dashes count toward a label's 63
	good = append(good, "a"+strings.Repeat("-", 61)+"b", "x.a"+strings.Repeat("-", 61)+"b")
	for _, s := range good {
		assert.True(t, isDNSName(s), s)
	}
	for _, s := range bad {
		assert.False(t, isDNSName(s), s)
	}
}

type countingObserver struct {
	mu                  sync.Mutex
	written, read       int
	rejected            map[RejectReason]int
	writtenLen, readLen int
}

func (o *countingObserver) HeaderWritten(h Header, n int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.written++
	o.writtenLen += n
}

func (o *countingObserver) HeaderRead(h Header, n int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.read++
	o.readLen += n
}

func (o *countingObserver) HeaderRejected(r RejectReason) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.rejected == nil {
		o.rejected = map[RejectReason]int{}
	}
	o.rejected[r]++
}

// zeroReader reads 0 bytes and no error, 1,000 times, then fails: the codec
// gives up after 100 such reads, and one that read on (a planted bug) then
// fails the test at once instead of looping.
type zeroReader struct{ n int }

var errReadOn = errors.New("zeroReader: 1,000 reads of 0 bytes")

func (z *zeroReader) Read([]byte) (int, error) {
	if z.n++; z.n > 1000 {
		return 0, errReadOn
	}
	return 0, nil
}

func TestReadHeaderNoProgress(t *testing.T) {
	bound(t)
	_, err := ReadHeader(&zeroReader{})
	assert.ErrorIs(t, err, io.ErrNoProgress)
	// The message part goes through io.ReadFull, which also gives up.
	_, err = ReadHeader(io.MultiReader(strings.NewReader(headerPreface+"\x00\x00\x00\x03"), &zeroReader{}))
	assert.ErrorIs(t, err, io.ErrNoProgress)
}

// TestUnmarshalBinaryTrailing: bytes after the message that the length field
// announces are refused as bad protobuf, and the error says how many.
func TestUnmarshalBinaryTrailing(t *testing.T) {
	bound(t)
	full, err := Header{Port: 80}.MarshalBinary()
	require.NoError(t, err)
	for _, extra := range []int{1, 3} {
		var h Header
		err := h.UnmarshalBinary(append(append([]byte(nil), full...), make([]byte, extra)...))
		var he *HeaderError
		require.ErrorAs(t, err, &he)
		assert.Equal(t, RejectBadProtobuf, he.Reason)
		assert.Equal(t, strconv.Itoa(extra)+" bytes after the message", he.Detail)
	}
	var h Header
	require.NoError(t, h.UnmarshalBinary(full))
	assert.Equal(t, uint16(80), h.Port)
}

// lyingCountReader fills the buffer it is given on its second call and then
// says it read one byte more.
type lyingCountReader struct {
	b     []byte
	calls int
}

func (r *lyingCountReader) Read(p []byte) (int, error) {
	r.calls++
	switch r.calls {
	case 1:
		return copy(p, r.b[:2]), nil
	case 2:
		copy(p, r.b[2:])
		return len(p) + 1, nil
	}
	return 0, io.EOF
}

// TestReadHeaderInvalidCountAfterProgress: a Read count past the end of the
// buffer is refused after some bytes came in too, not only on the first read.
func TestReadHeaderInvalidCountAfterProgress(t *testing.T) {
	bound(t)
	full, err := Header{Port: 80}.MarshalBinary()
	require.NoError(t, err)
	var c HeaderCodec
	_, _, err = c.Read(&lyingCountReader{b: full})
	var he *HeaderError
	require.ErrorAs(t, err, &he)
	assert.Equal(t, RejectIO, he.Reason)
	assert.ErrorContains(t, err, "invalid Read count")
}

// ctxEndingConn ends its context inside Read, waits for ReadContext's
// wake-up deadline to land, then returns bytes that are no preface. It
// records the read deadlines set on it.
type ctxEndingConn struct {
	net.Conn
	cancel    context.CancelFunc
	woken     chan struct{}
	deadlines []time.Time
}

func (c *ctxEndingConn) SetReadDeadline(d time.Time) error {
	c.deadlines = append(c.deadlines, d)
	if d.Equal(aLongTimeAgo) {
		close(c.woken)
	}
	return nil
}

func (c *ctxEndingConn) Read(p []byte) (int, error) {
	c.cancel()
	select {
	case <-c.woken:
	case <-time.After(2 * time.Second):
		return 0, errors.New("the context's wake-up never came")
	}
	return copy(p, "GET / HTTP/1.1\r\n"), nil
}

// TestReadContextEndsWithOtherReason: when the context ends while Read
// fails for a reason of its own (here bytes that are no preface), that
// reason is kept (only a timeout, I/O or short error is the context's
// doing); and the wake-up deadline is cleared before ReadContext returns
// although the context had no deadline.
func TestReadContextEndsWithOtherReason(t *testing.T) {
	bound(t)
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	conn := &ctxEndingConn{Conn: a, cancel: cancel, woken: make(chan struct{})}
	var c HeaderCodec
	_, _, err := c.ReadContext(ctx, conn)
	var he *HeaderError
	require.ErrorAs(t, err, &he)
	assert.Equal(t, RejectNoPreface, he.Reason, "%v", err)
	require.NotEmpty(t, conn.deadlines)
	assert.True(t, conn.deadlines[len(conn.deadlines)-1].IsZero(), "deadlines set: %v", conn.deadlines)
}
