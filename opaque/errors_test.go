package opaque

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// oneLine checks the message convention: one line, the package prefix exactly once, at the start.
func oneLine(t *testing.T, err error) {
	t.Helper()
	require.Error(t, err)
	msg := err.Error()
	assert.NotContains(t, msg, "\n", msg)
	assert.True(t, strings.HasPrefix(msg, prefix), msg)
	assert.Equal(t, 1, strings.Count(msg, prefix), msg)
}

// TestPolicyErrorsOneLine: every way Compile refuses a policy prints one line with one prefix and
// still matches its kind with errors.Is and its type with errors.As.
func TestPolicyErrorsOneLine(t *testing.T) {
	bound(t)
	cases := []struct {
		name string
		p    Policy
		kind error
		text string
	}{
		{"unknown direction", Policy{Ports: []PortPolicy{{Direction: 7, Port: 80}}}, ErrInvalidPolicy,
			`opaque: Ports[0] (Direction(7) port 80): invalid port policy: unknown direction`},
		{"no port", Policy{Ports: []PortPolicy{{}}}, ErrInvalidPolicy,
			`opaque: Ports[0] (inbound port ""): invalid port policy: neither a port number nor a name`},
		{"conflict", Policy{Ports: []PortPolicy{
			{Port: 80, Decision: Decision{Action: ActionOpaque}},
			{Port: 80, Decision: Decision{Action: ActionSkip}},
		}}, ErrConflict, `opaque: Ports[1] (inbound port 80): conflicting policies for one port: already opaque, now skip`},
		{"detect with protocol", Policy{Ports: []PortPolicy{{Port: 80, Decision: Decision{Protocol: "HTTP/1"}}}},
			ErrInvalidPolicy, `opaque: Ports[0] (inbound port 80): invalid port policy: detect with a protocol`},
		{"unknown name", Policy{Ports: []PortPolicy{{Name: "http"}}}, ErrUnknownName,
			`opaque: Ports[0] (inbound port "http"): unknown port name`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Compile(tc.p)
			oneLine(t, err)
			assert.Equal(t, tc.text, err.Error())
			assert.ErrorIs(t, err, tc.kind)
			var pe *PolicyError
			require.ErrorAs(t, err, &pe)
		})
	}
}

// TestAnnotationErrorsOneLine: two bad annotations are reported together on one line under one
// prefix (the port list error inside an annotation error loses its own), and errors.As and
// errors.Is reach each of them and their kinds.
func TestAnnotationErrorsOneLine(t *testing.T) {
	bound(t)
	_, err := LayerFromAnnotations(map[string]string{
		AnnotationOpaquePorts:            "3306,0",
		AnnotationEnableExternalProfiles: "maybe",
	}, nil)
	oneLine(t, err)
	assert.Equal(t, `opaque: annotation config.linkerd.io/opaque-ports="3306,0": port list item 2 "0" (byte 5): `+
		`port 0 is not a valid port; annotation config.linkerd.io/enable-external-profiles="maybe": want "true" or "false"`,
		err.Error())
	assert.ErrorIs(t, err, ErrInvalidAnnotation)
	assert.ErrorIs(t, err, ErrNotBool)
	assert.ErrorIs(t, err, ErrPortZero)
	var pl *PortListError
	require.ErrorAs(t, err, &pl)
	assert.Equal(t, "0", pl.Item)

	var keys []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var ae *AnnotationError
		require.True(t, errors.As(e, &ae))
		oneLine(t, e)
		keys = append(keys, ae.Key)
	}
	assert.Equal(t, []string{AnnotationOpaquePorts, AnnotationEnableExternalProfiles}, keys)
}

// TestHeaderErrorOneLine: a header error wrapping an error of this package prints one prefix.
func TestHeaderErrorOneLine(t *testing.T) {
	bound(t)
	err := &HeaderError{Reason: RejectBadName, Err: &PortListError{Item: "x", Index: 1, Err: errJunk}}
	oneLine(t, err)
	err = &HeaderError{Reason: RejectShort, Detail: "3 bytes", Err: errors.New("unexpected EOF")}
	oneLine(t, err)
	assert.Equal(t, "opaque: connection ended inside the transport header: 3 bytes: unexpected EOF", err.Error())
}
