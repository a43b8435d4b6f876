package splice

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net"
	"testing"
	"time"
)

// blockLen is not a power of two, so that bytes moved out of order by any
// power-of-two chunk size do not match the expected stream.
const blockLen = 1<<20 + 13

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// block returns blockLen pseudo-random bytes for seed.
func block(seed uint64) []byte {
	r := rand.New(rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 1, 2, 3}))
	b := make([]byte, blockLen)
	for i := 0; i+8 <= len(b); i += 8 {
		v := r.Uint64()
		for k := range 8 {
			b[i+k] = byte(v >> (8 * k))
		}
	}
	return b
}

// sendStream writes n bytes of seed's stream in writes of at most chunk
// bytes and returns the CRC-32C of what it wrote.
func sendStream(w io.Writer, seed uint64, n int64, chunk int) (uint32, error) {
	return sendSchedule(w, seed, n, func(int) (int, time.Duration) { return chunk, 0 })
}

// sendSchedule is sendStream with the size of write i, and a pause before
// it, given by next(i).
func sendSchedule(w io.Writer, seed uint64, n int64, next func(i int) (int, time.Duration)) (uint32, error) {
	b := block(seed)
	var crc uint32
	var pos int64
	var k int64
	for i := 0; pos < n; {
		if k == 0 {
			c, pause := next(i)
			i++
			time.Sleep(pause)
			k = int64(c)
		}
		off := int(pos % blockLen)
		m := min(k, n-pos, int64(blockLen-off))
		k -= m
		p := b[off : off+int(m)]
		if _, err := w.Write(p); err != nil {
			return crc, fmt.Errorf("write at %d: %w", pos, err)
		}
		crc = crc32.Update(crc, castagnoli, p)
		pos += m
	}
	return crc, nil
}

// recvStream reads until EOF, checks every byte against seed's stream and
// that exactly n bytes came, and returns the CRC-32C of what it read.
func recvStream(r io.Reader, seed uint64, n int64) (uint32, error) {
	b := block(seed)
	buf := make([]byte, 256<<10)
	var crc uint32
	var pos int64
	for {
		k, err := r.Read(buf)
		p := buf[:k]
		crc = crc32.Update(crc, castagnoli, p)
		for len(p) > 0 {
			off := int(pos % blockLen)
			m := min(len(p), blockLen-off)
			if !bytes.Equal(p[:m], b[off:off+m]) {
				return crc, fmt.Errorf("stream differs near byte %d", pos)
			}
			p = p[m:]
			pos += int64(m)
		}
		if pos > n {
			return crc, fmt.Errorf("got %d bytes, want %d", pos, n)
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				if pos != n {
					return crc, fmt.Errorf("EOF after %d bytes, want %d", pos, n)
				}
				return crc, nil
			}
			return crc, fmt.Errorf("read at %d: %w", pos, err)
		}
	}
}

// exchange sends n bytes each way at once over the pipeline, half-closes
// both writers and checks both streams and their checksums.
func exchange(t testing.TB, client, server net.Conn, n int64, chunk int) {
	t.Helper()
	exchangeSchedule(t, client, server, n, func(int) (int, time.Duration) { return chunk, 0 })
}

// exchangeSchedule is exchange with writes sized and paced by next.
func exchangeSchedule(t testing.TB, client, server net.Conn, n int64, next func(i int) (int, time.Duration)) {
	t.Helper()
	type res struct {
		crc uint32
		err error
	}
	cSend, sSend, cRecv, sRecv := make(chan res, 1), make(chan res, 1), make(chan res, 1), make(chan res, 1)
	go func() {
		crc, err := sendSchedule(client, 1, n, next)
		if err == nil {
			err = client.(interface{ CloseWrite() error }).CloseWrite()
		}
		cSend <- res{crc, err}
	}()
	go func() {
		crc, err := sendSchedule(server, 2, n, next)
		if err == nil {
			err = server.(interface{ CloseWrite() error }).CloseWrite()
		}
		sSend <- res{crc, err}
	}()
	go func() { crc, err := recvStream(server, 1, n); sRecv <- res{crc, err} }()
	go func() { crc, err := recvStream(client, 2, n); cRecv <- res{crc, err} }()
	a, b, c, d := <-cSend, <-sSend, <-sRecv, <-cRecv
	for _, r := range []res{a, b, c, d} {
		if r.err != nil {
			t.Fatal(r.err)
		}
	}
	if a.crc != c.crc {
		t.Fatalf("client->server checksum: sent %08x, received %08x", a.crc, c.crc)
	}
	if b.crc != d.crc {
		t.Fatalf("server->client checksum: sent %08x, received %08x", b.crc, d.crc)
	}
}
