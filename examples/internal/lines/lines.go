// Package lines is the examples' log output: whole lines written to one
// io.Writer from many connection goroutines without interleaving.
package lines

import (
	"fmt"
	"io"
	"sync"
)

// Writer serializes writes to W. Its zero value needs W set; it must not
// be copied after first use.
type Writer struct {
	// Prefix starts every line Printf writes, e.g. "sniproxy: ".
	Prefix string
	W      io.Writer

	mu sync.Mutex
}

// Write writes b to W under the lock.
func (l *Writer) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.W.Write(b)
}

// Printf writes Prefix, the formatted text and a newline as one write.
func (l *Writer) Printf(format string, args ...any) {
	fmt.Fprintf(l, l.Prefix+format+"\n", args...)
}
