//go:build !linux

package state

// mmapFlags is zero where MAP_POPULATE does not exist; see mmap_linux.go.
const mmapFlags = 0
