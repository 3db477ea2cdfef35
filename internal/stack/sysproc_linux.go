package stack

import "syscall"

// childSysProcAttr puts a child process in its own process group and asks
// the kernel to SIGKILL it when the parent goes away.
//
// Pdeathsig fires when the OS thread that started the child exits, not only
// when the whole process does; the Go runtime does not normally retire
// threads, so in practice this means "when acmeq dies".
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
