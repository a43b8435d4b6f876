// Package policyfile reads the sidecar's policy file: Kubernetes-style pod
// annotations with Linkerd's keys, so the words a Linkerd user already writes
// configure this sidecar too.
//
// Two line formats are accepted, mixed freely, with blank lines and # comments:
//
//	config.linkerd.io/opaque-ports: "3306,5432"      # YAML, as in a manifest
//	config.linkerd.io/skip-outbound-ports="443"      # Kubernetes downward API file
//
// An "annotations:" line (as copied from a manifest) is ignored. Keys outside
// config.linkerd.io/ are ignored; config.linkerd.io/ keys this sidecar does
// not understand are reported in File.Ignored so the caller can warn.
package policyfile

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/sniffsplice/sniff/opaque"
)

// The annotation keys this sidecar understands.
const (
	KeyOpaquePorts       = "config.linkerd.io/opaque-ports"
	KeySkipInboundPorts  = "config.linkerd.io/skip-inbound-ports"
	KeySkipOutboundPorts = "config.linkerd.io/skip-outbound-ports"
	// KeyDetectTimeout is not a Linkerd annotation (Linkerd sets it with the
	// proxy's LINKERD2_PROXY_*_DETECT_TIMEOUT environment); it is accepted
	// here so the file can carry it too.
	KeyDetectTimeout = "config.linkerd.io/proxy-detect-timeout"
	// KeyProxyUID is the uid the proxy runs as (used by proxy-init).
	KeyProxyUID = "config.linkerd.io/proxy-uid"
)

// ErrSyntax is wrapped by every error about a malformed file.
var ErrSyntax = errors.New("policy file")

// File is what a policy file says. Port lists are kept as validated strings
// in Linkerd's syntax ("25,587,4567-4568").
type File struct {
	OpaquePorts  string // "" when absent (the defaults apply)
	HasOpaque    bool   // the key was present (an empty value means "no opaque ports")
	SkipInbound  string
	SkipOutbound string
	// DetectTimeout is 0 when absent.
	DetectTimeout time.Duration
	ProxyUID      int // -1 when absent
	// Ignored lists config.linkerd.io/ keys present but not used here.
	Ignored []string
	// Layer is the policy layer the annotations make (opaque.LayerFromAnnotations),
	// with DetectTimeout set.
	Layer opaque.Layer
}

// Load reads and parses the file at path.
func Load(path string) (File, error) {
	f, err := os.Open(path)
	if err != nil {
		return File{}, fmt.Errorf("%w: %w", ErrSyntax, err)
	}
	defer f.Close()
	pf, err := Parse(f)
	if err != nil {
		return File{}, fmt.Errorf("%s: %w", path, err)
	}
	return pf, nil
}

// Parse reads a policy file from r.
func Parse(r io.Reader) (File, error) {
	pf := File{ProxyUID: -1}
	sc := bufio.NewScanner(r)
	seen := map[string]int{}
	annotations := map[string]string{}
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line == "annotations:" {
			continue
		}
		key, val, err := splitLine(line)
		if err != nil {
			return File{}, fmt.Errorf("%w: line %d: %w", ErrSyntax, n, err)
		}
		if prev, dup := seen[key]; dup {
			return File{}, fmt.Errorf("%w: line %d: %s already set on line %d", ErrSyntax, n, key, prev)
		}
		seen[key] = n
		if !strings.HasPrefix(key, "config.linkerd.io/") {
			continue
		}
		annotations[key] = val
		bad := func(err error) error {
			return fmt.Errorf("%w: line %d: %s: %w", ErrSyntax, n, key, err)
		}
		switch key {
		case KeyOpaquePorts, KeySkipInboundPorts, KeySkipOutboundPorts:
			ps, err := opaque.ParsePortSet(val)
			if err != nil {
				return File{}, bad(err)
			}
			s := ps.String()
			switch key {
			case KeyOpaquePorts:
				pf.OpaquePorts, pf.HasOpaque = s, true
			case KeySkipInboundPorts:
				pf.SkipInbound = s
			default:
				pf.SkipOutbound = s
			}
		case opaque.AnnotationEnableExternalProfiles:
			// validated by LayerFromAnnotations, not used by the sidecar
			pf.Ignored = append(pf.Ignored, key)
		case KeyDetectTimeout:
			d, err := time.ParseDuration(val)
			if err != nil || d <= 0 {
				return File{}, bad(fmt.Errorf("want a positive duration like 10s, got %q", val))
			}
			pf.DetectTimeout = d
		case KeyProxyUID:
			uid, err := strconv.Atoi(val)
			if err != nil || uid < 0 {
				return File{}, bad(fmt.Errorf("want a uid, got %q", val))
			}
			pf.ProxyUID = uid
		default:
			pf.Ignored = append(pf.Ignored, key)
		}
	}
	if err := sc.Err(); err != nil {
		return File{}, fmt.Errorf("%w: %w", ErrSyntax, err)
	}
	l, err := opaque.LayerFromAnnotations(annotations, nil)
	if err != nil {
		return File{}, fmt.Errorf("%w: %w", ErrSyntax, err)
	}
	l.DetectTimeout = pf.DetectTimeout
	pf.Layer = l
	return pf, nil
}

// splitLine splits `key: value` or `key="value"`; values may be quoted.
func splitLine(line string) (key, val string, err error) {
	i := strings.IndexAny(line, ":=")
	if i <= 0 {
		return "", "", fmt.Errorf("want `key: value` or `key=\"value\"`, got %q", line)
	}
	key = strings.TrimSpace(line[:i])
	if strings.ContainsAny(key, " \t\"'") {
		return "", "", fmt.Errorf("bad key %q", key)
	}
	val = strings.TrimSpace(line[i+1:])
	if c := strings.Index(val, " #"); c >= 0 && (val == "" || (val[0] != '"' && val[0] != '\'')) {
		val = strings.TrimSpace(val[:c])
	}
	switch {
	case strings.HasPrefix(val, `"`):
		end := strings.LastIndex(val, `"`)
		if end == 0 {
			return "", "", fmt.Errorf("unterminated quote in %q", line)
		}
		rest := strings.TrimSpace(val[end+1:])
		if rest != "" && rest[0] != '#' {
			return "", "", fmt.Errorf("text after the quoted value in %q", line)
		}
		if val, err = strconv.Unquote(val[:end+1]); err != nil {
			return "", "", fmt.Errorf("bad quoted value in %q", line)
		}
	case strings.HasPrefix(val, "'"):
		end := strings.LastIndex(val, "'")
		if end == 0 {
			return "", "", fmt.Errorf("unterminated quote in %q", line)
		}
		val = val[1:end]
	}
	return key, val, nil
}
