package kubernetes

import (
	"crypto/rand"
	"encoding/hex"
	"strings"
)

// A pod's runtime server listens on the pod network, where every other pod
// can reach it unless the cluster's network policy stops them (and many
// CNIs enforce none). So each pod is specialised with a token of its own:
// the engine sends it with the package, the server binds to it, and answers
// POSTs (executions, packages) only when they carry it again
// (runtimes/python3/_qinling_runtime/workertoken.py, envWorkerToken). A
// function in another pod does not know it: it cannot run this pod's
// function with inputs of its choice, learn which function it serves, or
// plant code in a free pod before an engine takes it.
//
// Every engine must be able to run executions on every pod without asking
// the API server, so the token travels in the worker's address, which the
// engines share (coord's worker records, never shown through the API):
// "http://<pod IP>:<port>#<token>". Only this package splits it; workerclient
// gets the plain address and the token separately, so neither its errors
// nor the logs show the token.

// envWorkerToken tells a pool pod's runtime server to require the token.
const envWorkerToken = "QINLING_WORKER_TOKEN"

// newToken is 256 random bits in hex.
func newToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand's contract since Go 1.24)
	return hex.EncodeToString(b)
}

// withToken is the worker address of addr with token.
func withToken(addr, token string) string { return addr + "#" + token }

// splitToken splits a worker address into the address workerclient reaches
// and the token ("" for a worker recorded before tokens existed, whose
// server then refuses the call and the engine finds another worker).
func splitToken(addr string) (plain, token string) {
	plain, token, _ = strings.Cut(addr, "#")
	return plain, token
}
