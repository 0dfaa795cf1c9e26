package testutil

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// httpClient allows for synchronous executions, which last as long as the
// function runs.
var httpClient = &http.Client{Timeout: 3 * time.Minute}

// Form is a multipart/form-data body: text fields and file parts, the shape
// python-qinlingclient uses to create and update package functions.
type Form struct {
	Fields map[string]string
	Files  map[string]File // by field name, e.g. "package"
}

// File is one file part of a Form.
type File struct {
	Name string // the filename the part carries
	Data []byte
}

// Response is an HTTP response with its body read.
type Response struct {
	Method string
	Path   string
	Status int
	Header http.Header
	Body   []byte
}

// String describes the exchange for failure messages (body cut at 2 KiB).
func (r *Response) String() string {
	body := string(r.Body)
	if len(body) > 2048 {
		body = body[:2048] + "…"
	}
	return fmt.Sprintf("%s %s → %d (%s) %s", r.Method, r.Path, r.Status, r.Header.Get("Content-Type"), body)
}

// Object decodes the body as a JSON object, failing the test otherwise.
func (r *Response) Object(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	r.Decode(t, &m)
	require.NotNil(t, m, "%s: body is JSON null", r)
	return m
}

// ObjectOf returns v as a JSON object, whether it came as an object or as a
// JSON string holding one: the API renders a function's code as an object
// in some answers and as a string in lists, and the CLI prints dict columns
// either way.
func ObjectOf(t testing.TB, v any) map[string]any {
	t.Helper()
	switch o := v.(type) {
	case map[string]any:
		return o
	case string:
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(o), &m), "%q is not a JSON object", o)
		require.NotNil(t, m, "%q is JSON null", o)
		return m
	}
	t.Fatalf("%T %v is neither a JSON object nor a string holding one", v, v)
	return nil
}

// Decode decodes the JSON body into v, failing the test if it is not JSON.
func (r *Response) Decode(t testing.TB, v any) {
	t.Helper()
	require.NoError(t, json.Unmarshal(r.Body, v), "%s: body is not JSON", r)
}

// Fault checks the error shape python-qinlingclient needs (docs/api.md,
// "Errors"): Content-Type application/json and a JSON object with a non-empty
// string faultstring, which it returns.
func (r *Response) Fault(t testing.TB) string {
	t.Helper()
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	require.NoError(t, err, "%s: unparsable Content-Type", r)
	require.Equal(t, "application/json", mt, "%s: error bodies must be JSON", r)
	fault, _ := r.Object(t)["faultstring"].(string)
	require.NotEmpty(t, fault, "%s: no faultstring", r)
	return fault
}

// Client is what tests send requests through: an all-in-one *Server (no
// authentication) or a *Target (either mode, acting as one identity).
type Client interface {
	Do(t testing.TB, method, path string, body any, headers ...string) *Response
}

// Do sends a request to path (relative to URL, or an absolute URL) the way
// python-qinlingclient does: X-Auth-Token "notused", its User-Agent, Accept */*
// and Content-Type application/json even on body-less GETs. body may be:
//
//	nil          no body
//	string       sent as-is as application/json (for malformed JSON)
//	[]byte       likewise
//	url.Values   application/x-www-form-urlencoded
//	*Form        multipart/form-data
//	anything     JSON-encoded
//
// headers are name, value pairs overriding those defaults; an empty value
// removes a header. Only a transport error fails the test.
func (s *Server) Do(t testing.TB, method, path string, body any, headers ...string) *Response {
	t.Helper()
	r, err := send(httpClient, s.URL, "notused", method, path, body, headers...)
	require.NoError(t, err)
	return r
}

// send is Do without a test: base is the server URL, token the X-Auth-Token
// to send ("" sends none). The error is a transport error (or a malformed
// call); any HTTP status is a response.
func send(client *http.Client, base, token, method, path string, body any, headers ...string) (*Response, error) {
	if len(headers)%2 != 0 {
		return nil, fmt.Errorf("testutil: headers must be name, value pairs")
	}
	var (
		rd    io.Reader
		ctype string
	)
	switch b := body.(type) {
	case nil:
		if method == http.MethodGet {
			ctype = "application/json"
		}
	case string:
		rd, ctype = strings.NewReader(b), "application/json"
	case []byte:
		rd, ctype = bytes.NewReader(b), "application/json"
	case url.Values:
		rd, ctype = strings.NewReader(b.Encode()), "application/x-www-form-urlencoded"
	case *Form:
		data, ct, err := b.encode()
		if err != nil {
			return nil, err
		}
		rd, ctype = bytes.NewReader(data), ct
	default:
		data, err := json.Marshal(b)
		if err != nil {
			return nil, err
		}
		rd, ctype = bytes.NewReader(data), "application/json"
	}
	target := path
	if !strings.HasPrefix(path, "http://") && !strings.HasPrefix(path, "https://") {
		target = base + path
	}
	req, err := http.NewRequest(method, target, rd)
	if err != nil {
		return nil, err
	}
	if token != "" {
		req.Header.Set("X-Auth-Token", token)
	}
	req.Header.Set("User-Agent", "python-qinlingclient")
	req.Header.Set("Accept", "*/*")
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for i := 0; i < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
		} else {
			req.Header.Set(headers[i], headers[i+1])
		}
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: reading body: %w", method, path, err)
	}
	return &Response{Method: method, Path: path, Status: resp.StatusCode, Header: resp.Header, Body: data}, nil
}

func (f *Form) encode() ([]byte, string, error) {
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	for _, k := range sortedKeys(f.Fields) {
		if err := w.WriteField(k, f.Fields[k]); err != nil {
			return nil, "", err
		}
	}
	for _, k := range sortedKeys(f.Files) {
		part, err := w.CreateFormFile(k, f.Files[k].Name)
		if err != nil {
			return nil, "", err
		}
		if _, err := part.Write(f.Files[k].Data); err != nil {
			return nil, "", err
		}
	}
	if err := w.Close(); err != nil {
		return nil, "", err
	}
	return b.Bytes(), w.FormDataContentType(), nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
