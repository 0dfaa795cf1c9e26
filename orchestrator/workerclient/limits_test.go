package workerclient_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/orchestrator/workerclient"
)

// TestExecute_EngineLimits: whatever a runtime taken over by its function
// answers, the engine holds the result and log limits.
func TestExecute_EngineLimits(t *testing.T) {
	t.Parallel()
	const resultLimit, logLimit = 20, 10000
	answer := func(output string, logs string, success bool) string {
		b, err := json.Marshal(map[string]any{"output": json.RawMessage(output), "duration": 0.1, "logs": logs, "success": success})
		require.NoError(t, err)
		return string(b)
	}
	long := "Start execution: e1\n" + strings.Repeat("é", 3*logLimit) + "\nFinished execution: e1\n"
	for _, tc := range []struct {
		name      string
		body      string
		success   bool
		output    string
		logs      func(t *testing.T, logs string)
		maxResp   int64
		unlimited bool
	}{
		{name: "result at the limit passes", body: answer(`"`+strings.Repeat("a", resultLimit-2)+`"`, "ok\n", true),
			success: true, output: `"` + strings.Repeat("a", resultLimit-2) + `"`},
		{name: "result over the limit fails", body: answer(`"`+strings.Repeat("a", resultLimit-1)+`"`, "ok\n", true),
			output: `"Function result too large: 21 bytes (limit 20)."`},
		{name: "a failure message is not a result", body: answer(`"`+strings.Repeat("a", 100)+`"`, "ok\n", false),
			output: `"` + strings.Repeat("a", 100) + `"`},
		{name: "log over the limit is cut with a note", body: answer(`1`, long, true), success: true, output: `1`,
			logs: func(t *testing.T, logs string) {
				require.LessOrEqual(t, len(logs), logLimit+200)
				require.True(t, strings.HasPrefix(logs, "Start execution: e1\n"))
				require.Contains(t, logs, "\n... [log truncated: ")
				require.True(t, strings.HasSuffix(logs, " bytes dropped]\nFinished execution: e1\n"), logs[len(logs)-100:])
				require.True(t, json.Valid([]byte(`"`+strings.ReplaceAll(logs, "\n", `\n`)+`"`)), "cut inside a character")
			}},
		{name: "log within the slack is kept", body: answer(`1`, strings.Repeat("x", logLimit+100), true), success: true, output: `1`,
			logs: func(t *testing.T, logs string) { require.Len(t, logs, logLimit+100) }},
		{name: "an answer past the response bound fails as too large", body: answer(`"`+strings.Repeat("a", 5000)+`"`, "", true),
			maxResp: 1000, output: `"Function result too large: the answer exceeds 1000 bytes (limit 20)."`},
		{name: "no limits configured: the runtime's word", body: answer(`"`+strings.Repeat("a", 100)+`"`, long, true),
			unlimited: true, success: true, output: `"` + strings.Repeat("a", 100) + `"`,
			logs: func(t *testing.T, logs string) { require.Equal(t, long, logs) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, _ := serveUnix(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				_, _ = w.Write([]byte(tc.body))
			}))
			opts := workerclient.Options{MaxResultBytes: resultLimit, MaxLogBytes: logLimit, MaxResponseBytes: tc.maxResp}
			if tc.unlimited {
				opts = workerclient.Options{}
			}
			res, err := workerclient.New(opts).Execute(context.Background(), addr, invocation(), time.Second)
			require.NoError(t, err)
			require.Equal(t, tc.success, res.Success)
			require.JSONEq(t, tc.output, string(res.Output))
			if tc.logs != nil {
				tc.logs(t, res.Logs)
			}
		})
	}
}
