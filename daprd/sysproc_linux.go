package daprd

import "syscall"

// sysProcAttr makes the kernel send daprd SIGTERM when the process that
// started it dies, so a crashed `bud dev` or test binary leaves no sidecar
// holding its ports.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
