//go:build !linux

package main

// localCgroupMode: cgroups are Linux's; elsewhere the engine runs in a VM
// (podman machine) and says itself which mode it has.
func localCgroupMode() string { return "unknown" }
