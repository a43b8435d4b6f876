package detect_test

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/sniffsplice/sniff/detect"
)

// A proxy builds one Detector, with its hook, and gives each connection the detection timeout
// its port's policy says (opaque.Decision.DetectTimeout): a silent client on a port with a short
// timeout is handed over as unknown (opaque) when that timeout fires, not the Detector's.
func ExampleWithTimeout() {
	detections := 0
	d := &detect.Detector{OnResult: func(*detect.Result) { detections++ }} // once, shared

	portTimeout := map[uint16]time.Duration{5432: 50 * time.Millisecond} // from the policy
	for _, port := range []uint16{5432} {
		client, server := net.Pipe() // a client that says nothing
		res, conn, err := d.Detect(context.Background(), server, detect.WithTimeout(portTimeout[port]))
		fmt.Println(port, res.Protocol, res.Reason, err)
		conn.Close()
		client.Close()
	}
	fmt.Println("detections counted by the Detector's hook:", detections)
	// Output:
	// 5432 unknown timeout <nil>
	// detections counted by the Detector's hook: 1
}
