package spiffe_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sniffsplice/sniff/spiffe"
)

func TestParseIDValid(t *testing.T) {
	for _, c := range []struct{ in, td, path string }{
		{"spiffe://example.org", "example.org", ""},
		{"spiffe://example.org/web", "example.org", "/web"},
		{"spiffe://example.org/ns/default/sa/web", "example.org", "/ns/default/sa/web"},
		{"spiffe://a", "a", ""},
		{"spiffe://1.2.3.4/x", "1.2.3.4", "/x"},
		{"spiffe://under_score-dash.9/A.b-C_d/..x/x../.../...", "under_score-dash.9", "/A.b-C_d/..x/x../.../..."},
		{"spiffe://td/UPPER/Case", "td", "/UPPER/Case"},
	} {
		t.Run(c.in, func(t *testing.T) {
			id, err := spiffe.ParseID(c.in)
			require.NoError(t, err)
			assert.Equal(t, c.in, id.String())
			assert.Equal(t, c.td, id.TrustDomain().Name())
			assert.Equal(t, c.path, id.Path())
			assert.False(t, id.IsZero())
			assert.True(t, id.MemberOf(spiffe.MustParseTrustDomain(c.td)))
			assert.Equal(t, c.in, id.URL().String())
			assert.Equal(t, id, spiffe.MustParseID(c.in), "IDs compare with ==")
			again, err := spiffe.IDFromPath(id.TrustDomain(), id.Path())
			require.NoError(t, err)
			assert.Equal(t, id, again)
		})
	}
}

func TestParseIDInvalid(t *testing.T) {
	for _, c := range []struct {
		in     string
		badTD  bool // the error also matches ErrInvalidTrustDomain
		detail string
	}{
		{"", false, "scheme"},
		{"example.org/web", false, "scheme"},
		{"spiffe:/example.org", false, "scheme"},
		{"SPIFFE://example.org", false, "scheme"},
		{"Spiffe://example.org", false, "scheme"},
		{"https://example.org/web", false, "scheme"},
		{"spiffe://", true, "trust domain is missing"},
		{"spiffe:///web", true, "trust domain is missing"},
		{"spiffe://Example.org", true, "uppercase"},
		{"spiffe://example.org:443/web", true, "port"},
		{"spiffe://user@example.org/web", true, "user info"},
		{"spiffe://user:pw@example.org/web", true, "port"},
		{"spiffe://example.org?x=1", true, "query"},
		{"spiffe://example.org#f", true, "fragment"},
		{"spiffe://exa%6Dple.org", true, "percent"},
		{"spiffe://[::1]/web", true, "lowercase"},
		{"spiffe://ex ample.org", true, "lowercase"},
		{"spiffe://example.org/", false, "trailing slash"},
		{"spiffe://example.org/web/", false, "trailing slash"},
		{"spiffe://example.org//web", false, "empty segment"},
		{"spiffe://example.org/a//b", false, "empty segment"},
		{"spiffe://example.org/.", false, "dot segment"},
		{"spiffe://example.org/..", false, "dot segment"},
		{"spiffe://example.org/a/./b", false, "dot segment"},
		{"spiffe://example.org/a/../b", false, "dot segment"},
		{"spiffe://example.org/web?x=1", false, "query"},
		{"spiffe://example.org/web#frag", false, "fragment"},
		{"spiffe://example.org/we%20b", false, "percent"},
		{"spiffe://example.org/a:b", false, "port"},
		{"spiffe://example.org/a@b", false, "user info"},
		{"spiffe://example.org/a~b", false, "limited"},
		{"spiffe://example.org/é", false, "limited"},
		{"spiffe://example.org/a\x00b", false, "limited"},
		{"spiffe://example.org/a b", false, "limited"},
	} {
		t.Run(c.in, func(t *testing.T) {
			id, err := spiffe.ParseID(c.in)
			require.Error(t, err)
			assert.True(t, id.IsZero())
			assert.ErrorIs(t, err, spiffe.ErrInvalidID)
			assert.Equal(t, c.badTD, errors.Is(err, spiffe.ErrInvalidTrustDomain))
			assert.ErrorContains(t, err, c.detail)
			assert.True(t, strings.HasPrefix(err.Error(), "spiffe: invalid SPIFFE ID "), err.Error())
			assert.NotContains(t, err.Error(), "\n")
			assert.Panics(t, func() { spiffe.MustParseID(c.in) })
		})
	}
}

// td returns a valid trust domain name of n bytes.
func td(n int) string { return strings.Repeat("t", n) }

// withLen returns a valid ID of exactly n bytes in the trust domain "td" (n >= 12).
func withLen(n int) string {
	s := "spiffe://td/"
	for len(s) < n {
		if len(s)+1 < n && len(s)%50 == 0 {
			s += "/"
		}
		s += "a"
	}
	return s
}

func TestLimits(t *testing.T) {
	// The trust domain: at most 255 bytes, alone or in an ID.
	for _, n := range []int{1, spiffe.MaxTrustDomainLength - 1, spiffe.MaxTrustDomainLength} {
		got, err := spiffe.ParseTrustDomain(td(n))
		require.NoError(t, err, n)
		assert.Len(t, got.Name(), n)
		_, err = spiffe.ParseID("spiffe://" + td(n) + "/x")
		require.NoError(t, err, n)
	}
	for _, n := range []int{spiffe.MaxTrustDomainLength + 1, 1000} {
		_, err := spiffe.ParseTrustDomain(td(n))
		assert.ErrorIs(t, err, spiffe.ErrInvalidTrustDomain, n)
		assert.ErrorContains(t, err, "longer than 255 bytes")
		_, err = spiffe.ParseID("spiffe://" + td(n) + "/x")
		assert.ErrorIs(t, err, spiffe.ErrInvalidID, n)
		assert.ErrorIs(t, err, spiffe.ErrInvalidTrustDomain, n)
	}

	// The ID: at most 2048 bytes, however it is built.
	for _, n := range []int{spiffe.MaxIDLength - 1, spiffe.MaxIDLength} {
		s := withLen(n)
		require.Len(t, s, n)
		id, err := spiffe.ParseID(s)
		require.NoError(t, err, n)
		assert.Equal(t, s, id.String())
		_, err = spiffe.IDFromPath(id.TrustDomain(), id.Path())
		require.NoError(t, err, n)
		_, err = spiffe.IDFromSegments(id.TrustDomain(), strings.Split(id.Path()[1:], "/")...)
		require.NoError(t, err, n)
	}
	for _, n := range []int{spiffe.MaxIDLength + 1, 10000} {
		s := withLen(n)
		require.Len(t, s, n)
		_, err := spiffe.ParseID(s)
		assert.ErrorIs(t, err, spiffe.ErrInvalidID, n)
		assert.ErrorContains(t, err, "longer than 2048 bytes")
		assert.Less(t, len(err.Error()), 300, "the message quotes a bounded part of the input")
		tdom := spiffe.MustParseTrustDomain("td")
		_, err = spiffe.IDFromPath(tdom, s[len("spiffe://td"):])
		assert.ErrorIs(t, err, spiffe.ErrInvalidID, n)
		_, err = spiffe.IDFromSegments(tdom, strings.Split(s[len("spiffe://td/"):], "/")...)
		assert.ErrorIs(t, err, spiffe.ErrInvalidID, n)
	}
	// The longest trust domain with the longest path that fits.
	long := "spiffe://" + td(spiffe.MaxTrustDomainLength) + "/"
	long += strings.Repeat("p", spiffe.MaxIDLength-len(long))
	_, err := spiffe.ParseID(long)
	require.NoError(t, err)
	_, err = spiffe.ParseID(long + "p")
	assert.ErrorIs(t, err, spiffe.ErrInvalidID)
}

func TestParseTrustDomain(t *testing.T) {
	for in, want := range map[string]string{
		"example.org":           "example.org",
		"spiffe://example.org":  "example.org",
		"a-b_c.0":               "a-b_c.0",
		"spiffe://a-b_c.0":      "a-b_c.0",
		"xn--bcher-kva.example": "xn--bcher-kva.example",
	} {
		got, err := spiffe.ParseTrustDomain(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got.Name())
		assert.Equal(t, want, got.String())
		assert.Equal(t, "spiffe://"+want, got.ID().String())
		assert.Equal(t, got, got.ID().TrustDomain())
		assert.Empty(t, got.ID().Path())
	}
	for _, in := range []string{
		"", "spiffe://", "Example.org", "example.org:8080", "exa mple", "spiffe://example.org/web",
		"spiffe://example.org/", "spiffe://Example.org", "user@example.org", "example.org/", "é",
	} {
		_, err := spiffe.ParseTrustDomain(in)
		assert.ErrorIs(t, err, spiffe.ErrInvalidTrustDomain, in)
		assert.NotErrorIs(t, err, spiffe.ErrInvalidID, in)
		assert.Panics(t, func() { spiffe.MustParseTrustDomain(in) }, in)
	}
}

func TestZeroValues(t *testing.T) {
	var id spiffe.ID
	assert.True(t, id.IsZero())
	assert.Empty(t, id.String())
	assert.Empty(t, id.Path())
	assert.True(t, id.TrustDomain().IsZero())
	assert.Nil(t, id.URL())
	assert.False(t, id.MemberOf(spiffe.TrustDomain{}), "the zero ID is a member of nothing")
	var td spiffe.TrustDomain
	assert.True(t, td.IsZero())
	assert.True(t, td.ID().IsZero())
	_, err := spiffe.IDFromPath(td, "/x")
	assert.ErrorIs(t, err, spiffe.ErrInvalidID)
	_, err = spiffe.IDFromSegments(td, "x")
	assert.ErrorIs(t, err, spiffe.ErrInvalidID)
}

func TestIDFromPathAndSegments(t *testing.T) {
	tdom := spiffe.MustParseTrustDomain("example.org")
	id, err := spiffe.IDFromSegments(tdom, "ns", "default", "sa", "web")
	require.NoError(t, err)
	assert.Equal(t, "spiffe://example.org/ns/default/sa/web", id.String())
	id, err = spiffe.IDFromSegments(tdom)
	require.NoError(t, err)
	assert.Equal(t, tdom.ID(), id)
	id, err = spiffe.IDFromPath(tdom, "")
	require.NoError(t, err)
	assert.Equal(t, tdom.ID(), id)
	for _, segs := range [][]string{{""}, {"a/b"}, {"."}, {".."}, {"a", ""}, {"a?b"}, {"%41"}} {
		_, err := spiffe.IDFromSegments(tdom, segs...)
		assert.ErrorIs(t, err, spiffe.ErrInvalidID, segs)
	}
	for _, p := range []string{"web", "/", "/web/", "//web", "/./web", "/a/../b", "/a?b", "/a#b", "/a%2Fb"} {
		_, err := spiffe.IDFromPath(tdom, p)
		assert.ErrorIs(t, err, spiffe.ErrInvalidID, p)
	}
}

func TestMemberOf(t *testing.T) {
	id := spiffe.MustParseID("spiffe://example.org/web")
	assert.True(t, id.MemberOf(spiffe.MustParseTrustDomain("example.org")))
	assert.False(t, id.MemberOf(spiffe.MustParseTrustDomain("example.com")))
	assert.False(t, id.MemberOf(spiffe.MustParseTrustDomain("example.or")))
	assert.False(t, id.MemberOf(spiffe.TrustDomain{}))
}
