package mtlstest_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sniffsplice/sniff/mtls/mtlstest"
)

// TestNewAndMustNew: New returns an error for an invalid trust domain where MustNew panics; both
// accept a name or a spiffe:// form and build the same kind of root.
func TestNewAndMustNew(t *testing.T) {
	for _, td := range []string{"", "Not A Domain", "spiffe://"} {
		ca, err := mtlstest.New(td)
		assert.Error(t, err, td)
		assert.ErrorContains(t, err, "mtlstest: ", td)
		assert.Nil(t, ca, td)
		assert.Panics(t, func() { mtlstest.MustNew(td) }, td)
	}
	a, err := mtlstest.New("example.org")
	require.NoError(t, err)
	b := mtlstest.MustNew("spiffe://example.org")
	assert.Equal(t, a.TrustDomain(), b.TrustDomain())
	assert.True(t, a.Root().IsCA)
	assert.Same(t, a.Root(), a.Certificate())
	assert.NotEqual(t, a.Root().Raw, b.Root().Raw, "a new key and certificate per call")
}
