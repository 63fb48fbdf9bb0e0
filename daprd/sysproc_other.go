//go:build !linux

package daprd

import "syscall"

func sysProcAttr() *syscall.SysProcAttr { return nil }
