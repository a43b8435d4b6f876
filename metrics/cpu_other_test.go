//go:build !linux

package metrics_test

import (
	"testing"
	"time"
)

// threadCPU is the thread's CPU time where the system tells it
// (RUSAGE_THREAD is Linux's); elsewhere it is 0 and cpu-ns/op reads 0.
func threadCPU(*testing.B) time.Duration { return 0 }

// cpuTime is the process's CPU time on Linux; elsewhere 0.
func cpuTime(*testing.B) time.Duration { return 0 }
