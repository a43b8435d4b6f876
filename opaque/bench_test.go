package opaque

import (
	"bytes"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
)

// benchPorts is a fixed pseudo-random mix of ports: half from the default
// opaque list, half anywhere.
var benchPorts = func() []uint16 {
	r := rand.New(rand.NewPCG(3, 4))
	// Contains, not All: a package variable runs before any test can bound
	// it, and a planted bug that makes All loop would hang the test binary.
	var def []uint16
	for p := range 1 << 16 {
		if DefaultOpaquePorts().Contains(uint16(p)) {
			def = append(def, uint16(p))
		}
	}
	ps := make([]uint16, 1024)
	for i := range ps {
		if i%2 == 0 {
			ps[i] = def[r.IntN(len(def))]
		} else {
			ps[i] = uint16(r.IntN(65536))
		}
	}
	return ps
}()

var sinkBool bool
var sinkDecision Decision

// BenchmarkPortSetContains compares PortSet.Contains with the obvious
// alternatives for the same set: a Go map and a sorted slice.
func BenchmarkPortSetContains(b *testing.B) {
	set := DefaultOpaquePorts().Union(MustParsePortSet("4567-4568,8000-8100"))
	b.Run("PortSet", func(b *testing.B) {
		b.ReportAllocs()
		hit := false
		for i := 0; b.Loop(); i++ {
			hit = hit != set.Contains(benchPorts[i&1023])
		}
		sinkBool = hit
	})
	m := map[uint16]struct{}{}
	for p := range set.All() {
		m[p] = struct{}{}
	}
	b.Run("map", func(b *testing.B) {
		b.ReportAllocs()
		hit := false
		for i := 0; b.Loop(); i++ {
			_, ok := m[benchPorts[i&1023]]
			hit = hit != ok
		}
		sinkBool = hit
	})
	sorted := slices.Collect(set.All())
	b.Run("sorted-slice", func(b *testing.B) {
		b.ReportAllocs()
		hit := false
		for i := 0; b.Loop(); i++ {
			_, ok := slices.BinarySearch(sorted, benchPorts[i&1023])
			hit = hit != ok
		}
		sinkBool = hit
	})
}

// mutexResolver is the baseline a Resolver replaces: a map of explicit
// decisions and port sets behind a read-write lock.
type mutexResolver struct {
	mu       sync.RWMutex
	explicit map[uint16]Decision
	skip     PortSet
	opaque   PortSet
}

func (m *mutexResolver) Resolve(port uint16) Decision {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if d, ok := m.explicit[port]; ok {
		return d
	}
	switch {
	case m.skip.Contains(port):
		return Decision{Action: ActionSkip}
	case m.opaque.Contains(port):
		return Decision{Action: ActionOpaque}
	}
	return Decision{Action: ActionDetect, DetectTimeout: DefaultDetectTimeout}
}

func benchPolicy() Policy {
	return Policy{
		Workload: Layer{SkipInboundPorts: new(MustParsePortSet("22,4190-4191"))},
		Ports: []PortPolicy{
			{Port: 8080, Decision: Decision{Action: ActionDeclared, Protocol: "HTTP/1"}},
			{Port: 50051, Decision: Decision{Action: ActionDeclared, Protocol: "gRPC"}},
		},
	}
}

// BenchmarkResolve measures Resolver.Resolve (one atomic load, two indexed
// loads) against the RWMutex-and-map baseline, single-threaded and from all
// cores at once.
func BenchmarkResolve(b *testing.B) {
	tb, err := Compile(benchPolicy())
	if err != nil {
		b.Fatal(err)
	}
	r := NewResolver(tb)
	b.Run("Resolver", func(b *testing.B) {
		b.ReportAllocs()
		var d Decision
		for i := 0; b.Loop(); i++ {
			d = r.Resolve(Inbound, benchPorts[i&1023])
		}
		sinkDecision = d
	})
	b.Run("Resolver-zero-value", func(b *testing.B) {
		var z Resolver
		b.ReportAllocs()
		var d Decision
		for i := 0; b.Loop(); i++ {
			d = z.Resolve(Outbound, benchPorts[i&1023])
		}
		sinkDecision = d
	})
	m := &mutexResolver{
		explicit: map[uint16]Decision{8080: {Action: ActionDeclared, Protocol: "HTTP/1"}, 50051: {Action: ActionDeclared, Protocol: "gRPC"}},
		skip:     MustParsePortSet("22,4190-4191"),
		opaque:   DefaultOpaquePorts(),
	}
	b.Run("RWMutex-map", func(b *testing.B) {
		b.ReportAllocs()
		var d Decision
		for i := 0; b.Loop(); i++ {
			d = m.Resolve(benchPorts[i&1023])
		}
		sinkDecision = d
	})
	b.Run("Resolver-parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			var d Decision
			for i := 0; pb.Next(); i++ {
				d = r.Resolve(Inbound, benchPorts[i&1023])
			}
			_ = d
		})
	})
	b.Run("RWMutex-map-parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			var d Decision
			for i := 0; pb.Next(); i++ {
				d = m.Resolve(benchPorts[i&1023])
			}
			_ = d
		})
	})
}

// BenchmarkCompile is the cost of one hot reload (Compile; Store is one
// atomic write).
func BenchmarkCompile(b *testing.B) {
	p := benchPolicy()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Compile(p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParsePortSet(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParsePortSet("25,587,3306,4444,5432,6379,9300,11211,4567-4568"); err != nil {
			b.Fatal(err)
		}
	}
}

var benchHeader = Header{Port: 8080, Name: "web.default.svc.cluster.local", SessionProtocol: SessionHTTP2}

// BenchmarkHeaderEncode compares our protowire encoder with the protobuf
// runtime marshalling the same message (dynamicpb from the .proto).
func BenchmarkHeaderEncode(b *testing.B) {
	b.Run("AppendBinary", func(b *testing.B) {
		buf := make([]byte, 0, 128)
		b.ReportAllocs()
		for b.Loop() {
			var err error
			if buf, err = benchHeader.AppendBinary(buf[:0]); err != nil {
				b.Fatal(err)
			}
		}
		b.SetBytes(int64(len(buf)))
	})
	b.Run("WriteHeader", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := WriteHeader(io.Discard, benchHeader); err != nil {
				b.Fatal(err)
			}
		}
	})
	m := benchHeaderMessage(b)
	b.Run("protobuf-runtime-message-only", func(b *testing.B) {
		buf := make([]byte, 0, 128)
		b.ReportAllocs()
		for b.Loop() {
			var err error
			if buf, err = (proto.MarshalOptions{}).MarshalAppend(buf[:0], m); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// benchHeaderMessage is benchHeader as a dynamic protobuf message, for
// comparing with the protobuf runtime.
func benchHeaderMessage(b *testing.B) *dynamicpb.Message {
	md := headerDescriptor(b)
	spd := md.Fields().ByName("session_protocol").Message()
	m := dynamicpb.NewMessage(md)
	m.Set(md.Fields().ByName("port"), protoreflect.ValueOfInt32(int32(benchHeader.Port)))
	m.Set(md.Fields().ByName("name"), protoreflect.ValueOfString(benchHeader.Name))
	sp := dynamicpb.NewMessage(spd)
	h2 := spd.Fields().ByName("http2")
	sp.Set(h2, protoreflect.ValueOfMessage(dynamicpb.NewMessage(h2.Message())))
	m.Set(md.Fields().ByName("session_protocol"), protoreflect.ValueOfMessage(sp))
	return m
}

// BenchmarkHeaderDecode reads a header (and stops at its end) from a reader,
// and compares decoding the message alone with the protobuf runtime.
func BenchmarkHeaderDecode(b *testing.B) {
	enc, err := benchHeader.MarshalBinary()
	if err != nil {
		b.Fatal(err)
	}
	b.Run("ReadHeader", func(b *testing.B) {
		r := bytes.NewReader(enc)
		b.ReportAllocs()
		b.SetBytes(int64(len(enc)))
		for b.Loop() {
			r.Reset(enc)
			if _, err := ReadHeader(r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ReadHeader-no-name", func(b *testing.B) {
		enc, _ := Header{Port: 3306}.MarshalBinary()
		r := bytes.NewReader(enc)
		b.ReportAllocs()
		for b.Loop() {
			r.Reset(enc)
			if _, err := ReadHeader(r); err != nil {
				b.Fatal(err)
			}
		}
	})
	msg := enc[fixedLen:]
	b.Run("decodeMessage", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodeMessage(msg); err != nil {
				b.Fatal(err)
			}
		}
	})
	md := headerDescriptor(b)
	b.Run("protobuf-runtime-message-only", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m := dynamicpb.NewMessage(md)
			if err := proto.Unmarshal(msg, m); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkSideBySide interleaves the compared implementations in every
// iteration (a batch of 1024 operations each, the order rotating), so that
// load from other processes on a shared machine hits all of them alike.
// Each reports ns per operation as a metric, and the ratios are taken from
// the summed time of each kind.
func BenchmarkSideBySide(b *testing.B) {
	type kind struct {
		name string
		run  func() // one batch of 1024 operations
	}
	side := func(b *testing.B, kinds []kind, baseline string) {
		total := make([]time.Duration, len(kinds))
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			for j := range kinds {
				k := (i + j) % len(kinds)
				start := time.Now()
				kinds[k].run()
				total[k] += time.Since(start)
			}
			i++
		}
		base := time.Duration(0)
		for k := range kinds {
			if kinds[k].name == baseline {
				base = total[k]
			}
		}
		for k := range kinds {
			b.ReportMetric(float64(total[k].Nanoseconds())/float64(i*1024), kinds[k].name+"-ns/op")
			if kinds[k].name != baseline && base > 0 {
				b.ReportMetric(float64(total[k])/float64(base), kinds[k].name+"/"+baseline)
			}
		}
	}

	b.Run("Contains", func(b *testing.B) {
		set := DefaultOpaquePorts().Union(MustParsePortSet("4567-4568,8000-8100"))
		m := map[uint16]struct{}{}
		for p := range set.All() {
			m[p] = struct{}{}
		}
		sorted := slices.Collect(set.All())
		side(b, []kind{
			{"PortSet", func() {
				hit := false
				for _, p := range benchPorts {
					hit = hit != set.Contains(p)
				}
				sinkBool = hit
			}},
			{"map", func() {
				hit := false
				for _, p := range benchPorts {
					_, ok := m[p]
					hit = hit != ok
				}
				sinkBool = hit
			}},
			{"sorted-slice", func() {
				hit := false
				for _, p := range benchPorts {
					_, ok := slices.BinarySearch(sorted, p)
					hit = hit != ok
				}
				sinkBool = hit
			}},
		}, "PortSet")
	})

	b.Run("Resolve", func(b *testing.B) {
		tb, err := Compile(benchPolicy())
		if err != nil {
			b.Fatal(err)
		}
		r := NewResolver(tb)
		m := &mutexResolver{
			explicit: map[uint16]Decision{8080: {Action: ActionDeclared, Protocol: "HTTP/1"}, 50051: {Action: ActionDeclared, Protocol: "gRPC"}},
			skip:     MustParsePortSet("22,4190-4191"),
			opaque:   DefaultOpaquePorts(),
		}
		side(b, []kind{
			{"Resolver", func() {
				var d Decision
				for _, p := range benchPorts {
					d = r.Resolve(Inbound, p)
				}
				sinkDecision = d
			}},
			{"RWMutex-map", func() {
				var d Decision
				for _, p := range benchPorts {
					d = m.Resolve(p)
				}
				sinkDecision = d
			}},
		}, "Resolver")
	})

	b.Run("HeaderDecode", func(b *testing.B) {
		enc, err := benchHeader.MarshalBinary()
		if err != nil {
			b.Fatal(err)
		}
		msg := enc[fixedLen:]
		md := headerDescriptor(b)
		rd := bytes.NewReader(enc)
		side(b, []kind{
			{"ReadHeader", func() {
				for range 1024 {
					rd.Reset(enc)
					if _, err := ReadHeader(rd); err != nil {
						b.Fatal(err)
					}
				}
			}},
			{"protobuf-runtime", func() {
				for range 1024 {
					m := dynamicpb.NewMessage(md)
					if err := proto.Unmarshal(msg, m); err != nil {
						b.Fatal(err)
					}
				}
			}},
		}, "ReadHeader")
	})

	b.Run("HeaderEncode", func(b *testing.B) {
		m := benchHeaderMessage(b)
		buf := make([]byte, 0, 128)
		side(b, []kind{
			{"AppendBinary", func() {
				for range 1024 {
					var err error
					if buf, err = benchHeader.AppendBinary(buf[:0]); err != nil {
						b.Fatal(err)
					}
				}
			}},
			{"protobuf-runtime", func() {
				for range 1024 {
					var err error
					if buf, err = (proto.MarshalOptions{}).MarshalAppend(buf[:0], m); err != nil {
						b.Fatal(err)
					}
				}
			}},
		}, "AppendBinary")
	})
}
