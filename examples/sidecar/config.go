package main

import (
	"cmp"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/sniffsplice/sniff/detect"
	"github.com/sniffsplice/sniff/examples/sidecar/internal/policyfile"
	"github.com/sniffsplice/sniff/examples/sidecar/proxy"
	"github.com/sniffsplice/sniff/metrics"
	"github.com/sniffsplice/sniff/mtls"
	"github.com/sniffsplice/sniff/opaque"
	"github.com/sniffsplice/sniff/spiffe"
	"github.com/sniffsplice/sniff/splice"
)

// errUsage marks a configuration refused at start (exit status 2).
var errUsage = errors.New("bad configuration")

type config struct {
	proxy     *proxy.Proxy
	listeners proxy.Listeners
	drain     time.Duration // SIGTERM's grace
	id        spiffe.ID
	warnings  []string
}

// listFlag collects a repeatable flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func usageErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, args...))
}

func parseConfig(args []string, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("sidecar", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: sidecar [flags]\n\n"+
			"A mesh sidecar: outbound (-outbound, -forward), inbound (-inbound) and admin (-admin)\n"+
			"listeners, mutual TLS with SPIFFE identities (-cert, -key, -bundle), Linkerd-style port\n"+
			"policy (-policy annotations file, -opaque-ports, ...). See examples/sidecar/README.md.\n\nflags:\n")
		fs.PrintDefaults()
	}
	var (
		outbound   = fs.String("outbound", "", "transparent outbound listener, e.g. 127.0.0.1:4140 (destinations from SO_ORIGINAL_DST; Linux, behind proxy-init's rules)")
		inbound    = fs.String("inbound", "", "inbound listener, e.g. 0.0.0.0:4143 (mutual TLS from peer sidecars)")
		inboundTr  = fs.Bool("inbound-transparent", false, "treat connections redirected to -inbound from another port (SO_ORIGINAL_DST) as unmeshed clients of that local port")
		admin      = fs.String("admin", "", "admin listener for /metrics, /ready, /live, e.g. 127.0.0.1:4191")
		peer       = fs.String("peer", "", "send all meshed outbound traffic to this peer inbound address (default: the destination's address at -peer-port)")
		peerPort   = fs.Uint("peer-port", opaque.DefaultInboundPort, "the peers' inbound port, used when -peer is not set")
		peerID     = fs.String("peer-id", "", "the SPIFFE ID the peer must present (default: any identity of our trust domain)")
		appHost    = fs.String("app-host", "127.0.0.1", "where the local application listens (inbound target)")
		certFile   = fs.String("cert", "", "this sidecar's X.509-SVID certificate chain (PEM)")
		keyFile    = fs.String("key", "", "this sidecar's private key (PEM)")
		bundleFile = fs.String("bundle", "", "trust bundle of our trust domain (PEM)")
		policyPath = fs.String("policy", "", "policy file: Kubernetes-style annotations with Linkerd's keys (config.linkerd.io/opaque-ports, skip-inbound-ports, skip-outbound-ports)")
		opaqueP    = fs.String("opaque-ports", "", "opaque ports, Linkerd syntax (25,587,3306-3307); overrides the policy file; default Linkerd's list")
		skipIn     = fs.String("skip-inbound-ports", "", "inbound ports that bypass the proxy; overrides the policy file")
		skipOut    = fs.String("skip-outbound-ports", "", "outbound ports that bypass the proxy (plain TCP to the destination); overrides the policy file")
		detectTO   = fs.Duration("detect-timeout", 0, "protocol detection timeout (default 10s, as Linkerd)")
		noRace     = fs.Bool("no-race", false, "do not race the server's first bytes against the client's (Linkerd's behaviour: server-first protocols on undeclared ports wait for the detection timeout)")
		grpcMode   = fs.String("grpc", "active", "gRPC detection: off, passive or active")
		idle       = fs.Duration("idle-timeout", time.Hour, "close a proxied (opaque) connection idle this long, as Envoy's tcp_proxy does (0: never)")
		verbose    = fs.Bool("v", false, "log one line per connection to stderr")
		raceGrace  = fs.Duration("race-grace", detect.DefaultRaceGrace, "how long a client on an undeclared port may stay silent before its server is raced (dialled to see whether it speaks first)")
		maxRaces   = fs.Int("max-races", detect.DefaultMaxRaces, "server-first races at once; more silent clients wait for their own bytes or the detection timeout")
		maxHS      = fs.Int("max-handshakes", proxy.DefaultMaxHandshakes, "mutual-TLS handshakes to peers in progress at once; more wait for a slot")
		drain      = fs.Duration("drain-grace", 20*time.Second, "on SIGTERM: stop accepting, and give open connections this long to finish before closing them")
		noHTTP     = fs.Bool("no-http", false, "carry detected HTTP as bytes instead of serving it per request (no HTTP metrics, no l5d-client-id)")
		respTO     = fs.Duration("response-timeout", 0, "answer 504 when an upstream's response headers take longer (0: no limit)")
		headerTO   = fs.Duration("header-timeout", 0, "answer 408 and close when a client's request headers take longer to arrive (default 30s)")
		forwards   listFlag
		allow      listFlag
		declare    listFlag
	)
	fs.Var(&forwards, "forward", "explicit outbound listener LISTEN=DST, e.g. 127.0.0.1:15432=10.0.0.7:5432 (repeatable; replaces SO_ORIGINAL_DST)")
	fs.Var(&allow, "allow", "a SPIFFE ID allowed to connect inbound, or a prefix ending in /* (repeatable; default: our trust domain)")
	fs.Var(&declare, "declare", "declare a port's protocol, PORT=PROTO with PROTO one of HTTP/1, HTTP/2, gRPC, TLS, opaque, unknown (repeatable; Linkerd's proxyProtocol)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %w", errUsage, err)
	}
	if fs.NArg() > 0 {
		return nil, usageErr("unexpected arguments %q", fs.Args())
	}
	c := &config{}
	ls := &c.listeners
	ls.Outbound, ls.Inbound, ls.Admin, ls.InboundTransparent = *outbound, *inbound, *admin, *inboundTr
	for name, addr := range map[string]string{"-outbound": *outbound, "-inbound": *inbound, "-admin": *admin, "-peer": *peer} {
		if addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, usageErr("%s %q: want host:port", name, addr)
		}
	}
	for _, f := range forwards {
		listen, dst, ok := strings.Cut(f, "=")
		if !ok {
			return nil, usageErr("-forward %q: want LISTEN=DST", f)
		}
		if _, _, err := net.SplitHostPort(listen); err != nil {
			return nil, usageErr("-forward %q: listen address: want host:port", f)
		}
		ap, err := netip.ParseAddrPort(dst)
		if err != nil || ap.Port() == 0 {
			return nil, usageErr("-forward %q: destination: want ip:port", f)
		}
		ls.Forwards = append(ls.Forwards, proxy.Forward{Listen: listen, Dst: ap})
	}
	if ls.Outbound == "" && ls.Inbound == "" && len(ls.Forwards) == 0 {
		return nil, usageErr("nothing to do: give -outbound, -forward or -inbound")
	}
	if *inboundTr && ls.Inbound == "" {
		return nil, usageErr("-inbound-transparent needs -inbound")
	}
	if *peerPort == 0 || *peerPort > 65535 {
		return nil, usageErr("-peer-port %d: want 1..65535", *peerPort)
	}
	host, err := netip.ParseAddr(*appHost)
	if err != nil {
		return nil, usageErr("-app-host %q: want an IP address", *appHost)
	}

	// Identity.
	if *certFile == "" || *keyFile == "" || *bundleFile == "" {
		return nil, usageErr("-cert, -key and -bundle are required (the sidecar's SVID and trust bundle)")
	}
	svid, err := spiffe.LoadSVID(*certFile, *keyFile)
	if err != nil {
		return nil, usageErr("-cert/-key: %v", err)
	}
	c.id = svid.ID
	bundle, err := spiffe.LoadBundle(svid.ID.TrustDomain(), *bundleFile)
	if err != nil {
		return nil, usageErr("-bundle: %v", err)
	}
	src := mtls.NewStaticSource(svid, bundle)
	tlsCfg := &mtls.Config{SVID: src, Bundle: src}
	if len(allow) > 0 {
		var exact []spiffe.ID
		var auths []mtls.Authorizer
		for _, a := range allow {
			prefix, isPrefix := strings.CutSuffix(a, "/*")
			id, err := spiffe.ParseID(prefix)
			if err != nil {
				return nil, usageErr("-allow %q: %v", a, err)
			}
			if isPrefix {
				auths = append(auths, mtls.AuthorizePrefix(id))
			} else {
				exact = append(exact, id)
			}
		}
		if len(exact) > 0 {
			auths = append(auths, mtls.AuthorizeOneOf(exact...))
		}
		tlsCfg.Authorize = anyOf(auths)
	}
	var wantPeer spiffe.ID
	if *peerID != "" {
		if wantPeer, err = spiffe.ParseID(*peerID); err != nil {
			return nil, usageErr("-peer-id %q: %v", *peerID, err)
		}
	}

	// Policy: built-in defaults < policy file < flags.
	var layer opaque.Layer
	if *policyPath != "" {
		pf, err := policyfile.Load(*policyPath)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", errUsage, err)
		}
		layer = pf.Layer
		for _, k := range pf.Ignored {
			c.warnings = append(c.warnings, fmt.Sprintf("%s: %s is not used by this sidecar", *policyPath, k))
		}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for _, f := range []struct {
		name string
		val  string
		dst  **opaque.PortSet
	}{
		{"opaque-ports", *opaqueP, &layer.OpaquePorts},
		{"skip-inbound-ports", *skipIn, &layer.SkipInboundPorts},
		{"skip-outbound-ports", *skipOut, &layer.SkipOutboundPorts},
	} {
		if !set[f.name] {
			continue
		}
		ps, err := opaque.ParsePortSet(f.val)
		if err != nil {
			return nil, usageErr("-%s: %v", f.name, err)
		}
		*f.dst = &ps
	}
	if *detectTO < 0 {
		return nil, usageErr("-detect-timeout %s: want a positive duration", *detectTO)
	}
	if *detectTO > 0 {
		layer.DetectTimeout = *detectTO
	}
	pol := opaque.Policy{Workload: layer}
	for _, d := range declare {
		ps, proto, ok := strings.Cut(d, "=")
		port, err := strconv.ParseUint(ps, 10, 16)
		if !ok || err != nil || port == 0 {
			return nil, usageErr("-declare %q: want PORT=PROTO", d)
		}
		dec, err := opaque.ParseProxyProtocol(proto)
		if err != nil {
			return nil, usageErr("-declare %q: %v", d, err)
		}
		for _, dir := range []opaque.Direction{opaque.Inbound, opaque.Outbound} {
			pol.Ports = append(pol.Ports, opaque.PortPolicy{Direction: dir, Port: uint16(port), Decision: dec})
		}
	}
	table, err := opaque.Compile(pol)
	if err != nil {
		return nil, usageErr("policy: %v", err)
	}

	det := &detect.Detector{}
	switch *grpcMode {
	case "off":
	case "passive":
		det.GRPC = detect.GRPCPassive
	case "active":
		det.GRPC = detect.GRPCActive
	default:
		return nil, usageErr("-grpc %q: want off, passive or active", *grpcMode)
	}
	if *raceGrace < 0 {
		return nil, usageErr("-race-grace %s: want 0 or more", *raceGrace)
	}
	if *maxRaces <= 0 || *maxHS <= 0 {
		return nil, usageErr("-max-races %d, -max-handshakes %d: want 1 or more", *maxRaces, *maxHS)
	}
	if *drain < 0 {
		return nil, usageErr("-drain-grace %s: want 0 or more", *drain)
	}
	if *respTO < 0 {
		return nil, usageErr("-response-timeout %s: want a positive duration", *respTO)
	}
	if *headerTO < 0 {
		return nil, usageErr("-header-timeout %s: want a positive duration", *headerTO)
	}
	if *idle < 0 {
		return nil, usageErr("-idle-timeout %s: want a positive duration", *idle)
	}

	reg := metrics.New(metrics.Config{})
	p := &proxy.Proxy{
		TLS:             tlsCfg,
		Policy:          opaque.NewResolver(table),
		Detector:        det,
		InboundPort:     uint16(*peerPort),
		AppHost:         host,
		NoRace:          *noRace,
		NoHTTP:          *noHTTP,
		Race:            &detect.RacePolicy{Grace: cmp.Or(*raceGrace, -1), MaxRaces: *maxRaces},
		MaxHandshakes:   *maxHS,
		ResponseTimeout: *respTO,
		HeaderTimeout:   *headerTO,
		Joiner:          &splice.Joiner{IdleTimeout: *idle},
		Metrics:         reg,
	}
	if *peer != "" || !wantPeer.IsZero() {
		addr, port := *peer, strconv.Itoa(int(*peerPort))
		p.Peers = func(dst netip.AddrPort) (proxy.Peer, error) {
			a := addr
			if a == "" {
				a = net.JoinHostPort(dst.Addr().String(), port)
			}
			return proxy.Peer{Addr: a, ID: wantPeer}, nil
		}
	}
	if *verbose {
		p.OnEvent = func(ev proxy.Event) { logEvent(stderr, ev) }
	}
	ls.Metrics = proxy.MetricsHandler(reg)
	c.proxy = p
	c.drain = *drain
	return c, nil
}

// anyOf authorizes a peer that any of auths authorizes.
func anyOf(auths []mtls.Authorizer) mtls.Authorizer {
	if len(auths) == 1 {
		return auths[0]
	}
	return func(id spiffe.ID, chains [][]*x509.Certificate) error {
		var errs []error
		for _, a := range auths {
			err := a(id, chains)
			if err == nil {
				return nil
			}
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	}
}

func logEvent(w io.Writer, ev proxy.Event) {
	dir := "inbound"
	if ev.Direction == opaque.Outbound {
		dir = "outbound"
	}
	errs := ""
	if ev.Err != nil {
		errs = " err=" + strconv.Quote(ev.Err.Error())
	}
	det := ""
	if ev.Path == proxy.PathDetect || ev.Path == proxy.PathServerFirst || ev.Detect.Duration > 0 {
		// What detection saw: why it ended, after how many bytes and how long.
		det = fmt.Sprintf(" detect=%s/%d/%s", ev.Detect.Reason, ev.Detect.Bytes, ev.Detect.Duration.Round(time.Microsecond))
	}
	fmt.Fprintf(w, "%s %s dst=%s protocol=%s path=%s peer=%s bytes=%d/%d duration=%s%s%s\n",
		time.Now().UTC().Format(time.RFC3339Nano), dir, ev.Dst, ev.Protocol, ev.Path, ev.PeerID,
		ev.ClientBytes, ev.ServerBytes, ev.Duration.Round(time.Microsecond), det, errs)
}
