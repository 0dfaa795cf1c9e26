//go:build functional

package functional

import (
	"crypto/rand"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/testutil"
)

// errCase is one request that must be refused with a JSON fault.
type errCase struct {
	name   string
	method string
	path   string
	body   any
	status []int            // acceptable statuses, upstream's first
	fault  string           // exact faultstring (upstream's message), if set
	has    []string         // else: the faultstring contains one of these (case-insensitive), if set
	as     *testutil.Target // who sends it; srv (demo) when nil
}

func (tc errCase) run(t *testing.T) {
	t.Helper()
	c := tc.as
	if c == nil {
		c = srv
	}
	r := call(t, c, tc.method, tc.path, tc.body)
	require.True(t, slices.Contains(tc.status, r.Status), "want status in %v: %s", tc.status, r)
	fault := r.Fault(t)
	switch {
	case tc.fault != "":
		assert.Equal(t, tc.fault, fault)
	case len(tc.has) > 0:
		lower := strings.ToLower(fault)
		assert.True(t, slices.ContainsFunc(tc.has, func(s string) bool { return strings.Contains(lower, strings.ToLower(s)) }),
			"faultstring %q should mention one of %q", fault, tc.has)
	}
}

func runCases(t *testing.T, cases []errCase) {
	t.Helper()
	for _, tc := range cases {
		if tc.method == "" {
			tc.method = http.MethodPost
		}
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t)
		})
	}
}

const unknownUUID = "3f5a0a42-8c4b-4a63-9a57-0d7c2a1e9f10"

// TestBadRuntimeAndExecutionBodies: WSME-style body validation (docs/api.md, "Requests").
// Runtimes are created by admins: their cases are sent as admin.
func TestBadRuntimeAndExecutionBodies(t *testing.T) {
	t.Parallel()
	fid := helloFunction(t)
	runCases(t, []errCase{
		{name: "runtime malformed JSON", path: "/v1/runtimes", body: `{"image": "python3",`, status: []int{400}, as: admin},
		{name: "execution malformed JSON", path: "/v1/executions", body: `{"function_id": `, status: []int{400}},
		{name: "runtime is_public not a bool", path: "/v1/runtimes", body: map[string]any{"image": "python3", "is_public": 3}, status: []int{400}, as: admin},
		{name: "runtime image not a string", path: "/v1/runtimes", body: map[string]any{"image": []int{1}}, status: []int{400}, as: admin},
		{name: "execution sync not a bool", path: "/v1/executions", body: map[string]any{"function_id": fid, "sync": "yes"}, status: []int{400}},
		{name: "execution function_version not an int", path: "/v1/executions", body: map[string]any{"function_id": fid, "function_version": "one"}, status: []int{400}},
		{name: "runtime unknown attribute", path: "/v1/runtimes", body: map[string]any{"image": "python3", "colour": "blue"}, status: []int{400}, has: []string{"colour"}, as: admin},
		{name: "execution unknown attribute", path: "/v1/executions", body: map[string]any{"function_id": fid, "colour": "blue"}, status: []int{400}, has: []string{"colour"}},
		{name: "runtime without image", path: "/v1/runtimes", body: map[string]any{"name": "no-image"}, status: []int{400}, has: []string{"image"}, as: admin},
		{
			name: "execution without function", path: "/v1/executions",
			body:   map[string]any{"function_id": nil, "function_version": 0, "function_alias": nil, "sync": true, "input": nil},
			status: []int{400}, fault: "Either function_alias or function_id must be provided.",
		},
		{name: "execution of unknown function", path: "/v1/executions", body: map[string]any{"function_id": unknownUUID}, status: []int{404}, has: []string{"not found"}},
		{name: "execution of non-UUID function", path: "/v1/executions", body: map[string]any{"function_id": "not-a-uuid"}, status: []int{400, 404}},
		{
			// The 413 names the option that sets the limit ([api] max_body_size, 1 MiB here).
			name: "execution body over max_body_size", path: "/v1/executions",
			body:   map[string]any{"function_id": fid, "input": strings.Repeat("x", 1<<20)},
			status: []int{413}, fault: "Request body is larger than the limit of 1048576 bytes set by [api] max_body_size.",
		},
	})
}

// TestBadFunctionCreate: POST /v1/functions validation (docs/api.md), with the
// messages upstream gives.
func TestBadFunctionCreate(t *testing.T) {
	t.Parallel()
	rt := pythonRuntime(t)
	broken := unrunnableRuntime(t)
	pkg := testutil.Zip(t, map[string]string{"hello.py": helloPy})
	form := func(extra ...string) *testutil.Form { return packageForm(rt, "bad", "hello.main", pkg, extra...) }
	withPackage := func(f *testutil.Form, data []byte) *testutil.Form {
		f.Files["package"] = testutil.File{Name: "bad.zip", Data: data}
		return f
	}
	notZip := []byte("this is not a zip file")
	// Random bytes do not compress: the zip is larger than its content.
	limit := srv.MaxPackageSize()
	oversize := testutil.Zip(t, map[string]string{"big.bin": randomBytes(t, limit+4096)})
	require.Greater(t, len(oversize), limit)

	noPackage := form()
	noPackage.Files = nil
	const (
		timeoutRange = "timeout resource limitation not within the allowable range: 1 ~ 300(seconds)."
		cpuRange     = "cpu resource limitation not within the allowable range: 100 ~ 300(millicpu)."
		memoryRange  = "memory resource limitation not within the allowable range: 33554432 ~ 134217728(bytes)."
	)
	runCases(t, []errCase{
		{name: "no package part", path: "/v1/functions", body: noPackage, status: []int{400}, has: []string{"package"}},
		{name: "no code", path: "/v1/functions", body: form("code", ""), status: []int{400}, has: []string{"code"}},
		{name: "code not JSON", path: "/v1/functions", body: form("code", "{source: package"), status: []int{400}},
		{
			name: "code as an object in a JSON body", path: "/v1/functions",
			body:   map[string]any{"runtime_id": rt, "entry": "hello.main", "code": map[string]any{"source": "package"}},
			status: []int{400},
		},
		{name: "unknown code source", path: "/v1/functions", body: form("code", `{"source": "ftp"}`), status: []int{400}, has: []string{"source"}},
		{name: "no runtime_id", path: "/v1/functions", body: form("runtime_id", ""), status: []int{400}, fault: `"runtime_id" must be specified.`},
		{
			// Refused at create, not only when the function first runs.
			name: "entry without a dot", path: "/v1/functions", body: form("entry", "main"), status: []int{400},
			fault: `Invalid entry "main": use <module>.<function>, such as hello.main for function main in hello.py (the default is main.main).`,
		},
		{name: "wrong md5", path: "/v1/functions", body: form("code", `{"source": "package", "md5sum": "0123456789abcdef0123456789abcdef"}`), status: []int{400}, fault: "Package md5 mismatch."},
		{
			name: "not a zip", path: "/v1/functions",
			body:   withPackage(form("code", fmt.Sprintf(`{"source": "package", "md5sum": "%s"}`, testutil.MD5(notZip))), notZip),
			status: []int{400}, has: []string{"zip"},
		},
		{
			name: "package over max_package_size", path: "/v1/functions",
			body:   withPackage(form("code", fmt.Sprintf(`{"source": "package", "md5sum": "%s"}`, testutil.MD5(oversize))), oversize),
			status: []int{413}, has: []string{"set by [storage] max_package_size."},
		},
		{name: "timeout not an integer", path: "/v1/functions", body: form("timeout", "soon"), status: []int{400}, fault: "Invalid timeout resource specified. An integer is required."},
		{name: "timeout too small", path: "/v1/functions", body: form("timeout", "0"), status: []int{400}, fault: timeoutRange},
		{name: "timeout too big", path: "/v1/functions", body: form("timeout", "301"), status: []int{400}, fault: timeoutRange},
		{name: "cpu not an integer", path: "/v1/functions", body: form("cpu", "lots"), status: []int{400}, fault: "Invalid cpu resource specified. An integer is required."},
		{name: "cpu too small", path: "/v1/functions", body: form("cpu", "50"), status: []int{400}, fault: cpuRange},
		{name: "cpu too big", path: "/v1/functions", body: form("cpu", "301"), status: []int{400}, fault: cpuRange},
		{name: "memory not an integer", path: "/v1/functions", body: form("memory_size", "1.5GB"), status: []int{400}, fault: "Invalid memory resource specified. An integer is required."},
		{name: "memory too small", path: "/v1/functions", body: form("memory_size", "1024"), status: []int{400}, fault: memoryRange},
		{name: "memory too big", path: "/v1/functions", body: form("memory_size", "134217729"), status: []int{400}, fault: memoryRange},
		{name: "unknown runtime", path: "/v1/functions", body: form("runtime_id", unknownUUID), status: []int{404}, has: []string{"not found"}},
		{name: "runtime not available", path: "/v1/functions", body: form("runtime_id", broken), status: []int{400, 409}, has: []string{"not available"}},
		{
			name: "update timeout too big", method: http.MethodPut, path: "/v1/functions/" + helloFunction(t),
			body: url.Values{"timeout": {"301"}}, status: []int{400}, fault: timeoutRange,
		},
	})
}

// TestBadIDs: ids in paths that are not UUIDs, or unknown ones, are 4xx
// faults, never 500s. Runtime paths are asked as admin (pool show and
// runtime delete are admin-only).
func TestBadIDs(t *testing.T) {
	t.Parallel()
	var cases []errCase
	for _, path := range []string{
		"/v1/functions/not-a-uuid", "/v1/executions/xyz", "/v1/runtimes/xyz",
		"/v1/executions/xyz/log", "/v1/runtimes/xyz/pool",
	} {
		cases = append(cases, errCase{name: "GET " + path, method: http.MethodGet, path: path, status: []int{400, 404}, as: runtimeCaller(path)})
	}
	cases = append(cases,
		errCase{name: "DELETE non-UUID function", method: http.MethodDelete, path: "/v1/functions/not-a-uuid", status: []int{400, 404}},
		errCase{name: "DELETE non-UUID execution", method: http.MethodDelete, path: "/v1/executions/xyz", status: []int{400, 404}},
	)
	for _, res := range []string{"functions", "executions", "runtimes"} {
		path := "/v1/" + res + "/" + unknownUUID
		cases = append(cases,
			errCase{name: "GET unknown " + res, method: http.MethodGet, path: path, status: []int{404}, has: []string{"not found"}, as: runtimeCaller(path)},
			errCase{name: "DELETE unknown " + res, method: http.MethodDelete, path: path, status: []int{404}, has: []string{"not found"}, as: runtimeCaller(path)},
		)
	}
	cases = append(cases,
		// The client crashes on an error without a JSON body, whatever the route.
		errCase{name: "unknown route", method: http.MethodGet, path: "/v1/nothing-here", status: []int{404}},
		errCase{name: "unsupported method", method: http.MethodPatch, path: "/v1/runtimes", body: map[string]any{}, status: []int{405},
			fault: "Method PATCH is not allowed on /v1/runtimes; allowed: GET, HEAD, POST.", as: admin},
	)
	cases = append(cases, errCase{
		name: "log of unknown execution", method: http.MethodGet, path: "/v1/executions/" + unknownUUID + "/log",
		status: []int{404}, has: []string{"not found"},
	})
	runCases(t, cases)
}

// TestDeleteRuntimeInUse: a runtime that functions use cannot be deleted.
func TestDeleteRuntimeInUse(t *testing.T) {
	t.Parallel()
	helloFunction(t) // on the python runtime, never deleted
	rt := pythonRuntime(t)
	errCase{method: http.MethodDelete, path: "/v1/runtimes/" + rt, status: []int{403}, has: []string{"in use"}, as: admin}.run(t)
	r := call(t, srv, http.MethodGet, "/v1/runtimes/"+rt, nil)
	expect(t, r, http.StatusOK)
	assert.Equal(t, "available", r.Object(t)["status"], "a refused delete leaves the runtime alone")
}

// randomBytes is n random bytes, as a string for testutil.Zip.
func randomBytes(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return string(b)
}

// runtimeCaller is who asks for path: admin for runtime paths (some of
// which are admin-only), the demo user otherwise.
func runtimeCaller(path string) *testutil.Target {
	if strings.HasPrefix(path, "/v1/runtimes") {
		return admin
	}
	return srv
}
