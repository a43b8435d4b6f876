package policyfile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseBothFormats(t *testing.T) {
	pf, err := Parse(strings.NewReader(`
# copied from a Deployment
annotations:
  config.linkerd.io/opaque-ports: "3306, 5432"   # databases
  config.linkerd.io/skip-outbound-ports: '443'
config.linkerd.io/skip-inbound-ports="4190-4191"
config.linkerd.io/proxy-detect-timeout: 2s
config.linkerd.io/enable-external-profiles: "true"
app.kubernetes.io/name: web
`))
	require.NoError(t, err)
	require.True(t, pf.HasOpaque)
	require.Equal(t, "3306,5432", pf.OpaquePorts)
	require.Equal(t, "443", pf.SkipOutbound)
	require.Equal(t, "4190-4191", pf.SkipInbound)
	require.Equal(t, 2*time.Second, pf.DetectTimeout)
	require.Equal(t, -1, pf.ProxyUID)
	require.Equal(t, []string{"config.linkerd.io/enable-external-profiles"}, pf.Ignored)
}

func TestParseRefusesBadFiles(t *testing.T) {
	for name, text := range map[string]string{
		"bad port":      `config.linkerd.io/opaque-ports: "3306,99999"`,
		"bad range":     `config.linkerd.io/skip-inbound-ports: "9-3"`,
		"no separator":  `config.linkerd.io/opaque-ports 3306`,
		"unterminated":  `config.linkerd.io/opaque-ports: "3306`,
		"duplicate":     "config.linkerd.io/opaque-ports: 1\nconfig.linkerd.io/opaque-ports: 2",
		"bad duration":  `config.linkerd.io/proxy-detect-timeout: soon`,
		"bad uid":       `config.linkerd.io/proxy-uid: root`,
		"trailing text": `config.linkerd.io/opaque-ports: "1" 2`,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(text))
			require.Error(t, err)
			require.True(t, errors.Is(err, ErrSyntax), "%v", err)
			require.Contains(t, err.Error(), "line ")
		})
	}
}

func TestLoad(t *testing.T) {
	p := filepath.Join(t.TempDir(), "annotations")
	require.NoError(t, os.WriteFile(p, []byte(`config.linkerd.io/proxy-uid="2102"`+"\n"), 0o644))
	pf, err := Load(p)
	require.NoError(t, err)
	require.Equal(t, 2102, pf.ProxyUID)
	require.False(t, pf.HasOpaque)

	_, err = Load(filepath.Join(t.TempDir(), "missing"))
	require.ErrorIs(t, err, ErrSyntax)
}

func TestLayer(t *testing.T) {
	pf, err := Parse(strings.NewReader("config.linkerd.io/opaque-ports: \"\"\nconfig.linkerd.io/skip-outbound-ports: \"443\"\nconfig.linkerd.io/proxy-detect-timeout: 3s\n"))
	require.NoError(t, err)
	require.NotNil(t, pf.Layer.OpaquePorts)
	require.True(t, pf.Layer.OpaquePorts.IsEmpty(), "an empty list means no opaque ports")
	require.True(t, pf.Layer.SkipOutboundPorts.Contains(443))
	require.Nil(t, pf.Layer.SkipInboundPorts)
	require.Equal(t, 3*time.Second, pf.Layer.DetectTimeout)

	_, err = Parse(strings.NewReader(`config.linkerd.io/enable-external-profiles: "maybe"`))
	require.ErrorIs(t, err, ErrSyntax)
}
