// Package accept is the accept loop of every server in sniff, exported for proxies built on it.
//
// A listener's Accept fails in two ways. Some failures pass: the process is out of file
// descriptors (EMFILE) or the system is (ENFILE), the kernel is short of buffers or memory
// (ENOBUFS, ENOMEM), a client reset its connection before it was accepted (ECONNABORTED), a
// deadline passed. A server that returns on those exits exactly when it is attacked (a flood of
// idle connections uses up the descriptors) and does not serve again when they are freed. The
// others (the listener was closed) end the loop. [Serve] waits after a failure that passes, 5 ms
// the first time and twice as long each time after, up to 1 s (net/http's rule), and goes on; the
// first connection accepted resets the wait.
package accept

import (
	"context"
	"errors"
	"net"
	"syscall"
	"time"
)

// The back-off after a failure that passes: from MinDelay, doubling, up to MaxDelay.
const (
	MinDelay = 5 * time.Millisecond
	MaxDelay = time.Second
)

// Temporary reports whether an Accept error passes: out of descriptors or memory, a connection
// aborted before it was accepted, an interrupted call, a timeout.
func Temporary(err error) bool {
	if err == nil {
		return false
	}
	for _, e := range temporaryErrnos {
		if errors.Is(err, e) {
			return true
		}
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

var temporaryErrnos = [...]syscall.Errno{
	syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED, syscall.EINTR,
}

// Backoff is the wait after consecutive failures that pass. The zero value starts at MinDelay.
type Backoff struct {
	cur time.Duration
}

// Next returns the next wait: MinDelay after a Reset, then twice the last, at most MaxDelay.
func (b *Backoff) Next() time.Duration {
	b.cur = min(max(2*b.cur, MinDelay), MaxDelay)
	return b.cur
}

// Reset starts the waits again from MinDelay (after a success).
func (b *Backoff) Reset() { b.cur = 0 }

// Loop is an accept loop with hooks. The zero value is ready to use; [Serve] runs one.
type Loop struct {
	// OnTemporary, if non-nil, is called from the accept goroutine with each failure that passes
	// and the wait before the next Accept (to count it, or to free something: a server that holds
	// idle connections may close some when err is EMFILE).
	OnTemporary func(err error, wait time.Duration)
}

// Serve accepts connections from ln and passes each to handle, on the accept goroutine, until
// ctx is done or Accept fails for good; handle must not block (start a goroutine, or hand the
// connection to something that waits without one). Serve takes ln over: it closes ln when ctx is
// done (which ends a blocked Accept) and before it returns. It returns ctx's error when ctx ended
// it, otherwise the error that stopped accepting.
func (l Loop) Serve(ctx context.Context, ln net.Listener, handle func(net.Conn)) error {
	stop := context.AfterFunc(ctx, func() { _ = ln.Close() })
	defer stop()
	defer ln.Close()
	var b Backoff
	var timer *time.Timer
	for {
		c, err := ln.Accept()
		if err == nil {
			b.Reset()
			handle(c)
			continue
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !Temporary(err) {
			return err
		}
		wait := b.Next()
		if l.OnTemporary != nil {
			l.OnTemporary(err, wait)
		}
		if timer == nil {
			timer = time.NewTimer(wait)
			defer timer.Stop()
		} else {
			timer.Reset(wait)
		}
		select {
		case <-timer.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Serve is Loop{}.Serve: it accepts from ln until ctx is done or Accept fails for good, passing
// every connection to handle on the accept goroutine and backing off after failures that pass.
func Serve(ctx context.Context, ln net.Listener, handle func(net.Conn)) error {
	return Loop{}.Serve(ctx, ln, handle)
}
