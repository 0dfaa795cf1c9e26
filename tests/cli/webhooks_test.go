//go:build cli

package cli

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/testutil"
)

// testWebhooks covers webhook create, list, show, update and delete, and
// invokes the printed webhook_url the way tempest and curl do: a plain POST
// with a form body and no token. It also deletes executions by function.
func testWebhooks(t *testing.T, s *scenario, rtID string) {
	c := s.demo.in(t)
	fid, _ := c.createFunction(rtID, "cli-webhook-"+suffix(t), helloPy)

	wh := c.show("webhook", "create", "--function", fid, "--description", "cli hook")
	whID, _ := wh["id"].(string)
	require.Regexp(t, uuidRE, whID, "webhook create printed %v", wh)
	c.undo("webhook", "delete", whID)
	requireColumns(t, wh, "id", "function_alias", "function_id", "function_version", "description", "project_id", "created_at", "updated_at", "webhook_url")
	assert.Equal(t, fid, wh["function_id"])
	assert.Equal(t, 0.0, wh["function_version"])
	assert.Nil(t, wh["function_alias"])
	assert.Equal(t, "cli hook", wh["description"])
	assert.Equal(t, s.demoProject, wh["project_id"])
	hookURL := s.apiURL + "/v1/webhooks/" + whID + "/invoke"
	assert.Equal(t, hookURL, wh["webhook_url"])

	rows := c.list("webhook", "list")
	row := findRow(rows, "Id", whID)
	require.NotNil(t, row, "webhook %s not in %v", whID, rows)
	requireColumns(t, row, "Id", "Function_alias", "Function_id", "Function_version", "Description", "Project_id", "Created_at", "Updated_at", "Webhook_url")
	assert.Equal(t, hookURL, row["Webhook_url"])
	assert.Equal(t, fid, row["Function_id"])

	got := c.show("webhook", "show", whID)
	sameFields(t, wh, got, "id", "function_alias", "function_id", "function_version", "description", "project_id", "created_at", "webhook_url")

	// --- invoke, as anyone: no token at all.
	exID := invokeWebhook(t, wh["webhook_url"].(string))
	ex := c.waitExecution(exID)
	require.Equal(t, "success", ex["status"], "webhook execution %v", ex)
	assert.Equal(t, fid, ex["function_id"])
	assert.Equal(t, 0.0, ex["function_version"])
	assert.Equal(t, false, ex["sync"])
	assert.Equal(t, "Created by Webhook "+whID, ex["description"])
	assert.Equal(t, s.demoProject, ex["project_id"], "the execution belongs to the webhook's project")
	assert.Equal(t, "qinling", testutil.ObjectOf(t, ex["input"])["name"], "input %v", ex["input"])
	assert.Equal(t, "Hello, qinling", output(t, ex))

	rows = c.list("function", "execution", "list")
	row = findRow(rows, "Id", exID)
	require.NotNil(t, row, "webhook execution %s not in %v", exID, rows)
	assert.Equal(t, "success", row["Status"])
	assert.Equal(t, "Created by Webhook "+whID, row["Description"])

	assert.Contains(t, c.run("function", "execution", "log", "show", exID), "Hello, qinling")

	// --- update to a version (the client sends --function-version as "1").
	v := c.show("function", "version", "create", fid)
	require.Equal(t, 1.0, v["version_number"], "version %v", v)
	upd := c.show("webhook", "update", whID, "--function-version", "1", "--description", "cli hook v1")
	assert.Equal(t, whID, upd["id"])
	assert.Equal(t, fid, upd["function_id"])
	assert.Equal(t, 1.0, upd["function_version"])
	assert.Equal(t, "cli hook v1", upd["description"])
	assert.Equal(t, hookURL, upd["webhook_url"])

	ex2ID := invokeWebhook(t, hookURL)
	ex = c.waitExecution(ex2ID)
	require.Equal(t, "success", ex["status"], "webhook execution %v", ex)
	assert.Equal(t, 1.0, ex["function_version"], "the updated webhook runs version 1")
	assert.Equal(t, "Hello, qinling", output(t, ex))

	c.accepted([]string{"webhook", "delete", whID}, "Request to delete webhook "+whID+" has been accepted.")
	assert.Nil(t, findRow(c.list("webhook", "list"), "Id", whID), "deleted webhook %s still listed", whID)

	// execution delete --function lists the function's executions and
	// deletes each.
	c.accepted([]string{"function", "execution", "delete", "--function", fid},
		"Request to delete execution "+exID+" has been accepted.",
		"Request to delete execution "+ex2ID+" has been accepted.")
	c.accepted([]string{"function", "delete", fid}, "Request to delete function "+fid+" has been accepted.")
	rows = c.list("function", "execution", "list", "--filter", "function_id="+fid)
	assert.Empty(t, rows, "executions of %s after delete --function", fid)
}

// invokeWebhook runs `curl -d name=qinling URL` — plain curl, no token —
// and returns the execution id of the 202.
func invokeWebhook(t *testing.T, hookURL string) string {
	t.Helper()
	out, err := exec.Command("curl", "-sS", "--max-time", "60", "-w", "\n%{http_code}", "-d", "name=qinling", hookURL).Output()
	require.NoError(t, err, "curl -d name=qinling %s", hookURL)
	body, code, _ := strings.Cut(strings.TrimRight(string(out), "\n"), "\n")
	require.Equal(t, "202", code, "curl -d name=qinling %s: %s", hookURL, body)
	var got map[string]any
	require.NoError(t, json.Unmarshal([]byte(body), &got), "curl %s: %s", hookURL, body)
	id, _ := got["execution_id"].(string)
	require.Regexp(t, uuidRE, id, "curl %s: %s", hookURL, body)
	return id
}
