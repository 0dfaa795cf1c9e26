package engine

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"time"

	"github.com/qinling-go/qinling/orchestrator"
	"github.com/qinling-go/qinling/pkg/db"
	"github.com/qinling-go/qinling/pkg/errdefs"
	"github.com/qinling-go/qinling/storage/swiftcode"
)

// What the orchestrator is asked for (a worker specialised for a function
// version, one execution on it, one run of an image function) is built
// here from the function's database row, and only here: the entry's
// default, the timeout's unit and the limits are read in one place.

// settings are what a function's row says its workers and executions get.
type settings struct {
	entry      string
	cpu        int   // millicores
	memorySize int64 // bytes
	timeout    time.Duration
}

func settingsOf(f *db.Function) settings {
	s := settings{entry: db.DefaultEntry, cpu: f.CPU, memorySize: f.MemorySize, timeout: time.Duration(f.Timeout) * time.Second}
	if f.Entry != nil && *f.Entry != "" {
		s.entry = *f.Entry
	}
	return s
}

// spec is what the orchestrator needs to specialise a worker for version
// of f (0: the function's current package).
func (e *Engine) spec(f *db.Function, version int) orchestrator.Function {
	s := settingsOf(f)
	code := f.ParsedCode()
	runtimeID := ""
	if f.RuntimeID != nil {
		runtimeID = *f.RuntimeID
	}
	url := fmt.Sprintf("%s/v1/functions/%s?download=true", e.opts.PublicEndpoint, f.ID)
	if version > 0 {
		url = fmt.Sprintf("%s/v1/functions/%s/versions/%d?download=true", e.opts.PublicEndpoint, f.ID, version)
	}
	project, fid := f.ProjectID, f.ID
	// The function's md5 is its current package's; a version's package is
	// found by number and its md5 is not recorded, so none is claimed.
	sum := code.MD5Sum
	if version > 0 {
		sum = ""
	}
	pkg := orchestrator.Package{
		MD5:         sum,
		DownloadURL: url,
		Open: func(ctx context.Context) (io.ReadCloser, error) {
			return e.storage.Retrieve(ctx, project, fid, code.MD5Sum, version)
		},
	}
	if code.Source == db.SourceSwift {
		pkg = e.swiftPackage(f, code, url)
	}
	return orchestrator.Function{
		ID: f.ID, ProjectID: f.ProjectID, Version: version, RuntimeID: runtimeID, Entry: s.entry,
		CPU: s.cpu, MemorySize: s.memorySize, Timeout: s.timeout,
		Package: pkg,
	}
}

// swiftPackage is the code of a swift function: the bytes of its owner's
// object that the function recorded (its ETag), fetched through the
// owner's trust, so every worker runs the same code and a replaced object
// is refused until a function update records it (storage/swiftcode).
func (e *Engine) swiftPackage(f *db.Function, code db.Code, url string) orchestrator.Package {
	var obj swiftcode.Object
	if code.Swift != nil {
		obj = swiftcode.Object{Container: code.Swift.Container, Object: code.Swift.Object, ETag: code.Swift.ETag}
	}
	trust := ""
	if f.TrustID != nil {
		trust = *f.TrustID
	}
	sum := ""
	if isMD5(obj.ETag) {
		// An ordinary object's ETag is its MD5: the orchestrator checks it.
		sum = obj.ETag
	}
	return orchestrator.Package{
		MD5:         sum,
		DownloadURL: url,
		Open: func(ctx context.Context) (io.ReadCloser, error) {
			if e.opts.Swift == nil {
				return nil, errdefs.Invalid("Swift object not supported: this engine has no Keystone authentication ([pecan] auth_enable).")
			}
			return e.opts.Swift.Fetch(ctx, trust, obj)
		},
	}
}

func isMD5(s string) bool {
	if len(s) != 32 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// invocation is execution a of f. It carries the row's current limits,
// which Run applies to a worker specialised under older ones
// (orchestrator.Orchestrator.Run).
func invocation(f *db.Function, a ExecutionArgs, requestID string) orchestrator.Invocation {
	s := settingsOf(f)
	return orchestrator.Invocation{
		ExecutionID: a.ExecutionID, FunctionID: f.ID, Version: a.FunctionVersion, Entry: s.entry,
		Input: a.Input, CPU: s.cpu, MemorySize: s.memorySize, Timeout: s.timeout, RequestID: requestID,
	}
}

// imageInvocation is execution a of image function f: a container of
// image with args.
func imageInvocation(f *db.Function, a ExecutionArgs, image string, args []string, requestID string) orchestrator.ImageInvocation {
	s := settingsOf(f)
	return orchestrator.ImageInvocation{
		ExecutionID: a.ExecutionID, FunctionID: f.ID, Image: image, Args: args,
		CPU: s.cpu, MemorySize: s.memorySize, Timeout: s.timeout, RequestID: requestID,
	}
}
