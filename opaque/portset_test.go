package opaque

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParsePortSetValid(t *testing.T) {
	bound(t)
	cases := []struct {
		in    string
		canon string
		n     int
	}{
		{"", "", 0},
		{"   ", "", 0},
		{"80", "80", 1},
		{"25,587,3306,4444,5432,6379,9300,11211", "25,587,3306,4444,5432,6379,9300,11211", 8},
		{"4567-4568", "4567-4568", 2},
		{" 80 , 443 ,\t8080 ", "80,443,8080", 3},
		{"80 - 90", "80-90", 11},
		{"80-80", "80", 1},
		{"81,80", "80-81", 2},                 // sorted and merged
		{"1-10,5-20,21", "1-21", 21},          // overlapping and adjacent ranges merge
		{"443,80,443,80", "80,443", 2},        // duplicates
		{"0080,00443", "80,443", 2},           // leading zeros
		{"1-65535", "1-65535", 65535},         // everything
		{"65535", "65535", 1},                 // top bit of the last word
		{"63,64,127-128", "63-64,127-128", 4}, // word boundaries
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			p, err := ParsePortSet(c.in)
			require.NoError(t, err)
			assert.Equal(t, c.canon, p.String())
			assert.Equal(t, c.n, p.Len())
			q, err := ParsePortSet(p.String())
			require.NoError(t, err)
			assert.True(t, p.Equal(q), "Parse(String()) must be the identity")
		})
	}
}

func TestParsePortSetErrors(t *testing.T) {
	bound(t)
	cases := []struct {
		in     string
		kind   error
		item   string
		index  int
		offset int
	}{
		{"0", ErrPortZero, "0", 1, 0},
		{"80,0-5", ErrPortZero, "0-5", 2, 3},
		{"80,65536", ErrPortTooLarge, "65536", 2, 3},
		{"1-70000", ErrPortTooLarge, "1-70000", 1, 0},
		{"90-80", ErrReversedRange, "90-80", 1, 0},
		{"80,,81", errEmptyItem, "", 2, 3},
		{"80,", errEmptyItem, "", 2, 3},
		{",80", errEmptyItem, "", 1, 0},
		{"80, ,81", errEmptyItem, "", 2, 4},
		{"http", errJunk, "http", 1, 0}, // names need a lookup
		{"80;81", errJunk, "80;81", 1, 0},
		{"80 81", errJunk, "80 81", 1, 0},
		{"80-", errJunk, "80-", 1, 0},
		{"80-x", errJunk, "80-x", 1, 0},
		{"80-90-100", errJunk, "80-90-100", 1, 0},
		{"8O", errJunk, "8O", 1, 0},
		{"80,\x00", errJunk, "\x00", 2, 3},
		{"１", errJunk, "１", 1, 0}, // fullwidth digit
		{"-80", errSign, "-80", 1, 0},
		{"+80", errSign, "+80", 1, 0},
		{"80--90", errSign, "80--90", 1, 0},
		{"80-+90", errSign, "80-+90", 1, 0},
		{"  99999999999999999999", errOverflow, "99999999999999999999", 1, 2},
		{"1-4294967296", errOverflow, "1-4294967296", 1, 0},
		{"4294967295", ErrPortTooLarge, "4294967295", 1, 0}, // fits 32 bits
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			p, err := ParsePortSet(c.in)
			require.Error(t, err)
			assert.True(t, p.IsEmpty())
			assert.ErrorIs(t, err, c.kind)
			var pe *PortListError
			require.ErrorAs(t, err, &pe)
			assert.Equal(t, c.item, pe.Item)
			assert.Equal(t, c.index, pe.Index)
			assert.Equal(t, c.offset, pe.Offset)
			assert.Contains(t, err.Error(), c.kind.Error())
			// Only one kind matches.
			for _, other := range []error{ErrPortZero, ErrPortTooLarge, ErrReversedRange, errEmptyItem, errJunk, errSign, errOverflow, ErrUnknownName} {
				if other != c.kind {
					assert.NotErrorIs(t, err, other)
				}
			}
		})
	}
}

func TestParsePortSetNamedPorts(t *testing.T) {
	bound(t)
	ports := map[string]uint16{"mysql": 3306, "http-admin": 9990, "8x0": 8000, "zero": 0}
	lookup := func(name string) (uint16, bool) { p, ok := ports[name]; return p, ok }

	p, err := ParsePortSetFunc("mysql, 80, http-admin, 8x0", lookup)
	require.NoError(t, err)
	assert.Equal(t, "80,3306,8000,9990", p.String())

	_, err = ParsePortSetFunc("80,redis", lookup)
	assert.ErrorIs(t, err, ErrUnknownName)
	var pe *PortListError
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, "redis", pe.Item)
	assert.Equal(t, 2, pe.Index)

	_, err = ParsePortSetFunc("zero", lookup)
	assert.ErrorIs(t, err, ErrPortZero)

	// Not a Kubernetes port name: upper case, too long, double dash.
	for _, bad := range []string{"MySQL", "a-very-long-port-name", "a--b", "a_b"} {
		_, err = ParsePortSetFunc(bad, lookup)
		assert.ErrorIs(t, err, errJunk, bad)
	}
	// Numbers are never looked up.
	p, err = ParsePortSetFunc("80-81", lookup)
	require.NoError(t, err)
	assert.Equal(t, "80-81", p.String())
}

func TestPortSetContains(t *testing.T) {
	bound(t)
	var zero PortSet
	for _, port := range []uint16{0, 1, 80, 65535} {
		assert.False(t, zero.Contains(port))
	}
	p := MustParsePortSet("1,63-65,127,128,1000-2000,65535")
	want := map[uint16]bool{1: true, 63: true, 64: true, 65: true, 127: true, 128: true, 1000: true, 1500: true, 2000: true, 65535: true}
	for port := 0; port <= 65535; port++ {
		if w := want[uint16(port)] || (port >= 1000 && port <= 2000); p.Contains(uint16(port)) != w {
			t.Fatalf("Contains(%d) = %v, want %v", port, !w, w)
		}
	}
	assert.False(t, PortRange(0, 10).Contains(0), "port 0 is never a member")
	assert.False(t, NewPortSet(0).Contains(0))
	assert.True(t, NewPortSet(0).IsEmpty())
}

func TestDefaultOpaquePorts(t *testing.T) {
	bound(t)
	d := DefaultOpaquePorts()
	assert.Equal(t, "25,587,3306,4444,5432,6379,9300,11211", d.String())
	ext := d.Union(MustParsePortSet("4567-4568"))
	assert.Equal(t, "25,587,3306,4444,4567-4568,5432,6379,9300,11211", ext.String())
	// Extending returned a new set; the default is unchanged.
	assert.Equal(t, "25,587,3306,4444,5432,6379,9300,11211", DefaultOpaquePorts().String())
	assert.Equal(t, "25,587,4444,5432,6379,9300,11211", d.Minus(NewPortSet(3306)).String())
	assert.Equal(t, "3306,5432", d.Intersect(PortRange(1000, 6000).Minus(NewPortSet(4444))).String())
}

func TestPortSetAlgebraRandom(t *testing.T) {
	bound(t)
	r := rand.New(rand.NewPCG(1, 2))
	for range 50 {
		a, b := map[uint16]bool{}, map[uint16]bool{}
		var as, bs []uint16
		for range r.IntN(200) {
			p := uint16(r.IntN(65536))
			as = append(as, p)
			a[p] = p != 0
		}
		for range r.IntN(200) {
			p := uint16(r.IntN(65536))
			bs = append(bs, p)
			b[p] = p != 0
		}
		A, B := NewPortSet(as...), NewPortSet(bs...)
		u, i, m := A.Union(B), A.Intersect(B), A.Minus(B)
		var got []uint16
		for p := range u.All() {
			got = append(got, p)
		}
		require.True(t, slices.IsSorted(got))
		for port := range 65536 {
			p := uint16(port)
			if u.Contains(p) != (a[p] || b[p]) || i.Contains(p) != (a[p] && b[p]) || m.Contains(p) != (a[p] && !b[p]) {
				t.Fatalf("port %d: union %v, intersection %v, difference %v; in a: %v, in b: %v",
					p, u.Contains(p), i.Contains(p), m.Contains(p), a[p], b[p])
			}
		}
		require.Equal(t, len(got), u.Len())
		back, err := ParsePortSet(u.String())
		require.NoError(t, err)
		require.True(t, back.Equal(u))
	}
}

func TestPortSetEqualAndEmpty(t *testing.T) {
	bound(t)
	var zero PortSet
	empty := MustParsePortSet("80").Minus(MustParsePortSet("80"))
	assert.True(t, zero.Equal(empty))
	assert.True(t, empty.Equal(zero))
	assert.True(t, empty.IsEmpty())
	assert.Equal(t, "", empty.String())
	assert.False(t, zero.Equal(NewPortSet(1)))
	assert.True(t, NewPortSet(1, 2).Equal(PortRange(1, 2)))
	assert.True(t, PortRange(10, 5).IsEmpty())
}

func TestPortSetText(t *testing.T) {
	bound(t)
	type cfg struct {
		Opaque PortSet `json:"opaque"`
	}
	var c cfg
	require.NoError(t, json.Unmarshal([]byte(`{"opaque":"3306, 5432-5433"}`), &c))
	assert.Equal(t, "3306,5432-5433", c.Opaque.String())
	out, err := json.Marshal(c)
	require.NoError(t, err)
	assert.JSONEq(t, `{"opaque":"3306,5432-5433"}`, string(out))
	err = json.Unmarshal([]byte(`{"opaque":"80,0"}`), &c)
	assert.ErrorIs(t, err, ErrPortZero)
}

func TestPortSetRangesStopEarly(t *testing.T) {
	bound(t)
	p := MustParsePortSet("1-3,10,20-30")
	var got [][2]uint16
	for lo, hi := range p.Ranges() {
		got = append(got, [2]uint16{lo, hi})
		if len(got) == 2 {
			break
		}
	}
	assert.Equal(t, [][2]uint16{{1, 3}, {10, 10}}, got)
	n := 0
	for range p.All() {
		n++
		if n == 3 {
			break
		}
	}
	assert.Equal(t, 3, n)
}

func TestPortListErrorMessage(t *testing.T) {
	bound(t)
	_, err := ParsePortSet("80, 443, 70000")
	require.Error(t, err)
	assert.Equal(t, `opaque: port list item 3 "70000" (byte 9): port is greater than 65535`, err.Error())
	assert.True(t, errors.Is(err, ErrPortTooLarge))
}
