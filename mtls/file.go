package mtls

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sniffsplice/sniff/internal/pemfile"
	"github.com/sniffsplice/sniff/spiffe"
)

// DefaultPollInterval is how often a FileSource looks at its files when FileConfig.Interval is
// zero.
const DefaultPollInterval = 5 * time.Second

// FileConfig names the files of a [FileSource].
type FileConfig struct {
	CertFile   string // PEM certificates: the leaf first, then intermediates
	KeyFile    string // PEM private key: PKCS#8, SEC 1 (EC) or PKCS#1 (RSA)
	BundleFile string // PEM trust anchors of TrustDomain
	// TrustDomain is the trust domain of the bundle; zero: the trust domain of the SVID.
	TrustDomain spiffe.TrustDomain
	// Identity selects how the certificate's identity is read, as Config.Identity does;
	// IdentityLinkerdDNS accepts certificates whose identity is a Linkerd DNS SAN.
	Identity IdentityMode
	// Interval between looks at the files; 0: DefaultPollInterval; < 0: no polling (call Reload
	// yourself).
	Interval time.Duration
	// OnReload, when non-nil, is called after every attempt to load changed files: with nil when
	// the new SVID and bundle were taken, with a *ReloadError when they were refused and the
	// previous ones kept. It is called from the polling goroutine or from Reload, while the reload
	// lock is held: it must not call Reload.
	OnReload func(error)
}

// ReloadError says why new files were refused. The FileSource keeps serving the SVID and bundle it
// had.
type ReloadError struct {
	Path string // the file at fault, "" when the files disagree
	Err  error
}

// Error implements error.
func (e *ReloadError) Error() string {
	if e.Path == "" {
		return prefix + "new certificate files refused, keeping the previous ones: " + unprefixed(e.Err)
	}
	return prefix + "new certificate files refused, keeping the previous ones: " + e.Path + ": " +
		unprefixed(e.Err)
}

// Unwrap returns the cause.
func (e *ReloadError) Unwrap() error { return e.Err }

// FileSource is an [spiffe.SVIDSource] and [spiffe.BundleSource] backed by a certificate, a key and a
// bundle file — what a Kubernetes secret mount or a cert-manager volume gives — that picks up new
// files without a restart.
//
// Change detection: every Interval the source reads the three files and compares a SHA-256 of their
// contents with the last contents it loaded or refused (content, not mtime, so neither coarse
// timestamps nor the atomic symlink swap of a secret mount can hide a change). Changed files are
// taken only when they are complete and consistent: every PEM block parses, the key matches the
// leaf, the leaf carries an identity, and the chain verifies against the new bundle when the bundle
// is of the SVID's own trust domain. Otherwise — a half-written file, a certificate written before
// its key — the previous SVID and bundle stay in use, Err reports a *ReloadError, and the next
// change is tried again.
//
// The polling goroutine stops when the context given to NewFileSource is done or Close is called.
type FileSource struct {
	cfg     FileConfig
	current atomic.Pointer[fileState]
	lastErr atomic.Pointer[errBox]

	mu       sync.Mutex // serializes reloads
	seenHash [sha256.Size]byte

	stop      context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
}

type fileState struct {
	svid   *spiffe.SVID
	bundle *spiffe.Bundle
}

type errBox struct{ err error }

// NewFileSource loads the files and, unless cfg.Interval < 0, starts polling them until ctx is done
// or Close is called. It fails if the files cannot be loaded now.
func NewFileSource(ctx context.Context, cfg FileConfig) (*FileSource, error) {
	s := &FileSource{cfg: cfg, done: make(chan struct{})}
	data, sum, err := s.read()
	if err != nil {
		return nil, err
	}
	st, err := s.parse(data)
	if err != nil {
		return nil, err
	}
	s.current.Store(st)
	s.seenHash = sum
	interval := cfg.Interval
	if interval == 0 {
		interval = DefaultPollInterval
	}
	if interval < 0 {
		close(s.done)
		s.stop = func() {}
		return s, nil
	}
	ctx, s.stop = context.WithCancel(ctx)
	go s.poll(ctx, interval)
	return s, nil
}

func (s *FileSource) poll(ctx context.Context, interval time.Duration) {
	defer close(s.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_ = s.Reload()
		}
	}
}

// Close stops the polling goroutine and waits for it. The source keeps serving its last SVID and
// bundle.
func (s *FileSource) Close() error {
	s.closeOnce.Do(func() {
		s.stop()
		<-s.done
	})
	return nil
}

// SVID implements spiffe.SVIDSource.
func (s *FileSource) SVID() (*spiffe.SVID, error) {
	return s.current.Load().svid, nil
}

// BundleFor implements spiffe.BundleSource.
func (s *FileSource) BundleFor(td spiffe.TrustDomain) (*spiffe.Bundle, error) {
	b := s.current.Load().bundle
	if b.TrustDomain() != td {
		return nil, &noBundleError{td: td, held: b.TrustDomain()}
	}
	return b, nil
}

// Err returns the error of the last reload attempt: nil if it succeeded (or none was needed yet), a
// *ReloadError if new files were refused and the previous SVID is still served.
func (s *FileSource) Err() error {
	if b := s.lastErr.Load(); b != nil {
		return b.err
	}
	return nil
}

// Reload reads the files now and takes them if they changed and are valid. It returns nil when they
// are unchanged or were taken, and a *ReloadError when they changed but were refused. Refused
// contents are not retried until they change again.
func (s *FileSource) Reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	data, sum, err := s.read()
	if err == nil && sum == s.seenHash {
		return nil
	}
	var st *fileState
	if err == nil {
		s.seenHash = sum
		st, err = s.parse(data)
	}
	if err != nil {
		// A file that cannot be read (being replaced) is retried on the next tick: its hash is not
		// recorded.
		s.lastErr.Store(&errBox{err})
		if s.cfg.OnReload != nil {
			s.cfg.OnReload(err)
		}
		return err
	}
	s.current.Store(st)
	s.lastErr.Store(&errBox{nil})
	if s.cfg.OnReload != nil {
		s.cfg.OnReload(nil)
	}
	return nil
}

func (s *FileSource) read() ([3][]byte, [sha256.Size]byte, error) {
	var data [3][]byte
	h := sha256.New()
	for i, name := range []string{s.cfg.CertFile, s.cfg.KeyFile, s.cfg.BundleFile} {
		b, err := os.ReadFile(name)
		if err != nil {
			return data, [sha256.Size]byte{}, &ReloadError{Path: name, Err: err}
		}
		data[i] = b
		var n [8]byte
		for j := range n {
			n[j] = byte(len(b) >> (8 * j))
		}
		h.Write(n[:])
		h.Write(b)
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return data, sum, nil
}

func (s *FileSource) parse(data [3][]byte) (*fileState, error) {
	certs, err := pemfile.Certificates(data[0])
	if err != nil {
		return nil, &ReloadError{Path: s.cfg.CertFile, Err: err}
	}
	key, err := pemfile.PrivateKey(data[1])
	if err != nil {
		return nil, &ReloadError{Path: s.cfg.KeyFile, Err: err}
	}
	if !pemfile.KeyMatches(key, certs[0].PublicKey) {
		return nil, &ReloadError{Err: ErrKeyMismatch}
	}
	id, err := idFromLeaf(certs[0], s.cfg.Identity)
	if err != nil {
		return nil, &ReloadError{Path: s.cfg.CertFile, Err: err}
	}
	td := s.cfg.TrustDomain
	if td.IsZero() {
		td = id.TrustDomain()
	}
	anchors, err := pemfile.Certificates(data[2])
	if err != nil {
		return nil, &ReloadError{Path: s.cfg.BundleFile, Err: err}
	}
	bundle := spiffe.NewBundle(td, anchors...)
	svid := &spiffe.SVID{ID: id, Certificates: certs, PrivateKey: key}
	if td == id.TrustDomain() {
		v := &verifier{bundle: bundle, mode: s.cfg.Identity, now: time.Now, authorize: AuthorizeAny()}
		if _, err := v.verify(certs); err != nil {
			return nil, &ReloadError{Err: fmt.Errorf("certificate does not verify against the bundle: %w", err)}
		}
	}
	return &fileState{svid: svid, bundle: bundle}, nil
}
