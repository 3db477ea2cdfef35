//go:build unix && !linux

package stack

import "syscall"

// childSysProcAttr puts a child process in its own process group. Outside
// Linux there is no parent-death signal, so the child may outlive a parent
// that crashes.
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
