package workerclient

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/qinling-go/qinling/orchestrator"
)

// The runtimes enforce the result and log limits themselves
// (response_body in runtimes/python3/_qinling_runtime/execution.py,
// responseBody in runtimes/nodejs/_qinling_runtime/protocol.js),
// but in a reuse worker the function runs inside the runtime's own process
// and can change them: the engine checks again what it receives, with the
// same messages.

// logSlack is what a runtime adds to a log around the function's own output
// (the "Start execution"/"Finished execution" lines, the truncation and
// timeout notes): an answer's log may exceed the limit by that much.
const logSlack = 4 << 10

// limits are the engine's bounds on one answer; zero fields are not checked.
type limits struct {
	result, log int
}

// enforce fails a successful result larger than the result limit, and cuts a
// log longer than the log limit (plus logSlack).
func (l limits) enforce(res orchestrator.Result) orchestrator.Result {
	if l.result > 0 && res.Success && len(res.Output) > l.result {
		res.Success = false
		res.Output = jsonString(fmt.Sprintf("Function result too large: %d bytes (limit %d).", len(res.Output), l.result))
	}
	if l.log > 0 && len(res.Logs) > l.log+logSlack {
		res.Logs = cutLog(res.Logs, l.log)
	}
	return res
}

// oversized is the outcome of an answer larger than max bytes, not read.
func (l limits) oversized(max int64) orchestrator.Result {
	return orchestrator.Result{Output: jsonString(fmt.Sprintf(
		"Function result too large: the answer exceeds %d bytes (limit %d).", max, l.result))}
}

// cutLog keeps the first max bytes of logs (whole UTF-8 characters) and
// the runtime's closing "Finished execution" line, noting what was dropped
// as the runtimes do.
func cutLog(logs string, max int) string {
	var tail string
	if i := strings.LastIndex(strings.TrimSuffix(logs, "\n"), "\n"); i >= 0 && strings.HasPrefix(logs[i+1:], "Finished execution: ") {
		logs, tail = logs[:i+1], logs[i+1:]
	}
	if len(logs) <= max {
		return logs + tail
	}
	keep := max
	for keep > 0 && !utf8.RuneStart(logs[keep]) {
		keep--
	}
	head := logs[:keep]
	if !strings.HasSuffix(head, "\n") {
		head += "\n"
	}
	return head + fmt.Sprintf("... [log truncated: %d bytes dropped]\n", len(logs)-keep) + tail
}

func jsonString(s string) json.RawMessage {
	b, _ := json.Marshal(s)
	return b
}
