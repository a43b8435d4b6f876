//go:build !linux

package splice

import "net"

const fastPathAvailable = false

type fastPath struct{}

func (p *pump) copyTCP(src, dst *net.TCPConn) result { return p.copyGeneric(src) }
