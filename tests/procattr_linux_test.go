package tests

import "syscall"

// childProcAttr makes the kernel kill a Caddy process when the test
// binary dies (a panic or `go test -timeout`), so that none is left
// holding ports and temp dirs.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
