package detect_test

// Limits of the text and small binary matchers (HTTP/1, HTTP/2, SSH, PROXY,
// PostgreSQL): every input is decided by the matcher and by a reference
// written here from the format's definition, straight and slow, and both
// must agree on the verdict and on what is filled in Result. The inputs are
// valid messages with every field at, just below and just above its limit,
// every prefix of each, and each with every byte changed to the values at
// the edges of the character classes the parsers test. scripts/mutate runs
// these (TestLimits*) for each planted bug; see TESTING.md.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sniffsplice/sniff/detect"
	"github.com/sniffsplice/sniff/internal/testnet"
)

// edgeBytes are the byte values at the edges of the classes the matchers
// test: controls, SP, visible ASCII, digits, letters, hex letters, DEL and
// the high half.
var edgeBytes = []byte{
	0x00, 0x01, '\t', '\n', '\r', 0x1f, ' ', '!', '*', '-', '.', '/', '0', '1', '2', '3', '9', ':', ';', '@',
	'A', 'F', 'G', 'Z', '[', '`', 'a', 'f', 'g', 'z', '{', '~', 0x7f, 0x80, 0xfe, 0xff,
}

// variants returns in with each byte replaced by each edge byte and by its
// neighbours, skipping copies of in itself.
func variants(in []byte, yield func(pos int, b []byte) bool) {
	buf := make([]byte, len(in))
	for i := range in {
		vals := append(slices.Clone(edgeBytes), in[i]-1, in[i]+1)
		for _, v := range vals {
			if v == in[i] {
				continue
			}
			copy(buf, in)
			buf[i] = v
			if !yield(i, buf) {
				return
			}
		}
	}
}

// deadline bounds each step of a test's loops: check must be called at
// least every few seconds (a step takes milliseconds), or the test binary
// fails at once with every goroutine's stack. A planted bug that makes a
// parser loop inside one call then fails the run seconds after the call,
// well within three times the package's test time, instead of hanging it.
type deadline struct {
	tm *time.Timer
	d  time.Duration
}

func newDeadline(t *testing.T) *deadline {
	d := 3 * time.Second
	if testnet.RaceEnabled {
		d *= 6
	}
	name := t.Name()
	dl := &deadline{d: d}
	dl.tm = time.AfterFunc(d, func() { panic(fmt.Sprintf("%s: a step ran past %v: a parser loops", name, d)) })
	t.Cleanup(func() { dl.tm.Stop() })
	return dl
}

func (d *deadline) check(*testing.T) { d.tm.Reset(d.d) }

func (d *deadline) stop() { d.tm.Stop() }

// matchResult is what a matcher decided and filled, for comparisons.
type matchResult struct {
	v      detect.Verdict
	method string
	host   string
	proxy  uint8 // Result.PROXYVersion
}

func (m matchResult) String() string {
	return fmt.Sprintf("%v %q %q PROXY v%d", m.v, m.method, m.host, m.proxy)
}

// compareAll checks the matcher against ref on each input, every prefix of
// it, and every single-byte variant of it (and, when prefixes is set, every
// prefix of the variants of inputs of up to 64 bytes, and of longer ones
// the prefixes that end within 8 bytes after the changed byte).
func compareAll(t *testing.T, m detect.Matcher, ref func([]byte) matchResult, inputs []string, prefixes bool) {
	t.Helper()
	dl := newDeadline(t)
	defer dl.stop()
	check := func(b []byte) bool {
		var r detect.Result
		got := matchResult{v: m.Match(b, &r)}
		if got.v == detect.Match {
			got.method, got.host, got.proxy = r.HTTP.Method, r.HTTP.Host(), r.PROXYVersion
		} else if r != (detect.Result{}) {
			t.Errorf("%q: %v, and the Result was written", b, got.v)
			return false
		}
		want := ref(b)
		if got != want {
			t.Errorf("%q: got %v, want %v", b, got, want)
			return false
		}
		return true
	}
	for _, in := range inputs {
		dl.check(t)
		for i := 0; i <= len(in); i++ {
			if !check([]byte(in[:i])) {
				break
			}
		}
		variants([]byte(in), func(pos int, b []byte) bool {
			if !prefixes {
				return check(b)
			}
			from, to := 0, len(b)
			if len(b) > 64 {
				from, to = pos, min(pos+8, len(b))
			}
			for i := from; i <= to; i++ {
				if !check(b[:i]) {
					return false
				}
			}
			return check(b)
		})
	}
}

// --- HTTP/1 ---

var refMethods = []string{
	"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "QUERY",
	"PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "ACL", "BASELINE-CONTROL", "BIND",
	"CHECKIN", "CHECKOUT", "LABEL", "LINK", "MERGE", "MKACTIVITY", "MKCALENDAR", "MKREDIRECTREF",
	"MKWORKSPACE", "ORDERPATCH", "REBIND", "REPORT", "SEARCH", "UNBIND", "UNCHECKOUT", "UNLINK", "UPDATE",
	"UPDATEREDIRECTREF", "VERSION-CONTROL",
}

func isVisible(c byte) bool { return c >= 0x21 && c <= 0x7e }

// refHTTP1 decides a request line from RFC 9112's grammar as the matcher
// narrows it: method SP target SP "HTTP/1." DIGIT (CRLF / LF).
func refHTTP1(b []byte) matchResult {
	s := string(b)
	method := ""
	for _, m := range refMethods {
		if strings.HasPrefix(s, m+" ") {
			method = m
		}
	}
	if method == "" {
		for _, m := range refMethods {
			if strings.HasPrefix(m+" ", s) {
				return matchResult{v: detect.NeedMore}
			}
		}
		return matchResult{v: detect.NoMatch}
	}
	s = s[len(method)+1:]
	if s == "" {
		return matchResult{v: detect.NeedMore}
	}
	c := s[0]
	if !(c == '/' || c == '*' || c == '[' || c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') {
		return matchResult{v: detect.NoMatch}
	}
	k := 1
	for k < len(s) && isVisible(s[k]) {
		k++
	}
	if k == len(s) {
		return matchResult{v: detect.NeedMore}
	}
	if s[k] != ' ' {
		return matchResult{v: detect.NoMatch}
	}
	s = s[k+1:]
	for d := '0'; d <= '9'; d++ {
		for _, end := range []string{"\n", "\r\n"} {
			if v := "HTTP/1." + string(d) + end; strings.HasPrefix(s, v) {
				return matchResult{v: detect.Match, method: method, host: refHost(s[len(v):])}
			}
		}
	}
	for d := '0'; d <= '9'; d++ {
		if strings.HasPrefix("HTTP/1."+string(d)+"\r\n", s) {
			return matchResult{v: detect.NeedMore}
		}
	}
	return matchResult{v: detect.NoMatch}
}

// refHost is the value of the first complete Host line of the header
// section, trimmed of SP and HTAB, when at most 255 bytes.
func refHost(hdrs string) string {
	for {
		line, rest, ok := strings.Cut(hdrs, "\n")
		if !ok {
			return ""
		}
		hdrs = rest
		line = strings.TrimSuffix(line, "\r")
		if line == "" {
			return ""
		}
		if len(line) >= 5 && line[4] == ':' && strings.EqualFold(line[:4], "host") {
			if v := strings.Trim(line[5:], " \t"); len(v) <= 255 {
				return v
			}
			return ""
		}
	}
}

func TestLimitsHTTP1(t *testing.T) {
	defer boundTime(t)()
	long := strings.Repeat("abcdefgh", 5) // 40 visible bytes: the 8-byte scan and its tail
	inputs := []string{
		"GET / HTTP/1.1\r\n\r\n",
		"GET /" + long + " HTTP/1.1\r\nHost: h.example\r\n\r\n",
		"POST /p HTTP/1.0\nHost: x\n\n",
		"PUT * HTTP/1.9\r\n",
		"HEAD http://a.example/ HTTP/1.1\r\nhOST:\t v \t\r\n\r\n",
		"CONNECT [::1]:443 HTTP/1.1\r\nX: y\r\nHost: later.example\r\n\r\n",
		"OPTIONS 9 HTTP/1.1\r\nHost: a b\r\n",
		"UPDATEREDIRECTREF Z HTTP/1.1\r\nHost: z\n",
		"VERSION-CONTROL z HTTP/1.0\r\nHost:\r\n\r\n",
		"GET /" + long + long + "x HTTP/1.1\r\nHost: " + long + "\r\n",
		"GET /a?b=c HTTP/1.1\r\nHost: " + long + "\n",
		"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n",
		"GET / HTTP/1.1\r\nHostx: a\r\nHost: b\r\n",
		"GET / HTTP/1.1\r\nHost: abc",
		"GET / HTTP/1.1\r\nHost: abc\r",
		"GET / HTTP/1.1\r\nHost: abc\r\n",
		// '!' and '~', the ends of visible ASCII, in every position of the
		// last eight bytes (the byte-at-a-time tail of the scan) of some prefix.
		"GET /!~!~!~!~!~!~!~!~! HTTP/1.1\r\nHost: ~!~!~!~!~\r\n\r\n",
		"GET ~ HTTP/1.1\r\n",
		// An empty Host line is the Host; a later one does not count.
		"GET / HTTP/1.1\r\nA: b\r\nHost:\r\nHost: x\r\n\r\n",
		"GET / HTTP/1.1\r\nHost:\nHost: x\n\n",
	}
	for _, m := range refMethods {
		inputs = append(inputs, m+" /x HTTP/1.1\r\n")
	}
	compareAll(t, detect.HTTP1Matcher(), refHTTP1, inputs, false)

	// The Host value at its limit, just below and just above, through the
	// fast path (first header, visible ASCII) and through the general one.
	for _, n := range []int{0, 1, 7, 8, 9, 254, 255, 256, 300} {
		h := strings.Repeat("h", n)
		for _, in := range []string{
			"GET / HTTP/1.1\r\nHost: " + h + "\r\n\r\n",
			"GET / HTTP/1.1\nHost: " + h + "\n\n",
			"GET / HTTP/1.1\r\nA: b\r\nHost: " + h + "\r\n\r\n",
			"GET / HTTP/1.1\r\nHost:  " + h + " \r\n\r\n",
		} {
			var r detect.Result
			if v := detect.HTTP1Matcher().Match([]byte(in), &r); v != detect.Match {
				t.Fatalf("%d-byte host: %v", n, v)
			}
			want := h
			if n > 255 {
				want = ""
			}
			if r.HTTP.Host() != want {
				t.Errorf("%d-byte host %q: got %d bytes", n, in, len(r.HTTP.Host()))
			}
			if b := detect.NewHTTPInfo("GET", h); b != r.HTTP {
				t.Errorf("%d-byte host: NewHTTPInfo gives %q %d bytes, detection %q %d bytes", n, b.Method, len(b.Host()), r.HTTP.Method, len(r.HTTP.Host()))
			}
		}
	}

	// The longest method: its length is the bound of the method scan.
	for _, tc := range []struct {
		in   string
		want detect.Verdict
	}{
		{"UPDATEREDIRECTREF", detect.NeedMore},
		{"UPDATEREDIRECTREF ", detect.NeedMore},
		{"UPDATEREDIRECTREFS", detect.NoMatch},
		{"UPDATEREDIRECTREFS ", detect.NoMatch},
		{"BASELINE-CONTROL", detect.NeedMore},
		{"BASELINE-CONTROLX", detect.NoMatch},
		{"BASELINE-CONTROLXY", detect.NoMatch},
		{"@", detect.NoMatch},
		{"[", detect.NoMatch},
		{"A", detect.NeedMore},
		{"Z", detect.NoMatch},
	} {
		var r detect.Result
		if v := detect.HTTP1Matcher().Match([]byte(tc.in), &r); v != tc.want {
			t.Errorf("%q: %v, want %v", tc.in, v, tc.want)
		}
	}
	// A Result already used for another request: the host is replaced,
	// or cleared when the new request has none.
	var r detect.Result
	detect.HTTP1Matcher().Match([]byte("GET / HTTP/1.1\r\nHost: first.example\r\n\r\n"), &r)
	detect.HTTP1Matcher().Match([]byte("GET / HTTP/1.1\r\n\r\n"), &r)
	if r.HTTP.Host() != "" {
		t.Errorf("host %q left from an earlier request", r.HTTP.Host())
	}
}

// --- HTTP/2 and SSH: fixed prefixes ---

func refPrefixes(prefixes ...string) func([]byte) matchResult {
	return func(b []byte) matchResult {
		for _, p := range prefixes {
			if bytes.HasPrefix(b, []byte(p)) {
				return matchResult{v: detect.Match}
			}
		}
		for _, p := range prefixes {
			if strings.HasPrefix(p, string(b)) {
				return matchResult{v: detect.NeedMore}
			}
		}
		return matchResult{v: detect.NoMatch}
	}
}

func TestLimitsHTTP2(t *testing.T) {
	defer boundTime(t)()
	const preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
	compareAll(t, detect.HTTP2Matcher(), refPrefixes(preface), []string{preface, preface + "\x00\x00\x12\x04"}, true)
}

func TestLimitsSSH(t *testing.T) {
	defer boundTime(t)()
	compareAll(t, detect.SSHMatcher(), refPrefixes("SSH-2.0-", "SSH-1.99-"),
		[]string{"SSH-2.0-OpenSSH_9.6\r\n", "SSH-1.99-x", "SSH-2.0-"}, true)
}

// --- PROXY protocol ---

// refPROXY decides a PROXY protocol header from HAProxy's specification as
// the matcher narrows it: v1 is "PROXY " and a line (CRLF included) of at
// most 107 bytes, "UNKNOWN" and printable bytes or TCP4/TCP6 and four
// fields of address and port characters; v2 is the signature, version 2,
// command LOCAL or PROXY, family and transport in range, and for PROXY an
// address block long enough for the family. v2 matches before its payload.
func refPROXY(b []byte) matchResult {
	nm, nmore, ok := matchResult{v: detect.NoMatch}, matchResult{v: detect.NeedMore}, matchResult{v: detect.Match, proxy: 1}
	const sig = "\r\n\r\n\x00\r\nQUIT\n"
	if len(b) == 0 {
		return nmore
	}
	if b[0] == '\r' {
		if len(b) < 12 {
			if strings.HasPrefix(sig, string(b)) {
				return nmore
			}
			return nm
		}
		if string(b[:12]) != sig {
			return nm
		}
		if len(b) >= 13 && (b[12]>>4 != 2 || b[12]&15 > 1) {
			return nm
		}
		if len(b) >= 14 && (b[13]>>4 > 3 || b[13]&15 > 2) {
			return nm
		}
		if len(b) < 16 {
			return nmore
		}
		need := []int{0, 12, 36, 216}[b[13]>>4]
		if b[12]&15 == 1 && int(binary.BigEndian.Uint16(b[14:])) < need {
			return nm
		}
		return matchResult{v: detect.Match, proxy: 2}
	}
	if len(b) <= 6 {
		if strings.HasPrefix("PROXY ", string(b)) {
			return nmore
		}
		return nm
	}
	if string(b[:6]) != "PROXY " {
		return nm
	}
	end := bytes.Index(b, []byte("\r\n"))
	if end < 0 || end+2 > 107 {
		if len(b) >= 107 {
			return nm
		}
		for _, c := range b[6:] {
			if (c < 0x20 || c > 0x7e) && c != '\r' {
				return nm
			}
		}
		return nmore
	}
	line := string(b[6:end])
	if strings.HasPrefix(line, "UNKNOWN") {
		for _, c := range []byte(line) {
			if c < 0x20 || c > 0x7e {
				return nm
			}
		}
		return ok
	}
	if !strings.HasPrefix(line, "TCP4 ") && !strings.HasPrefix(line, "TCP6 ") {
		return nm
	}
	fields := strings.Split(line[5:], " ")
	if len(fields) != 4 {
		return nm
	}
	for _, f := range fields {
		if f == "" || strings.Trim(f, "0123456789.:abcdefABCDEF") != "" {
			return nm
		}
	}
	return ok
}

func TestLimitsPROXY(t *testing.T) {
	defer boundTime(t)()
	sig := "\r\n\r\n\x00\r\nQUIT\n"
	v2 := func(verCmd, fam byte, n int) string {
		return sig + string([]byte{verCmd, fam, byte(n >> 8), byte(n)}) + strings.Repeat("\x01", min(n, 40))
	}
	// A v1 line of exactly n bytes, CRLF included.
	v1 := func(n int) string {
		head := "PROXY UNKNOWN "
		return head + strings.Repeat("u", n-len(head)-2) + "\r\n"
	}
	inputs := []string{
		"PROXY TCP4 192.0.2.1 192.0.2.2 56324 443\r\nGET /",
		"PROXY TCP6 2001:db8::1 2001:DB8::F 1 65535\r\n",
		"PROXY UNKNOWN\r\n",
		"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n",
		v1(106), v1(107), v1(108),
		v2(0x21, 0x11, 12), v2(0x21, 0x11, 11), v2(0x21, 0x21, 36), v2(0x21, 0x21, 35),
		v2(0x21, 0x31, 216), v2(0x21, 0x32, 215), v2(0x20, 0x00, 0), v2(0x21, 0x00, 0), v2(0x20, 0x12, 0),
	}
	compareAll(t, detect.PROXYMatcher(), refPROXY, inputs, false)
	compareAll(t, detect.PROXYMatcher(), refPROXY, []string{v1(106), v1(107), v1(108), "PROXY UNKNOWN x\ry\r\n"}, true)
	// The longest line matches; one byte more cannot (and is decided
	// once 107 bytes are there).
	for _, tc := range []struct {
		in   string
		want detect.Verdict
	}{
		{v1(107), detect.Match},
		{v1(108), detect.NoMatch},
		{v1(108)[:106], detect.NeedMore},
		{v1(108)[:107], detect.NoMatch},
		{"PROXY " + strings.Repeat("x", 100), detect.NeedMore},
		{"PROXY " + strings.Repeat("x", 101), detect.NoMatch},
	} {
		var r detect.Result
		if v := detect.PROXYMatcher().Match([]byte(tc.in), &r); v != tc.want {
			t.Errorf("%d bytes %q: %v, want %v", len(tc.in), tc.in, v, tc.want)
		}
	}
}

// --- PostgreSQL ---

// refPostgres decides PostgreSQL's first client message from the protocol
// documentation as the matcher narrows it.
func refPostgres(b []byte) matchResult {
	nm, nmore, ok := matchResult{v: detect.NoMatch}, matchResult{v: detect.NeedMore}, matchResult{v: detect.Match}
	// What the first bytes can be: a length of at most 10000 and a code
	// whose first byte is 0 (protocol 3) or 4 (the requests).
	var lenBuf [4]byte
	copy(lenBuf[:], b)
	if len(b) < 4 {
		// some length of 8..10000 starts with these bytes?
		lo := binary.BigEndian.Uint32(lenBuf[:])
		hi := lo | 0xffffffff>>(8*len(b))
		if len(b) > 0 && (lo > 10000 || hi < 8) {
			return nm
		}
		return nmore
	}
	length := int(binary.BigEndian.Uint32(b))
	if length > 10000 && length>>8 > 10000>>8 || b[0] != 0 || b[1] != 0 {
		return nm
	}
	if len(b) > 4 && b[4] != 0 && b[4] != 4 {
		return nm
	}
	if len(b) < 8 {
		return nmore
	}
	code := int(binary.BigEndian.Uint32(b[4:]))
	switch code {
	case 80877103, 80877104:
		if length == 8 {
			return ok
		}
		return nm
	case 80877102:
		if length >= 16 && length <= 268 {
			return ok
		}
		return nm
	}
	if code>>16 != 3 || code&0xffff > 255 || length < 14 || length > 10000 {
		return nm
	}
	if len(b) < length {
		return nmore
	}
	// The parameters: NUL-terminated key and value strings, then a NUL.
	params := string(b[8:length])
	if !strings.HasSuffix(params, "\x00") {
		return nm
	}
	body := params[:len(params)-1]
	if body == "" || !strings.HasSuffix(body, "\x00") {
		return nm
	}
	parts := strings.Split(body[:len(body)-1], "\x00")
	if len(parts)%2 != 0 {
		return nm
	}
	user := false
	for i := 0; i < len(parts); i += 2 {
		if parts[i] == "" {
			return nm
		}
		if parts[i] == "user" {
			user = true
		}
	}
	if !user {
		return nm
	}
	return ok
}

func pgStartupLen(n int) []byte {
	// "user\x00" + value + "\x00\x00" making the whole message n bytes.
	v := n - 8 - len("user\x00") - 2
	return []byte(pgMsg(uint32(n), 3<<16, "user\x00"+strings.Repeat("v", v)+"\x00\x00"))
}

func TestLimitsPostgreSQL(t *testing.T) {
	defer boundTime(t)()
	inputs := []string{
		pgMsg(8, 80877103, ""), pgMsg(8, 80877104, ""), pgMsg(9, 80877103, "x"),
		pgMsg(16, 80877102, "\x00\x00\x00\x01\x00\x00\x00\x02"), pgMsg(15, 80877102, "1234567"),
		pgMsg(268, 80877102, strings.Repeat("k", 260)), pgMsg(269, 80877102, strings.Repeat("k", 261)),
		string(pgStartup("user", "alice", "database", "app")),
		pgMsg(14, 3<<16|255, "user\x00\x00"), pgMsg(15, 3<<16|255, "user\x00v\x00\x00"),
		pgMsg(uint32(8+len("a\x00b\x00user\x00c\x00\x00")), 3<<16|1, "a\x00b\x00user\x00c\x00\x00"),
		pgMsg(13, 3<<16, "user\x00"),
		string(pgStartupLen(9999)), string(pgStartupLen(10000)), string(pgStartupLen(10001)),
	}
	// Long messages: variants of the head only (their bytes past it are
	// all alike), and prefixes of the short ones.
	var short, long []string
	for _, in := range inputs {
		if len(in) > 300 {
			long = append(long, in)
		} else {
			short = append(short, in)
		}
	}
	compareAll(t, detect.PostgreSQLMatcher(), refPostgres, short, true)
	dl := newDeadline(t)
	defer dl.stop()
	for _, in := range long {
		variants([]byte(in[:16]), func(_ int, head []byte) bool {
			dl.check(t)
			b := append(slices.Clone(head), in[16:]...)
			var r detect.Result
			if got, want := detect.PostgreSQLMatcher().Match(b, &r), refPostgres(b).v; got != want {
				t.Errorf("%d-byte message with head %q: %v, want %v", len(b), head, got, want)
				return false
			}
			return true
		})
		for _, n := range []int{len(in) - 1, len(in), len(in) + 1} {
			dl.check(t)
			b := []byte(in)
			if n > len(b) {
				b = append(b, 'x')
			}
			var r detect.Result
			if got, want := detect.PostgreSQLMatcher().Match(b[:n], &r), refPostgres(b[:n]).v; got != want {
				t.Errorf("%d-byte message, %d bytes of it: %v, want %v", len(in), n, got, want)
			}
		}
	}
}

// boundTime makes the test binary fail at once, with every goroutine's
// stack, when a test runs past its bound: a planted bug that makes a parser
// loop then fails in seconds instead of hanging until the run's timeout.
func boundTime(t *testing.T) (stop func()) {
	d := 20 * time.Second
	if testnet.RaceEnabled {
		d *= 6
	}
	tm := time.AfterFunc(d, func() { panic(fmt.Sprintf("%s ran past %v: a parser loops", t.Name(), d)) })
	return func() { tm.Stop() }
}
