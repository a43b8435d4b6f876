// Command proxy-init installs the iptables NAT rules that make the sidecar
// transparent in the current network namespace (or, with -netns, in a named
// one created by `ip netns add`), as linkerd-init does in a pod:
//
//   - inbound TCP is redirected to the sidecar's inbound port (4143), except
//     the -skip-inbound-ports, which are RETURN rules;
//   - outbound TCP is redirected to the sidecar's outbound port (4140), except
//     traffic of the proxy's own uid, loopback traffic and the
//     -skip-outbound-ports.
//
// Run it as root (CAP_NET_ADMIN) before the application starts, for example in
// a Kubernetes init container. -dry-run prints the commands instead.
//
//	go run ./examples/sidecar/proxy-init -proxy-uid 2102 -skip-outbound-ports 443 -dry-run
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"

	"github.com/sniffsplice/sniff/examples/sidecar/internal/iptables"
	"github.com/sniffsplice/sniff/examples/sidecar/internal/policyfile"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "proxy-init:", err)
		os.Exit(2)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("proxy-init", flag.ContinueOnError)
	fs.SetOutput(stderr)
	inbound := fs.Uint("inbound-port", 4143, "the sidecar's inbound port (redirect target for inbound TCP)")
	outbound := fs.Uint("outbound-port", 4140, "the sidecar's outbound port (redirect target for outbound TCP)")
	uid := fs.Int("proxy-uid", 2102, "uid the sidecar runs as; its own connections are not redirected")
	skipIn := fs.String("skip-inbound-ports", "", "inbound ports that bypass the sidecar, e.g. 4190,4191,9000-9010")
	skipOut := fs.String("skip-outbound-ports", "", "outbound destination ports that bypass the sidecar")
	policy := fs.String("policy", "", "annotations file (config.linkerd.io/skip-inbound-ports, skip-outbound-ports) merged with the flags")
	netns := fs.String("netns", "", "run inside this named network namespace (ip netns exec NAME ...)")
	prog := fs.String("iptables", "iptables", "the iptables program (iptables, iptables-legacy, ip6tables ...)")
	dry := fs.Bool("dry-run", false, "print the commands instead of running them")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *inbound == 0 || *inbound > 65535 || *outbound == 0 || *outbound > 65535 {
		return fmt.Errorf("-inbound-port and -outbound-port must be in 1..65535")
	}
	cfg := iptables.Config{InboundPort: uint16(*inbound), OutboundPort: uint16(*outbound), ProxyUID: *uid, IPTables: *prog}
	in, out := *skipIn, *skipOut
	if *policy != "" {
		pf, err := policyfile.Load(*policy)
		if err != nil {
			return err
		}
		in = joinNonEmpty(in, pf.SkipInbound)
		out = joinNonEmpty(out, pf.SkipOutbound)
		if pf.ProxyUID >= 0 && !flagSet(fs, "proxy-uid") {
			cfg.ProxyUID = pf.ProxyUID
		}
	}
	var err error
	if cfg.SkipInbound, err = iptables.ParsePorts(in); err != nil {
		return fmt.Errorf("-skip-inbound-ports: %w", err)
	}
	if cfg.SkipOutbound, err = iptables.ParsePorts(out); err != nil {
		return fmt.Errorf("-skip-outbound-ports: %w", err)
	}
	rules, err := iptables.Rules(cfg)
	if err != nil {
		return err
	}
	for _, r := range rules {
		if *netns != "" {
			r = append([]string{"ip", "netns", "exec", *netns}, r...)
		}
		if *dry {
			fmt.Fprintln(stdout, strings.Join(r, " "))
			continue
		}
		cmd := exec.Command(r[0], r[1:]...)
		cmd.Stdout, cmd.Stderr = stdout, stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%s: %w", strings.Join(r, " "), err)
		}
	}
	return nil
}

func joinNonEmpty(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "," + b
}

func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
