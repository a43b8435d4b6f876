//go:build !unix

package main

import (
	"os/exec"
	"syscall"
)

// ownProcessGroup is nil where there are no Unix process groups.
func ownProcessGroup() *syscall.SysProcAttr { return nil }

// killGroup kills the command alone.
func killGroup(cmd *exec.Cmd) { _ = cmd.Process.Kill() }
