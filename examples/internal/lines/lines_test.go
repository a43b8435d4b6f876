package lines

import (
	"strings"
	"sync"
	"testing"
)

func TestPrintfWholeLines(t *testing.T) {
	var b strings.Builder
	l := &Writer{Prefix: "p: ", W: &b}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				l.Printf("line %d %s", i, strings.Repeat("x", 64))
			}
		}()
	}
	wg.Wait()
	got := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(got) != 800 {
		t.Fatalf("%d lines, want 800", len(got))
	}
	for _, s := range got {
		if !strings.HasPrefix(s, "p: line ") || !strings.HasSuffix(s, " "+strings.Repeat("x", 64)) {
			t.Fatalf("mangled line %q", s)
		}
	}
}
