package policyfile

import (
	"errors"
	"strings"
	"testing"
)

// FuzzParse: any input either parses or fails with ErrSyntax, never panics,
// and what parses is stable: the port lists it keeps parse again to themselves.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"config.linkerd.io/opaque-ports: \"3306,5432\"\n",
		"config.linkerd.io/skip-inbound-ports=\"4190-4191\"\nconfig.linkerd.io/proxy-uid: 2102\n",
		"annotations:\n  config.linkerd.io/skip-outbound-ports: '443' # tls\n",
		"config.linkerd.io/proxy-detect-timeout: 2s\n",
		"config.linkerd.io/opaque-ports: \"\"\n",
		"# only a comment\n\n",
		"config.linkerd.io/opaque-ports: \"70000\"\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		pf, err := Parse(strings.NewReader(s))
		if err != nil {
			if !errors.Is(err, ErrSyntax) {
				t.Fatalf("error without ErrSyntax: %v", err)
			}
			return
		}
		for _, ports := range []string{pf.OpaquePorts, pf.SkipInbound, pf.SkipOutbound} {
			again, err := Parse(strings.NewReader(KeyOpaquePorts + ": \"" + ports + "\"\n"))
			if err != nil || again.OpaquePorts != ports {
				t.Fatalf("port list %q does not parse to itself: %q, %v", ports, again.OpaquePorts, err)
			}
		}
	})
}
