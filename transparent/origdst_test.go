package transparent_test

import (
	"net"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/sniffsplice/sniff/transparent"
)

// wrapped is a connection that wraps another and says so with NetConn.
type wrapped struct{ net.Conn }

func (w wrapped) NetConn() net.Conn { return w.Conn }

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestOriginalDstNotTCP: a connection with no TCP socket under it has no
// original destination.
func TestOriginalDstNotTCP(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	for _, c := range []net.Conn{a, wrapped{a}} {
		_, err := transparent.OriginalDst(c)
		require.ErrorIs(t, err, transparent.ErrNoOriginalDst)
		require.True(t, strings.HasPrefix(err.Error(), "transparent: "), err.Error())
		require.Contains(t, err.Error(), "net.pipe is not a TCP connection")
	}
}
