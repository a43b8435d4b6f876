package opaque_test

import (
	"testing"

	"github.com/sniffsplice/sniff/opaque"
)

// TestUnmarshalBinaryShortAfterPreface: a header cut inside its 4-byte
// length field (the whole preface there) is short, not "no preface".
func TestUnmarshalBinaryShortAfterPreface(t *testing.T) {
	opaque.Bound(t)
	full, err := opaque.Header{Port: 80}.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	for n := 0; n < len(full); n++ {
		var h opaque.Header
		if err := h.UnmarshalBinary(full[:n]); headerReason(err) != opaque.RejectShort {
			t.Errorf("%d of %d bytes: %v, want %v", n, len(full), err, opaque.RejectShort)
		}
	}
}
