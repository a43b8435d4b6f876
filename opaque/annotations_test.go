package opaque

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLayerFromAnnotations(t *testing.T) {
	bound(t)
	l, err := LayerFromAnnotations(map[string]string{
		AnnotationOpaquePorts:            "3306, 4567-4568",
		AnnotationSkipInboundPorts:       "22",
		AnnotationSkipOutboundPorts:      "",
		AnnotationEnableExternalProfiles: "true",
		"config.linkerd.io/proxy-cpu":    "1", // not ours: ignored
		"unrelated":                      "x",
	}, nil)
	require.NoError(t, err)
	require.NotNil(t, l.OpaquePorts)
	assert.Equal(t, "3306,4567-4568", l.OpaquePorts.String())
	require.NotNil(t, l.SkipInboundPorts)
	assert.Equal(t, "22", l.SkipInboundPorts.String())
	require.NotNil(t, l.SkipOutboundPorts, "an empty value is set (to no ports), not missing")
	assert.True(t, l.SkipOutboundPorts.IsEmpty())
	require.NotNil(t, l.EnableExternalProfiles)
	assert.True(t, *l.EnableExternalProfiles)

	empty, err := LayerFromAnnotations(nil, nil)
	require.NoError(t, err)
	assert.Equal(t, Layer{}, empty, "no annotations: every field inherits")

	f, err := LayerFromAnnotations(map[string]string{AnnotationEnableExternalProfiles: " False "}, nil)
	require.NoError(t, err)
	assert.False(t, *f.EnableExternalProfiles)
}

func TestLayerFromAnnotationsErrors(t *testing.T) {
	bound(t)
	cases := []struct {
		key, value string
		kind       error
	}{
		{AnnotationOpaquePorts, "0", ErrPortZero},
		{AnnotationOpaquePorts, "80,70000", ErrPortTooLarge},
		{AnnotationSkipInboundPorts, "90-80", ErrReversedRange},
		{AnnotationSkipOutboundPorts, "80,,81", errEmptyItem},
		{AnnotationOpaquePorts, "mysql", errJunk},
		{AnnotationSkipInboundPorts, "-22", errSign},
		{AnnotationSkipOutboundPorts, "123456789012", errOverflow},
		{AnnotationEnableExternalProfiles, "yes", ErrNotBool},
	}
	for _, c := range cases {
		t.Run(c.key+"="+c.value, func(t *testing.T) {
			l, err := LayerFromAnnotations(map[string]string{c.key: c.value, AnnotationOpaquePorts + "x": "ignored"}, nil)
			require.Error(t, err)
			assert.ErrorIs(t, err, c.kind)
			assert.ErrorIs(t, err, ErrInvalidAnnotation)
			var ae *AnnotationError
			require.ErrorAs(t, err, &ae)
			assert.Equal(t, c.key, ae.Key)
			assert.Equal(t, c.value, ae.Value)
			assert.Contains(t, err.Error(), c.key)
			assert.Equal(t, Layer{}, l, "the bad annotation set nothing")
		})
	}
}

func TestLayerFromAnnotationsReportsEveryBadKey(t *testing.T) {
	bound(t)
	l, err := LayerFromAnnotations(map[string]string{
		AnnotationOpaquePorts:            "3306",
		AnnotationSkipInboundPorts:       "x",
		AnnotationSkipOutboundPorts:      "0",
		AnnotationEnableExternalProfiles: "maybe",
	}, nil)
	require.Error(t, err)
	var keys []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var ae *AnnotationError
		require.True(t, errors.As(e, &ae))
		keys = append(keys, ae.Key)
	}
	assert.Equal(t, []string{AnnotationSkipInboundPorts, AnnotationSkipOutboundPorts, AnnotationEnableExternalProfiles}, keys)
	require.NotNil(t, l.OpaquePorts, "the valid annotation is kept")
	assert.Equal(t, "3306", l.OpaquePorts.String())
}

// TestAnnotationLayersReplaceNotMerge: a namespace annotates opaque ports, a
// workload annotates others; the workload's list is the whole list.
func TestAnnotationLayersReplaceNotMerge(t *testing.T) {
	bound(t)
	ns, err := LayerFromAnnotations(map[string]string{
		AnnotationOpaquePorts:       "5000",
		AnnotationSkipOutboundPorts: "4000",
	}, nil)
	require.NoError(t, err)
	wl, err := LayerFromAnnotations(map[string]string{AnnotationOpaquePorts: "6000"}, nil)
	require.NoError(t, err)
	tb, err := Compile(Policy{Namespace: ns, Workload: wl})
	require.NoError(t, err)
	assert.Equal(t, detect10s, tb.Resolve(Inbound, 5000), "the namespace list is replaced")
	assert.Equal(t, detect10s, tb.Resolve(Inbound, 3306), "the default list is replaced")
	assert.Equal(t, opaqueD, tb.Resolve(Inbound, 6000))
	assert.Equal(t, skipD, tb.Resolve(Outbound, 4000), "unset on the workload: inherited from the namespace")
	assert.Equal(t, "6000", tb.OpaquePorts(Inbound).String())
}
