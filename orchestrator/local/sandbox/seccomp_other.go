//go:build !amd64 && !arm64

package sandbox

// No seccomp filter for this architecture: workers run without one (the
// orchestrator says so at start, see WorkerSeccompAvailable).
var nativeArch *seccompArch

var syscallNumbers = map[string]int{}
