package spiffe_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sniffsplice/sniff/spiffe"
)

// tdByte and pathByte are the specification's character classes, written out here as references
// for the parser's.
func tdByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_'
}

func pathByte(c byte) bool { return tdByte(c) || c >= 'A' && c <= 'Z' }

// hint is what a refusal adds after the list of allowed characters for the byte c.
func hint(c byte, trustDomain bool) string {
	switch {
	case c == ':':
		return " (a port?)"
	case c == '@':
		return " (user info?)"
	case c == '?':
		return " (a query?)"
	case c == '#':
		return " (a fragment?)"
	case c == '%':
		return " (percent-encoding is not allowed)"
	case trustDomain && c >= 'A' && c <= 'Z':
		return " (uppercase?)"
	}
	return ""
}

// TestLimitsCharacterClasses puts every byte value first, in the middle and last of a trust domain
// and of a path segment, through every entry point, and checks the decision and the hint against
// the references above.
func TestLimitsCharacterClasses(t *testing.T) {
	for v := 0; v < 256; v++ {
		c := byte(v)
		for _, in := range []string{string(c), string(c) + "x", "x" + string(c) + "x", "x" + string(c)} {
			// The trust domain, alone and in an ID.
			_, err := spiffe.ParseTrustDomain(in)
			if tdByte(c) {
				require.NoError(t, err, "%q", in)
				id, err := spiffe.ParseID("spiffe://" + in + "/p")
				require.NoError(t, err, "%q", in)
				assert.Equal(t, in, id.TrustDomain().Name())
				assert.Equal(t, "/p", id.Path())
			} else {
				require.ErrorIs(t, err, spiffe.ErrInvalidTrustDomain, "%q", in)
				if c != '/' {
					assert.True(t, strings.HasSuffix(err.Error(), "'.', '-' and '_'"+hint(c, true)), "%q: %v", in, err)
					_, err = spiffe.ParseID("spiffe://" + in + "/p")
					assert.ErrorIs(t, err, spiffe.ErrInvalidTrustDomain, "%q", in)
					assert.True(t, strings.HasSuffix(err.Error(), "'.', '-' and '_'"+hint(c, true)), "%q: %v", in, err)
				}
			}

			// A path segment, in an ID, by path and as a segment.
			if c == '/' || in == "." {
				continue
			}
			tdom := spiffe.MustParseTrustDomain("td")
			id, err := spiffe.ParseID("spiffe://td/a/" + in)
			_, errPath := spiffe.IDFromPath(tdom, "/a/"+in)
			_, errSeg := spiffe.IDFromSegments(tdom, "a", in)
			if pathByte(c) {
				require.NoError(t, err, "%q", in)
				assert.Equal(t, "/a/"+in, id.Path())
				assert.NoError(t, errPath, "%q", in)
				assert.NoError(t, errSeg, "%q", in)
				continue
			}
			for _, err := range []error{err, errPath, errSeg} {
				require.ErrorIs(t, err, spiffe.ErrInvalidID, "%q", in)
				assert.NotErrorIs(t, err, spiffe.ErrInvalidTrustDomain, "%q", in)
				assert.True(t, strings.HasSuffix(err.Error(), "'.', '-' and '_'"+hint(c, false)), "%q: %v", in, err)
			}
		}
	}
}

// TestLimitsEmptyParts: a trust domain ID with a '/' at once is a path error, not a character
// error, and an ID whose trust domain is empty says so, whatever follows.
func TestLimitsEmptyParts(t *testing.T) {
	for _, in := range []string{"spiffe:///", "spiffe:///x", "spiffe://a/"} {
		_, err := spiffe.ParseTrustDomain(in)
		assert.ErrorIs(t, err, spiffe.ErrInvalidTrustDomain, in)
		assert.ErrorContains(t, err, "a trust domain ID has no path", in)
	}
	for _, in := range []string{"spiffe://", "spiffe:///", "spiffe:///x", "spiffe:////"} {
		_, err := spiffe.ParseID(in)
		assert.ErrorIs(t, err, spiffe.ErrInvalidTrustDomain, in)
		assert.ErrorContains(t, err, "trust domain is missing", in)
	}
	// One-byte paths and segments around the slash and dot rules.
	for in, want := range map[string]string{
		"spiffe://td/":    "trailing slash",
		"spiffe://td//":   "trailing slash",
		"spiffe://td/a/":  "trailing slash",
		"spiffe://td//a":  "empty segment",
		"spiffe://td/.":   "dot segment",
		"spiffe://td/..":  "dot segment",
		"spiffe://td/a/.": "dot segment",
		"spiffe://td/...": "",
		"spiffe://td/a":   "",
		"spiffe://td/a/b": "",
	} {
		id, err := spiffe.ParseID(in)
		if want == "" {
			require.NoError(t, err, in)
			assert.Equal(t, in[len("spiffe://td"):], id.Path())
			assert.Equal(t, "td", id.TrustDomain().Name())
			continue
		}
		assert.ErrorIs(t, err, spiffe.ErrInvalidID, in)
		assert.False(t, errors.Is(err, spiffe.ErrInvalidTrustDomain), in)
		assert.ErrorContains(t, err, want, in)
	}
	tdom := spiffe.MustParseTrustDomain("td")
	_, err := spiffe.IDFromPath(tdom, "a")
	assert.ErrorContains(t, err, "does not start with '/'")
	_, err = spiffe.IDFromPath(tdom, "/")
	assert.ErrorContains(t, err, "trailing slash")
	id, err := spiffe.IDFromPath(tdom, "/a")
	require.NoError(t, err)
	assert.Equal(t, "spiffe://td/a", id.String())
	assert.Equal(t, "/a", id.Path())
	assert.Equal(t, tdom, id.TrustDomain())
	for _, seg := range []string{"", ".", ".."} {
		_, err := spiffe.IDFromSegments(tdom, "a", seg)
		assert.ErrorIs(t, err, spiffe.ErrInvalidID, seg)
		assert.ErrorContains(t, err, "path segment: ", seg)
	}
	id, err = spiffe.IDFromSegments(tdom, "a")
	require.NoError(t, err)
	assert.Equal(t, "spiffe://td/a", id.String())
}

// TestLimitsTrustDomainInID: the trust domain's 255 bytes at, just below and just above its
// limit, inside an ID built every way, and its parts read back.
func TestLimitsTrustDomainInID(t *testing.T) {
	for _, n := range []int{1, 254, 255, 256} {
		name := td(n)
		id, err := spiffe.ParseID("spiffe://" + name)
		tdom, errTD := spiffe.ParseTrustDomain("spiffe://" + name)
		if n > spiffe.MaxTrustDomainLength {
			assert.ErrorContains(t, err, "trust domain is longer than 255 bytes", n)
			assert.ErrorContains(t, errTD, "trust domain is longer than 255 bytes", n)
			continue
		}
		require.NoError(t, err, n)
		require.NoError(t, errTD, n)
		assert.Equal(t, name, id.TrustDomain().Name())
		assert.Empty(t, id.Path())
		assert.Equal(t, id, tdom.ID())
		assert.Equal(t, "spiffe://"+name, tdom.ID().String())
		assert.Empty(t, tdom.ID().Path())
		assert.Equal(t, tdom, tdom.ID().TrustDomain())
		assert.Equal(t, "spiffe://"+name, tdom.ID().URL().String())
	}
}
