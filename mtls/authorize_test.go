package mtls_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/sniffsplice/sniff/mtls"
	"github.com/sniffsplice/sniff/spiffe"
)

func TestAuthorizers(t *testing.T) {
	id := spiffe.MustParseID
	web := id("spiffe://example.org/ns/prod/sa/web")
	cases := []struct {
		name string
		a    mtls.Authorizer
		peer spiffe.ID
		ok   bool
	}{
		{"any", mtls.AuthorizeAny(), web, true},
		{"id match", mtls.AuthorizeID(web), web, true},
		{"id other", mtls.AuthorizeID(id("spiffe://example.org/ns/prod/sa/db")), web, false},
		{"id other td", mtls.AuthorizeID(id("spiffe://other.org/ns/prod/sa/web")), web, false},
		{"one of", mtls.AuthorizeOneOf(id("spiffe://example.org/a"), web), web, true},
		{"none of", mtls.AuthorizeOneOf(id("spiffe://example.org/a")), web, false},
		{"empty set", mtls.AuthorizeOneOf(), web, false},
		{"member", mtls.AuthorizeMemberOf(spiffe.MustParseTrustDomain("example.org")), web, true},
		{"not member", mtls.AuthorizeMemberOf(spiffe.MustParseTrustDomain("example.com")), web, false},
		{"prefix exact", mtls.AuthorizePrefix(id("spiffe://example.org/ns/prod/sa/web")), web, true},
		{"prefix parent", mtls.AuthorizePrefix(id("spiffe://example.org/ns/prod")), web, true},
		{"prefix partial segment", mtls.AuthorizePrefix(id("spiffe://example.org/ns/pro")), web, false},
		{"prefix td root", mtls.AuthorizePrefix(id("spiffe://example.org")), web, true},
		{"prefix other td", mtls.AuthorizePrefix(id("spiffe://other.org/ns/prod")), web, false},
		{"prefix deeper", mtls.AuthorizePrefix(id("spiffe://example.org/ns/prod/sa/web/x")), web, false},
		{"func yes", mtls.AuthorizeFunc(func(p spiffe.ID) bool { return p == web }), web, true},
		{"func no", mtls.AuthorizeFunc(func(spiffe.ID) bool { return false }), web, false},
		{"func nil", mtls.AuthorizeFunc(nil), web, false},
	}
	for _, c := range cases {
		err := c.a(c.peer, nil)
		assert.Equal(t, c.ok, err == nil, "%s: %v", c.name, err)
	}
}

func TestReasonStrings(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range mtls.Reasons() {
		s := r.String()
		assert.NotEmpty(t, s)
		assert.False(t, seen[s], "duplicate %q", s)
		seen[s] = true
	}
	assert.Equal(t, "ok", mtls.ReasonOK.String())
	assert.Equal(t, "other", mtls.Reason(200).String())
	assert.Len(t, seen, 15)
}

func TestClassify(t *testing.T) {
	cases := []struct {
		err  error
		want mtls.Reason
	}{
		{nil, mtls.ReasonOK},
		{&mtls.VerifyError{Reason: mtls.ReasonExpired}, mtls.ReasonExpired},
		{fmt.Errorf("wrapped: %w", &mtls.VerifyError{Reason: mtls.ReasonUnauthorized}), mtls.ReasonUnauthorized},
		{context.Canceled, mtls.ReasonCanceled},
		{context.DeadlineExceeded, mtls.ReasonTimeout},
		{os.ErrDeadlineExceeded, mtls.ReasonTimeout},
		{io.EOF, mtls.ReasonIO},
		{net.ErrClosed, mtls.ReasonIO},
		{&net.OpError{Op: "read", Err: errors.New("connection reset by peer")}, mtls.ReasonIO},
		{tls.RecordHeaderError{Msg: "x"}, mtls.ReasonProtocol},
		{fmt.Errorf("%w: x", mtls.ErrNoSVID), mtls.ReasonLocal},
		{errors.New("tls: no application protocol"), mtls.ReasonProtocol},
		{errors.New("something"), mtls.ReasonOther},
	}
	for _, c := range cases {
		assert.Equal(t, c.want, mtls.Classify(c.err), "%v", c.err)
	}
	ve := &mtls.VerifyError{Reason: mtls.ReasonNotYetValid, PeerID: spiffe.MustParseID("spiffe://a/b"), Err: errors.New("cause")}
	assert.ErrorIs(t, ve, mtls.ErrNotYetValid)
	assert.NotErrorIs(t, ve, mtls.ErrExpired)
	assert.Contains(t, ve.Error(), "spiffe://a/b")
	assert.Contains(t, ve.Error(), "cause")
	assert.Contains(t, ve.Error(), "not_yet_valid")
}
