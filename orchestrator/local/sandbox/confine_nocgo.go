//go:build !cgo

package sandbox

// confineBuilt is false without cgo: the first half of the confinement
// helper (confine_cgo.go) must run before the Go runtime starts.
const confineBuilt = false
