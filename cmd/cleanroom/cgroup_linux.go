package main

import (
	"os"
	"syscall"
)

// localCgroupMode tells v2, hybrid or v1 from /sys/fs/cgroup.
func localCgroupMode() string {
	var st syscall.Statfs_t
	if err := syscall.Statfs("/sys/fs/cgroup", &st); err != nil {
		return "unknown"
	}
	const cgroup2Magic = 0x63677270
	if st.Type == cgroup2Magic {
		return "v2"
	}
	if _, err := os.Stat("/sys/fs/cgroup/unified"); err == nil {
		return "hybrid"
	}
	return "v1"
}
