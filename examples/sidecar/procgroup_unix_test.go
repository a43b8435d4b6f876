//go:build unix

package main

import (
	"os/exec"
	"syscall"
)

// ownProcessGroup starts a command in a process group of its own, so that
// killGroup reaches its children too (runuser -> postgres).
func ownProcessGroup() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

// killGroup kills the process group that ownProcessGroup started.
func killGroup(cmd *exec.Cmd) { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
