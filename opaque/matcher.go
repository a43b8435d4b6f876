package opaque

import "github.com/sniffsplice/sniff/detect"

// TransportHeader is the protocol that HeaderMatcher reports: a connection that starts with a
// transport header.
const TransportHeader detect.Protocol = "transport.l5d.io/v1"

// HeaderMatcher returns a detect.Matcher that recognises a connection starting with a transport
// header by its preface, without consuming anything. Put it in a Detector's Matchers on a port that
// receives both header-prefixed and other connections; on a match, read the header from the
// connection Detect hands back with ReadHeader (the peeked bytes are still there).
func HeaderMatcher() detect.Matcher { return headerMatcher{} }

type headerMatcher struct{}

func (headerMatcher) Protocol() detect.Protocol { return TransportHeader }

// Match compares the bytes so far with the preface: a difference decides no at once; the full
// preface decides yes.
func (headerMatcher) Match(b []byte, _ *detect.Result) detect.Verdict {
	n := min(len(b), prefaceLen)
	if string(b[:n]) != headerPreface[:n] {
		return detect.NoMatch
	}
	if n < prefaceLen {
		return detect.NeedMore
	}
	return detect.Match
}
