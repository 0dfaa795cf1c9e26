package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/qinling-go/qinling/pkg/errdefs"
)

// fuzzLimits are small so the fuzzer reaches the size checks with inputs it
// can build: the properties below hold for any limit.
var fuzzLimits = Limits{
	MaxBodySize: 4096, MaxPackageSize: 8192,
	MinCPU: 100, DefaultCPU: 100, MaxCPU: 300,
	MinMemory: 32 << 20, DefaultMemory: 32 << 20, MaxMemory: 128 << 20,
	MinTimeout: 1, DefaultTimeout: 5, MaxTimeout: 300,
}

// fuzzBodies are the JSON request bodies the handlers decode, one per kind of
// request (the fuzz input's first byte picks one).
var fuzzBodies = []struct {
	name string
	new  func() any
}{
	{"runtime", func() any { return new(runtimeRequest) }},
	{"alias", func() any { return new(aliasRequest) }},
	{"execution", func() any { return new(executionRequest) }},
	{"job", func() any { return new(jobRequest) }},
	{"webhook", func() any { return new(webhookRequest) }},
	{"version", func() any { return new(versionRequest) }},
	{"scale", func() any { return new(scaleRequest) }},
	{"webhook invoke", func() any { return new(map[string]any) }},
	{"function (JSON)", func() any { return new(map[string]json.RawMessage) }},
}

// requireClientError fails unless err is an errdefs error whose status is a
// 4xx: bad input must never become a 500.
func requireClientError(t *testing.T, err error, input any) {
	t.Helper()
	var e *errdefs.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) for %q is not an errdefs error", err, err, input)
	}
	if st := errdefs.HTTPStatus(err); st < 400 || st > 499 {
		t.Fatalf("error %v for %q maps to %d, want a 4xx", err, input, st)
	}
	if strings.TrimSpace(errdefs.PublicMessage(err)) == "" {
		t.Fatalf("error for %q has no message", input)
	}
}

// FuzzDecodeRequest feeds every create/update body type through decodeJSON.
// Properties: a body over the limit is always 413 and one under it never is;
// every error is a 4xx errdefs error; only valid JSON is accepted; an
// accepted body, encoded again from what was decoded, decodes to the same
// value (nothing is half-read).
func FuzzDecodeRequest(f *testing.F) {
	seeds := map[int][]string{
		0: {`{"image": "openstackqinling/python3-runtime:0.0.2", "is_public": true, "trusted": true, "name": "python3"}`,
			`{"name": "renamed", "description": null}`, `{"status": "available"}`},
		1: {`{"name": "prod", "function_id": "6d2b0a9e-0000-4000-8000-000000000000", "function_version": 1, "description": "d"}`,
			`{"function_id": null, "function_version": "2", "description": null}`},
		2: {`{"function_id": "6d2b0a9e-0000-4000-8000-000000000000", "function_version": 0, "function_alias": null, "sync": true, "input": "{\"name\": \"Qinling\"}"}`,
			`{"function_id": null, "function_version": null, "function_alias": "prod", "sync": false, "input": null}`,
			`{"function_id": "x", "input": {"a": [1, 2.5e3, null]}}`},
		3: {`{"function_alias": null, "function_id": "6d2b0a9e-0000-4000-8000-000000000000", "function_version": null, "name": "j", "first_execution_time": "2030-01-01 00:00", "pattern": "*/5 * * * *", "function_input": "{}", "count": 3}`,
			`{"name": null, "status": "paused", "pattern": null, "next_execution_time": "2030-01-01 00:00", "function_input": null}`},
		4: {`{"function_id": "6d2b0a9e-0000-4000-8000-000000000000", "function_version": 0, "function_alias": null, "description": "hook"}`,
			`{"function_id": null, "function_version": "1", "description": null}`},
		5: {`{"description": "v1"}`, `{"description": null}`, ``},
		6: {`{"count": 2}`, `{"count": "3"}`, `{}`},
		7: {`{"name": "Qinling", "nested": {"a": [true, false]}}`},
		8: {`{"code": "{\"source\": \"image\", \"image\": \"busybox\"}", "name": "f", "timeout": 5}`},
	}
	for kind, bodies := range seeds {
		for _, b := range bodies {
			f.Add(uint8(kind), []byte(b))
		}
	}
	f.Add(uint8(2), []byte(`{"input": 1e400}`))
	f.Add(uint8(0), []byte(`[1,2]`))
	f.Add(uint8(0), []byte(`{"name": "a"} {"name": "b"}`))
	f.Add(uint8(0), []byte(strings.Repeat("[", 20000)))
	s := &Server{Limits: fuzzLimits}
	f.Fuzz(func(t *testing.T, kind uint8, body []byte) {
		typ := fuzzBodies[int(kind)%len(fuzzBodies)]
		v := typ.new()
		err := s.decodeJSON(httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body)), v)
		over := int64(len(body)) > s.Limits.MaxBodySize
		if over != (errdefs.KindOf(err) == errdefs.KindTooLarge && err != nil) {
			t.Fatalf("%s body of %d bytes (limit %d): error %v", typ.name, len(body), s.Limits.MaxBodySize, err)
		}
		if err != nil {
			requireClientError(t, err, body)
			return
		}
		if len(bytes.TrimSpace(body)) > 0 && !json.Valid(body) {
			t.Fatalf("%s: %q is not JSON, but was accepted as %#v", typ.name, body, v)
		}
		again, err := reencode(v)
		if err != nil {
			t.Fatalf("%s: %q decoded to %#v, which does not encode: %v", typ.name, body, v, err)
		}
		v2 := typ.new()
		if err := s.decodeJSON(httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(again)), v2); err != nil {
			t.Fatalf("%s: %q decoded, its re-encoding %q does not: %v", typ.name, body, again, err)
		}
		// The re-encoding is compared, not the decoded values: a free-form
		// member (json.RawMessage) keeps the client's whitespace, which
		// encoding compacts, so `{"a":[ ]}` and `{"a":[]}` are equal requests.
		again2, err := reencode(v2)
		if err != nil {
			t.Fatalf("%s: %q decoded to %#v, which does not encode: %v", typ.name, again, v2, err)
		}
		if !bytes.Equal(again, again2) {
			t.Fatalf("%s: %q decoded to %#v, its re-encoding %q to %#v (%q)", typ.name, body, v, again, v2, again2)
		}
	})
}

// reencode writes a decoded request struct back as the JSON object a client
// would send for it: only the members that were present, in the wire form
// their decoders accept.
func reencode(v any) ([]byte, error) {
	rv := reflect.ValueOf(v).Elem()
	if rv.Kind() != reflect.Struct {
		return json.Marshal(v)
	}
	out := map[string]any{}
	for i := range rv.NumField() {
		name, _, _ := strings.Cut(rv.Type().Field(i).Tag.Get("json"), ",")
		switch fv := rv.Field(i).Interface().(type) {
		case optString:
			if fv.Set {
				out[name] = fv.Value
			}
		case flexInt:
			if fv.Set {
				out[name] = fv.Value
			}
		case rawInput:
			if fv.Value != nil {
				out[name] = *fv.Value
			}
		case *bool:
			if fv != nil {
				out[name] = *fv
			}
		default:
			if fv != nil {
				out[name] = fv
			}
		}
	}
	return json.Marshal(out)
}

// FuzzFunctionForm feeds function create/update bodies, in whatever content
// type, through parseFunctionForm and parseResources. Properties: every
// error is a 4xx errdefs error; an accepted form holds only known fields,
// and its package, if any, is within the limit and readable to its size.
func FuzzFunctionForm(f *testing.F) {
	zipped := []byte("PK\x05\x06" + strings.Repeat("\x00", 18))
	cliCreate := multipartSeed(f, map[string]string{
		"runtime_id": "6d2b0a9e-0000-4000-8000-000000000000",
		"code":       `{"source": "package", "md5sum": "0f343b0931126a20f133d67c2b018a3b"}`,
		"name":       "hello", "entry": "hello.main", "cpu": "100", "memory_size": "33554432", "timeout": "5",
	}, zipped)
	f.Add(cliCreate.ctype, cliCreate.body)
	cliUpdate := multipartSeed(f, map[string]string{"source": "package", "description": "new"}, zipped)
	f.Add(cliUpdate.ctype, cliUpdate.body)
	form := "application/x-www-form-urlencoded"
	f.Add(form, []byte(`code=%7B%22source%22%3A+%22image%22%2C+%22image%22%3A+%22busybox%22%7D&name=img&timeout=5`))
	f.Add(form, []byte(`source=swift&swift=container&swift=object&name=s`))
	f.Add(form, []byte(`timeout=abc`))
	f.Add(form, []byte(`cpu=99999999999999999999`))
	f.Add("application/json", []byte(`{"code": "{\"source\": \"image\", \"image\": \"busybox\"}", "name": "f", "timeout": 5, "cpu": null}`))
	f.Add("application/json", []byte(`{"code": {"source": "package"}}`))
	f.Add("", []byte(``))
	f.Add("text/plain", []byte(`x`))
	f.Add("multipart/form-data; boundary=x", []byte("--x\r\nContent-Disposition: form-data; name=\"package\"; filename=\"a.zip\"\r\n\r\nPK\r\n--x--\r\n"))
	s := &Server{Limits: fuzzLimits}
	f.Fuzz(func(t *testing.T, ctype string, body []byte) {
		r := httptest.NewRequest(http.MethodPost, "/v1/functions", bytes.NewReader(body))
		if ctype != "" {
			r.Header.Set("Content-Type", ctype)
		}
		form, err := s.parseFunctionForm(httptest.NewRecorder(), r)
		if err != nil {
			requireClientError(t, err, body)
			return
		}
		defer form.close()
		for k := range form.values {
			if !functionFields[k] {
				t.Fatalf("unknown field %q accepted from %q", k, body)
			}
		}
		if form.pkg != nil {
			if form.pkgSize > s.Limits.MaxPackageSize {
				t.Fatalf("package of %d bytes accepted (limit %d)", form.pkgSize, s.Limits.MaxPackageSize)
			}
			n, err := io.Copy(io.Discard, form.pkg)
			if err != nil || n != form.pkgSize {
				t.Fatalf("package reads %d bytes (%v), its size is %d", n, err, form.pkgSize)
			}
		}
		if _, err := s.parseResources(form); err != nil {
			requireClientError(t, err, body)
		}
	})
}

type multipartBody struct {
	ctype string
	body  []byte
}

// multipartSeed encodes fields and a package file part as the CLI does.
func multipartSeed(f *testing.F, fields map[string]string, pkg []byte) multipartBody {
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	for _, k := range slices.Sorted(maps.Keys(fields)) {
		if err := w.WriteField(k, fields[k]); err != nil {
			f.Fatal(err)
		}
	}
	fw, err := w.CreateFormFile("package", "hello.zip")
	if err != nil {
		f.Fatal(err)
	}
	if _, err := fw.Write(pkg); err != nil {
		f.Fatal(err)
	}
	if err := w.Close(); err != nil {
		f.Fatal(err)
	}
	return multipartBody{ctype: w.FormDataContentType(), body: b.Bytes()}
}
