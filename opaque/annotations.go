package opaque

import (
	"errors"
	"strconv"
	"strings"
)

// Linkerd's annotation keys that LayerFromAnnotations reads.
const (
	// AnnotationOpaquePorts lists ports proxied without detection. It is set on the destination: on
	// a workload it covers connections to the workload (Policy.Workload, inbound); on a Service,
	// clients' connections to it (Policy.Destination, outbound); on a namespace, every workload and
	// service in it that sets none (Policy.Namespace). See Policy for how a proxy without
	// destination information applies it.
	AnnotationOpaquePorts = "config.linkerd.io/opaque-ports"
	// AnnotationSkipInboundPorts lists inbound ports that bypass the proxy.
	AnnotationSkipInboundPorts = "config.linkerd.io/skip-inbound-ports"
	// AnnotationSkipOutboundPorts lists outbound ports that bypass the proxy. It is set on the
	// source (the client workload).
	AnnotationSkipOutboundPorts = "config.linkerd.io/skip-outbound-ports"
	// AnnotationEnableExternalProfiles, "true" or "false", enables service profiles for
	// destinations outside the cluster.
	AnnotationEnableExternalProfiles = "config.linkerd.io/enable-external-profiles"
)

// ErrInvalidAnnotation is matched (errors.Is) by every *AnnotationError.
var ErrInvalidAnnotation = errors.New("invalid annotation")

// AnnotationError reports an annotation whose value cannot be used. Err is a *PortListError for
// port lists (so errors.Is(err, ErrPortZero) and the like work through it) or ErrNotBool.
type AnnotationError struct {
	Key   string
	Value string
	Err   error
}

// ErrNotBool is the kind of AnnotationError for a boolean annotation whose value is neither "true"
// nor "false".
var ErrNotBool = errors.New(`want "true" or "false"`)

// Error describes the problem, naming what was rejected.
func (e *AnnotationError) Error() string {
	v := e.Value
	if len(v) > 64 {
		v = v[:64] + "..."
	}
	return prefix + "annotation " + e.Key + "=" + strconv.Quote(v) + ": " + unprefixed(e.Err)
}

// Unwrap returns the underlying error.
func (e *AnnotationError) Unwrap() error { return e.Err }

// Is matches ErrInvalidAnnotation.
func (e *AnnotationError) Is(target error) bool { return target == ErrInvalidAnnotation }

// LayerFromAnnotations builds a Layer from Kubernetes-style annotations (metadata.annotations of a
// namespace, workload or service) with Linkerd's keys: AnnotationOpaquePorts,
// AnnotationSkipInboundPorts, AnnotationSkipOutboundPorts and AnnotationEnableExternalProfiles.
// Other keys are ignored. A key that is present sets the layer's field, replacing the value of
// lower layers (an empty port list means "no ports"); a missing key inherits. Port lists use
// ParsePortSetFunc syntax; lookup (may be nil) resolves container port names.
//
// Every invalid annotation is reported, each as an *AnnotationError naming its key, in key order,
// on one line (errors.As finds each of them); the Layer returned with an error holds the valid
// ones.
func LayerFromAnnotations(annotations map[string]string, lookup PortLookup) (Layer, error) {
	var l Layer
	var errs []error
	ports := func(key string, dst **PortSet) {
		v, ok := annotations[key]
		if !ok {
			return
		}
		p, err := ParsePortSetFunc(v, lookup)
		if err != nil {
			errs = append(errs, &AnnotationError{Key: key, Value: v, Err: err})
			return
		}
		*dst = &p
	}
	ports(AnnotationOpaquePorts, &l.OpaquePorts)
	ports(AnnotationSkipInboundPorts, &l.SkipInboundPorts)
	ports(AnnotationSkipOutboundPorts, &l.SkipOutboundPorts)
	if v, ok := annotations[AnnotationEnableExternalProfiles]; ok {
		switch t := strings.TrimSpace(v); {
		case strings.EqualFold(t, "true"):
			b := true
			l.EnableExternalProfiles = &b
		case strings.EqualFold(t, "false"):
			b := false
			l.EnableExternalProfiles = &b
		default:
			errs = append(errs, &AnnotationError{Key: AnnotationEnableExternalProfiles, Value: v, Err: ErrNotBool})
		}
	}
	return l, joinErrors(errs)
}
