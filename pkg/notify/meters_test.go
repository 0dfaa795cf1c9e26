package notify_test

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/qinling-go/qinling/pkg/db"
	"github.com/qinling-go/qinling/pkg/db/dbtest"
)

// sentPayloads makes every change that is notified and returns the
// payload sent for each event type.
func sentPayloads(t *testing.T) map[string]map[string]any {
	ctx := context.Background()
	d := dbtest.SQLite(t)
	d.EnableNotifications("qinling.test")
	name := "py"
	rt := &db.Runtime{Base: db.Base{ProjectID: "p"}, Name: &name, Image: "python3", Status: db.StatusCreating}
	require.NoError(t, d.CreateRuntime(ctx, rt))
	require.NoError(t, d.UpdateRuntime(ctx, rt.ID, map[string]any{"status": db.StatusAvailable}))
	f := &db.Function{Base: db.Base{ProjectID: "p"}, RuntimeID: &rt.ID, MemorySize: 32 << 20, Code: "{}"}
	require.NoError(t, d.CreateFunction(ctx, f))
	require.NoError(t, d.UpdateFunction(ctx, f.ID, map[string]any{"timeout": 10}))
	v, err := d.CreateFunctionVersion(ctx, f, nil)
	require.NoError(t, err)
	a := &db.FunctionAlias{Base: db.Base{ProjectID: "p"}, Name: "prod", FunctionID: f.ID, FunctionVersion: v.VersionNumber}
	require.NoError(t, d.CreateFunctionAlias(ctx, a))
	require.NoError(t, d.UpdateFunctionAlias(ctx, a.ID, map[string]any{"function_version": 0}))
	require.NoError(t, d.DeleteFunctionAlias(ctx, a.ID))
	require.NoError(t, d.DeleteFunctionVersion(ctx, f.ID, v.VersionNumber))
	j := &db.Job{Base: db.Base{ProjectID: "p"}, FunctionID: &f.ID, Status: db.StatusRunning, NextExecutionTime: time.Now()}
	require.NoError(t, d.CreateJob(ctx, j))
	require.NoError(t, d.UpdateJob(ctx, j.ID, map[string]any{"status": db.StatusPaused}))
	require.NoError(t, d.DeleteJob(ctx, j.ID))
	w := &db.Webhook{Base: db.Base{ProjectID: "p"}, FunctionID: &f.ID}
	require.NoError(t, d.CreateWebhook(ctx, w))
	require.NoError(t, d.UpdateWebhook(ctx, w.ID, map[string]any{"function_version": 0}))
	require.NoError(t, d.DeleteWebhook(ctx, w.ID))
	e := &db.Execution{Base: db.Base{ProjectID: "p"}, FunctionID: &f.ID, Status: db.StatusRunning}
	require.NoError(t, d.CreateExecution(ctx, e))
	_, err = d.Finish(ctx, e.ID, db.Outcome{Status: db.StatusSuccess})
	require.NoError(t, err)
	require.NoError(t, d.DeleteFunction(ctx, f.ID))
	require.NoError(t, d.DeleteRuntime(ctx, rt.ID))

	msgs, err := d.ClaimOutbox(ctx, "test", time.Minute, 100)
	require.NoError(t, err)
	out := map[string]map[string]any{}
	for _, m := range msgs {
		var msg struct {
			EventType string         `json:"event_type"`
			Payload   map[string]any `json:"payload"`
		}
		require.NoError(t, json.Unmarshal([]byte(m.Message), &msg))
		out[msg.EventType] = msg.Payload
	}
	return out
}

// TestCeilometerMeters: every meter of etc/ceilometer/qinling-meters.yaml
// is fed by events qinling-go sends, and every field it reads is in their
// payloads.
func TestCeilometerMeters(t *testing.T) {
	raw, err := os.ReadFile("../../etc/ceilometer/qinling-meters.yaml")
	require.NoError(t, err)
	var defs struct {
		Metric []map[string]any `yaml:"metric"`
	}
	require.NoError(t, yaml.Unmarshal(raw, &defs))
	require.NotEmpty(t, defs.Metric)
	sent := sentPayloads(t)
	covered := map[string]bool{}
	for _, m := range defs.Metric {
		var events []string
		switch ev := m["event_type"].(type) {
		case string:
			events = []string{ev}
		case []any:
			for _, e := range ev {
				events = append(events, e.(string))
			}
		}
		require.NotEmpty(t, events, "meter %v", m["name"])
		var paths []string
		for _, k := range []string{"volume", "resource_id", "project_id", "user_id"} {
			if p, ok := m[k].(string); ok {
				paths = append(paths, p)
			}
		}
		if md, ok := m["metadata"].(map[string]any); ok {
			for _, p := range md {
				paths = append(paths, p.(string))
			}
		}
		for _, ev := range events {
			payload, ok := sent[ev]
			require.True(t, ok, "meter %v: qinling-go sends no %s", m["name"], ev)
			covered[ev] = true
			for _, p := range paths {
				field, ok := strings.CutPrefix(p, "$.payload.")
				require.True(t, ok, "meter %v: %s is not a payload field", m["name"], p)
				require.Contains(t, payload, field, "meter %v: %s has no %s", m["name"], ev, field)
			}
		}
	}
	for ev := range sent {
		require.True(t, covered[ev], "no meter reads %s", ev)
	}
}
