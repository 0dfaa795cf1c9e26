//go:build functional

package functional

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/testutil"
)

// The HTTP fuzz pass is bounded by both a number of rounds over every route
// and a time budget; the seed is printed so that a failure can be replayed.
const (
	envFuzzSeed   = "QINLING_HTTP_FUZZ_SEED"   // default: the clock
	envFuzzRounds = "QINLING_HTTP_FUZZ_ROUNDS" // default 10 requests per route
	envFuzzTime   = "QINLING_HTTP_FUZZ_TIME"   // default 2m
	fuzzBodyLimit = 64 << 10                   // the private server's max_body_size
)

// TestHTTPFuzz sends seeded random requests to every route the API
// registers (read from its source, so a new route is covered without being
// listed here) on a private all-in-one: wrong methods, malformed, huge and
// deeply nested JSON, wrong content types, broken multipart and form bodies,
// odd path ids and query strings. No answer may be a 5xx, every error must
// be JSON with a faultstring, the server must still answer afterwards and
// its log must hold no panic.
func TestHTTPFuzz(t *testing.T) {
	testutil.SkipIfReal(t, srv, "it fuzzes a private all-in-one; the real stack serves the same handlers")
	t.Parallel()
	aio := testutil.StartAllInOne(t,
		testutil.WithConfig("api", "max_body_size", strconv.Itoa(fuzzBodyLimit)),
		testutil.WithConfig("storage", "max_package_size", strconv.Itoa(fuzzBodyLimit)))
	s := testutil.ServerTarget(aio)

	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv(envFuzzSeed); v != "" {
		var err error
		seed, err = strconv.ParseUint(v, 10, 64)
		require.NoError(t, err, envFuzzSeed)
	}
	rounds := testutil.EnvInt(t, envFuzzRounds, 10)
	budget := 2 * time.Minute
	if v := os.Getenv(envFuzzTime); v != "" {
		var err error
		budget, err = time.ParseDuration(v)
		require.NoError(t, err, envFuzzTime)
	}
	t.Logf("seed %d (%s=%d replays this run), %d rounds, at most %s", seed, envFuzzSeed, seed, rounds, budget)

	// Real objects, so that requests get past the lookups by id.
	rt := createRuntime(t, s, "python3", "python3")
	rtID := rt["id"].(string)
	require.Equal(t, "available", waitRuntime(t, s, rtID)["status"])
	fnID := createFunction(t, s, packageForm(rtID, "fuzz", "hello.main",
		testutil.Zip(t, map[string]string{"hello.py": helloPy})))["id"].(string)
	expect(t, call(t, s, http.MethodPost, "/v1/aliases", map[string]any{"name": "fuzz", "function_id": fnID}), http.StatusCreated)

	f := &httpFuzzer{
		rng:    rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		ids:    []string{rtID, fnID, uuid.NewSHA1(uuid.NameSpaceOID, []byte("fuzz")).String()},
		client: &http.Client{Timeout: time.Minute},
		base:   aio.URL,
	}
	routes := apiRoutes(t)
	deadline := time.Now().Add(budget)
	sent := 0
rounds:
	for range rounds {
		for _, route := range routes {
			if time.Now().After(deadline) {
				t.Logf("time budget %s reached", budget)
				break rounds
			}
			f.check(t, f.request(route))
			sent++
		}
	}
	t.Logf("%d requests over %d routes", sent, len(routes))

	expect(t, call(t, s, http.MethodGet, "/v1/functions/"+fnID, nil), http.StatusOK)
	log := aio.Log()
	require.NotContains(t, log, "panic", "the server log has a panic (seed %d)", seed)
}

// apiRoutes reads the "METHOD /path" patterns the API package registers.
func apiRoutes(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("../../qinling-api/internal/api/*.go")
	require.NoError(t, err)
	pattern := regexp.MustCompile(`"((?:GET|HEAD|POST|PUT|PATCH|DELETE) /[^"]*)"`)
	var routes []string
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		require.NoError(t, err)
		for _, m := range pattern.FindAllStringSubmatch(string(src), -1) {
			routes = append(routes, m[1])
		}
	}
	slices.Sort(routes)
	routes = slices.Compact(routes)
	require.GreaterOrEqual(t, len(routes), 40, "the API's routes were not found: %v", routes)
	return routes
}

// fuzzRequest is one generated request, kept whole for the failure message.
type fuzzRequest struct {
	method, path, ctype string
	body                []byte
}

func (r fuzzRequest) String() string {
	b := r.body
	if len(b) > 300 {
		b = append(b[:300:300], "..."...)
	}
	return fmt.Sprintf("%s %s (Content-Type %q, %d bytes) %q", r.method, r.path, r.ctype, len(r.body), b)
}

type httpFuzzer struct {
	rng    *rand.Rand
	ids    []string // real objects; DELETE never gets them, so they stay
	client *http.Client
	base   string
}

func (f *httpFuzzer) pick(items ...string) string { return items[f.rng.IntN(len(items))] }

// fieldNames are the members the API's request bodies know, plus strays.
var fieldNames = []string{
	"name", "description", "function_id", "function_version", "function_alias", "sync", "input",
	"image", "is_public", "trusted", "count", "pattern", "first_execution_time", "next_execution_time",
	"status", "function_input", "code", "runtime_id", "entry", "cpu", "memory_size", "timeout",
	"source", "package", "id", "project_id", "created_at", "unknown", "NAME", "",
}

func (f *httpFuzzer) request(route string) fuzzRequest {
	method, path, _ := strings.Cut(strings.Replace(route, "{$}", "", 1), " ")
	if f.rng.IntN(5) == 0 {
		method = f.pick("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "FUZZ")
	}
	path = regexp.MustCompile(`\{[^}]*\}`).ReplaceAllStringFunc(path, func(w string) string {
		switch w {
		case "{n}":
			return f.pick("0", "1", "2", "-1", "99999999999999999999", "abc", "1.5", "%20", "")
		case "{name}":
			return f.pick("fuzz", "no-such-alias", "%2e%2e", strings.Repeat("a", 300), "a%2Fb", "%00")
		}
		return f.id(method)
	})
	if f.rng.IntN(8) == 0 {
		path += f.pick("/", "//", "/extra", "/..", "?")
	}
	if f.rng.IntN(2) == 0 {
		path += "?" + f.query()
	}
	req := fuzzRequest{method: method, path: path}
	f.body(&req)
	return req
}

func (f *httpFuzzer) id(method string) string {
	if method != "DELETE" && f.rng.IntN(2) == 0 {
		return f.ids[f.rng.IntN(len(f.ids))]
	}
	var u uuid.UUID
	for i := range u {
		u[i] = byte(f.rng.UintN(256))
	}
	u[6], u[8] = u[6]&0x0f|0x40, u[8]&0x3f|0x80 // version 4, RFC 4122 variant
	return f.pick(u.String(), strings.ToUpper(f.ids[0]), "not-a-uuid", "..", "%2e%2e%2fetc",
		"00000000-0000-0000-0000-000000000000", strings.Repeat("f", 2000), "%ff%fe", "{id}", "6d2b0a9e00004000800000000000000")
}

func (f *httpFuzzer) query() string {
	keys := []string{"limit", "marker", "sort_key", "sort_dir", "all_projects", "project_id", "status",
		"function_id", "function_version", "download", "name", "foo", "count", "created_at", "id"}
	var parts []string
	for range 1 + f.rng.IntN(4) {
		k := f.pick(keys...)
		v := f.pick("", "1", "-1", "0", "true", "maybe", "in:a,b", "nin:", "eq:", "gt:2030-01-01", "lte:x",
			"has:", "%zz", strings.Repeat("in:", 50), strings.Repeat("x,", 3000), "'; DROP TABLE functions; --",
			"\u00e9\u4e2d", "99999999999999999999", "asc", "desc", f.ids[0])
		parts = append(parts, k+"="+v)
	}
	// A raw space would break the request line itself: net/http answers
	// that before any handler, and clients encode it.
	return strings.ReplaceAll(strings.Join(parts, "&"), " ", "+")
}

// body fills in one of the body shapes a confused or hostile client sends.
func (f *httpFuzzer) body(r *fuzzRequest) {
	switch f.rng.IntN(11) {
	case 0: // none
	case 1, 2, 3: // a JSON object of plausible members with random values
		r.ctype, r.body = "application/json", f.jsonObject(3)
	case 4: // malformed JSON: cut short, or not JSON at all
		b := f.jsonObject(2)
		r.ctype, r.body = "application/json", b[:f.rng.IntN(len(b))]
	case 5: // deeply nested
		depth := f.pick("100", "10001", "30000")
		n, _ := strconv.Atoi(depth)
		r.ctype, r.body = "application/json", []byte(`{"input": `+strings.Repeat("[", n)+strings.Repeat("]", n)+"}")
	case 6: // larger than the limit
		r.ctype, r.body = "application/json", []byte(`{"description": "`+strings.Repeat("x", fuzzBodyLimit+f.rng.IntN(1000))+`"}`)
	case 7: // the right body with the wrong (or no) content type
		r.ctype, r.body = f.pick("", "text/plain", "application/xml", "multipart/form-data", "application/json; charset=utf-16", ";;;", "application/x-www-form-urlencoded"), f.jsonObject(2)
	case 8: // broken multipart
		r.ctype, r.body = f.multipart()
	case 9: // form-urlencoded with odd values
		r.ctype = "application/x-www-form-urlencoded"
		r.body = []byte(f.pick("name=a&cpu=abc&timeout=-1", "code=%7B&runtime_id="+f.ids[0], "%zz=1", "timeout=99999999999999999999", "package=x&swift=a&swift=b", strings.Repeat("a=1&", 5000)))
	case 10: // random bytes
		b := make([]byte, f.rng.IntN(512))
		for i := range b {
			b[i] = byte(f.rng.UintN(256))
		}
		r.ctype, r.body = f.pick("application/json", "application/octet-stream", ""), b
	}
}

func (f *httpFuzzer) jsonObject(depth int) []byte {
	obj := map[string]any{}
	for range f.rng.IntN(6) {
		obj[f.pick(fieldNames...)] = f.jsonValue(depth)
	}
	b, _ := json.Marshal(obj)
	return b
}

func (f *httpFuzzer) jsonValue(depth int) any {
	n := 9
	if depth <= 0 {
		n = 7
	}
	switch f.rng.IntN(n) {
	case 0:
		return nil
	case 1:
		return f.rng.IntN(2) == 0
	case 2:
		return []any{0, 1, -1, 1e300, 2.5, 99999999999999999999.0, 5, 300}[f.rng.IntN(8)]
	case 3:
		return f.pick("1", "0", "-3", "1e3", "")
	case 4:
		return f.ids[f.rng.IntN(len(f.ids))]
	case 5:
		return f.pick("*/5 * * * *", "0 0 30 2 *", "@every 1s", "2030-01-01 00:00", "python3", "hello.main",
			`{"source": "package"}`, `{"source": "image", "image": "busybox"}`, "paused", "running", "fuzz", "\x00\u2028\ud7ff")
	case 6:
		return strings.Repeat("\u00e9", f.rng.IntN(3000))
	case 7:
		return []any{f.jsonValue(depth - 1), f.jsonValue(depth - 1)}
	default:
		return map[string]any{f.pick(fieldNames...): f.jsonValue(depth - 1)}
	}
}

func (f *httpFuzzer) multipart() (string, []byte) {
	part := func(name, filename, data string) string {
		disp := `form-data; name="` + name + `"`
		if filename != "" {
			disp += `; filename="` + filename + `"`
		}
		return "--b\r\nContent-Disposition: " + disp + "\r\n\r\n" + data + "\r\n"
	}
	switch f.rng.IntN(5) {
	case 0: // no closing boundary
		return "multipart/form-data; boundary=b", []byte(part("name", "", "x"))
	case 1: // no boundary parameter
		return "multipart/form-data", []byte(part("name", "", "x") + "--b--\r\n")
	case 2: // a package that is not a zip, with odd fields
		return "multipart/form-data; boundary=b", []byte(part("package", "f.zip", "PK\x03\x04broken") +
			part("code", "", `{"source": "package", "md5sum": "0"}`) + part("runtime_id", "", f.ids[0]) +
			part("entry", "", "../../x") + part("cpu", "", "1e3") + "--b--\r\n")
	case 3: // a package over the limit
		return "multipart/form-data; boundary=b", []byte(part("package", "big.zip", strings.Repeat("P", fuzzBodyLimit+1)) + "--b--\r\n")
	default: // a header with no blank line after it
		return "multipart/form-data; boundary=b", []byte("--b\r\nContent-Disposition: form-data; name=\"x\"\r\n" + strings.Repeat("X-Y: z\r\n", 2000))
	}
}

// check sends r and asserts what every answer must be.
func (f *httpFuzzer) check(t *testing.T, r fuzzRequest) {
	t.Helper()
	req, err := http.NewRequest(r.method, f.base+r.path, bytes.NewReader(r.body))
	if err != nil {
		return // a path net/http itself cannot send; nothing reached the server
	}
	if r.ctype != "" {
		req.Header.Set("Content-Type", r.ctype)
	}
	resp, err := f.client.Do(req)
	require.NoError(t, err, "%s", r)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err, "%s: reading the answer", r)
	require.Less(t, resp.StatusCode, 500, "%s answered %d: %s", r, resp.StatusCode, body)
	if resp.StatusCode < 400 || r.method == http.MethodHead {
		return
	}
	var fault struct {
		Faultstring string `json:"faultstring"`
	}
	require.NoError(t, json.Unmarshal(body, &fault), "%s answered %d with a body that is not JSON: %q", r, resp.StatusCode, body)
	require.NotEmpty(t, fault.Faultstring, "%s answered %d without a faultstring: %s", r, resp.StatusCode, body)
}
