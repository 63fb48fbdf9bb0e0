//go:build !linux

package statestore

import "syscall"

func sysProcAttr() *syscall.SysProcAttr { return nil }
