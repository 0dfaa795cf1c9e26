//go:build !cgo

package sandbox

// usernsBuilt: without cgo a worker runs as its host uid directly, without
// a user namespace of its own (userns_cgo.go).
const usernsBuilt = false
