package api

import (
	"encoding/json"
	"time"

	"github.com/qinling-go/qinling/pkg/db"
	"github.com/qinling-go/qinling/pkg/execution"
)

// timeLayout is upstream's datetime_to_str: UTC, no fractions.
const timeLayout = "2006-01-02T15:04:05Z"

func timestr(t time.Time) string { return t.UTC().Format(timeLayout) }

func optTime(t *time.Time) *string {
	if t == nil {
		return nil
	}
	s := timestr(*t)
	return &s
}

type runtimeView struct {
	ID          string  `json:"id"`
	Name        *string `json:"name"`
	Image       string  `json:"image"`
	Description *string `json:"description"`
	IsPublic    bool    `json:"is_public"`
	Trusted     bool    `json:"trusted"`
	Status      string  `json:"status"`
	ProjectID   string  `json:"project_id"`
	CreatedAt   string  `json:"created_at"`
	UpdatedAt   *string `json:"updated_at"`
}

func renderRuntime(rt *db.Runtime) runtimeView {
	return runtimeView{
		ID: rt.ID, Name: rt.Name, Image: rt.Image, Description: rt.Description, IsPublic: rt.IsPublic,
		Trusted: rt.Trusted, Status: rt.Status, ProjectID: rt.ProjectID,
		CreatedAt: timestr(rt.CreatedAt), UpdatedAt: optTime(rt.UpdatedAt),
	}
}

type functionView struct {
	ID            string  `json:"id"`
	Name          *string `json:"name"`
	Description   *string `json:"description"`
	Count         int     `json:"count"`
	Code          any     `json:"code"`
	RuntimeID     *string `json:"runtime_id"`
	Entry         *string `json:"entry"`
	ProjectID     string  `json:"project_id"`
	CreatedAt     string  `json:"created_at"`
	UpdatedAt     *string `json:"updated_at"`
	CPU           int     `json:"cpu"`
	MemorySize    int64   `json:"memory_size"`
	Timeout       int     `json:"timeout"`
	LatestVersion int     `json:"latest_version"`
	// qinling-go's, only when set (workerlimits.go).
	MinWorkers *int `json:"min_workers,omitempty"`
	MaxWorkers *int `json:"max_workers,omitempty"`
}

// renderFunction renders code as upstream did: a JSON object in the single
// function answers (create, show, update), a JSON string in lists.
func renderFunction(f *db.Function, codeAsString bool) functionView {
	var code any = json.RawMessage(f.Code)
	if codeAsString {
		code = f.Code
	}
	return functionView{
		ID: f.ID, Name: f.Name, Description: f.Description, Count: f.Count, Code: code,
		RuntimeID: f.RuntimeID, Entry: f.Entry, ProjectID: f.ProjectID,
		CreatedAt: timestr(f.CreatedAt), UpdatedAt: optTime(f.UpdatedAt),
		CPU: f.CPU, MemorySize: f.MemorySize, Timeout: f.Timeout, LatestVersion: f.LatestVersion,
		MinWorkers: f.MinWorkers, MaxWorkers: f.MaxWorkers,
	}
}

type executionView struct {
	ID              string  `json:"id"`
	FunctionID      *string `json:"function_id"`
	FunctionVersion int     `json:"function_version"`
	FunctionAlias   *string `json:"function_alias"`
	Description     *string `json:"description"`
	Status          string  `json:"status"`
	Sync            bool    `json:"sync"`
	Input           *string `json:"input"`
	Result          *string `json:"result"`
	ProjectID       string  `json:"project_id"`
	CreatedAt       string  `json:"created_at"`
	UpdatedAt       *string `json:"updated_at"`
}

func renderExecution(e *db.Execution) executionView {
	return executionView{
		ID: e.ID, FunctionID: e.FunctionID, FunctionVersion: e.FunctionVersion, FunctionAlias: e.FunctionAlias,
		Description: e.Description, Status: e.Status, Sync: e.Sync, Input: renderInput(e.Input),
		Result: e.Result, ProjectID: e.ProjectID, CreatedAt: timestr(e.CreatedAt), UpdatedAt: optTime(e.UpdatedAt),
	}
}

// positionalKey carries a non-object input as the function's single
// positional argument (see execution.NormaliseInput).
const positionalKey = execution.PositionalKey

// renderInput gives back what the user sent: the raw string for a positional
// input, the JSON text of an object otherwise.
func renderInput(stored *string) *string {
	if stored == nil {
		return nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(*stored), &m); err == nil && len(m) == 1 {
		if raw, ok := m[positionalKey]; ok {
			var s string
			if json.Unmarshal(raw, &s) == nil {
				return &s
			}
		}
	}
	return stored
}
