package spiffe

import (
	"errors"
	"strconv"
	"strings"
)

// Sentinel errors; every error returned by this package matches one of them with errors.Is.
var (
	// ErrInvalidID: a string is not a valid SPIFFE ID. An ID whose trust domain is at fault also
	// matches ErrInvalidTrustDomain.
	ErrInvalidID = errors.New("spiffe: invalid SPIFFE ID")
	// ErrInvalidTrustDomain: a string is not a valid trust domain name.
	ErrInvalidTrustDomain = errors.New("spiffe: invalid trust domain")
	// ErrInvalidSVID: certificates (or their key) do not form a valid X.509-SVID: no or several
	// URI SANs, a leaf that is a CA or lacks the digitalSignature key usage, an intermediate that
	// is not a CA, a key that does not match the leaf, unparsable PEM.
	ErrInvalidSVID = errors.New("spiffe: invalid X.509-SVID")
	// ErrInvalidBundle: bundle contents cannot be parsed.
	ErrInvalidBundle = errors.New("spiffe: invalid X.509 bundle")
	// ErrNoBundle: a bundle source has no bundle for a trust domain.
	ErrNoBundle = errors.New("spiffe: no bundle for the trust domain")
	// ErrUntrusted: an X.509-SVID's chain does not verify against the bundle of its trust domain
	// (unknown authority, bad signature, expired, not yet valid, ...). The error wraps crypto/x509's,
	// so errors.As finds an x509.CertificateInvalidError or x509.UnknownAuthorityError.
	ErrUntrusted = errors.New("spiffe: certificate chain is not trusted")
)

// prefix starts every message of this package, once.
const prefix = "spiffe: "

// maxQuoted bounds how much of a rejected input an error message repeats.
const maxQuoted = 80

// specError is an error of this package: a kind (one of the sentinel errors), the input at fault
// when there is one, and what is wrong with it. It prints on one line.
type specError struct {
	kinds  []error // sentinel errors matched by errors.Is; the first names the message
	input  string  // quoted in the message when quote is set
	quote  bool
	detail string
	cause  error
}

func newError(kind error, input string, detail string) *specError {
	return &specError{kinds: []error{kind}, input: input, quote: true, detail: detail}
}

// Error implements error.
func (e *specError) Error() string {
	var b strings.Builder
	b.WriteString(e.kinds[0].Error())
	if e.quote {
		b.WriteByte(' ')
		in := e.input
		if len(in) > maxQuoted {
			b.WriteString(strconv.Quote(in[:maxQuoted]))
			b.WriteString("... (" + strconv.Itoa(len(in)) + " bytes)")
		} else {
			b.WriteString(strconv.Quote(in))
		}
	}
	if e.detail != "" {
		b.WriteString(": " + e.detail)
	}
	if e.cause != nil {
		b.WriteString(": " + strings.TrimPrefix(e.cause.Error(), prefix))
	}
	return b.String()
}

// Unwrap returns the sentinel errors the error matches and its cause.
func (e *specError) Unwrap() []error {
	errs := append([]error(nil), e.kinds...)
	if e.cause != nil {
		errs = append(errs, e.cause)
	}
	return errs
}
