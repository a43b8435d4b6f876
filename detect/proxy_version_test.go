package detect_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sniffsplice/sniff/detect"
)

// TestPROXYVersion: the Result of a PROXY match says which version matched,
// from the matcher alone and from Detect on a connection; other protocols
// leave it 0.
func TestPROXYVersion(t *testing.T) {
	v2 := "\r\n\r\n\x00\r\nQUIT\n"
	for _, tc := range []struct {
		name, in string
		want     uint8
	}{
		{"v1", "PROXY TCP4 192.0.2.1 192.0.2.2 56324 443\r\nGET / HTTP/1.1\r\n", 1},
		{"v1-unknown", "PROXY UNKNOWN\r\n", 1},
		{"v2", v2 + "\x21\x11\x00\x0c\x7f\x00\x00\x01\x7f\x00\x00\x01\x1f\x90\x00\x50", 2},
		{"v2-local", v2 + "\x20\x00\x00\x00", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r detect.Result
			require.Equal(t, detect.Match, detect.PROXYMatcher().Match([]byte(tc.in), &r))
			assert.Equal(t, tc.want, r.PROXYVersion)

			c, s := tcpPair(t)
			defer c.Close()
			defer s.Close()
			_, err := c.Write([]byte(tc.in))
			require.NoError(t, err)
			d := detect.Detector{Matchers: append(detect.DefaultMatchers(), detect.PROXYMatcher())}
			res, _, err := d.Detect(context.Background(), s)
			require.NoError(t, err)
			assert.Equal(t, detect.PROXY, res.Protocol)
			assert.Equal(t, tc.want, res.PROXYVersion)
		})
	}
	var r detect.Result
	require.Equal(t, detect.NeedMore, detect.PROXYMatcher().Match([]byte("PROXY TCP4 "), &r))
	require.Equal(t, detect.Match, detect.HTTP1Matcher().Match([]byte("GET / HTTP/1.1\r\n"), &r))
	assert.Zero(t, r.PROXYVersion, "no version unless PROXY matched")
}
