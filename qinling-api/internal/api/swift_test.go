package api_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/qinling-go/qinling/pkg/reqctx"
	"github.com/qinling-go/qinling/pkg/testutil"
	"github.com/qinling-go/qinling/qinling-api/internal/api"
	"github.com/qinling-go/qinling/storage/swiftcode/swiftcodetest"
)

// tokenAuth passes every request as user alice of project proj-a with the
// request's token, as Keystone authentication would.
type tokenAuth struct{}

func (tokenAuth) Authenticate(r *http.Request) (reqctx.Identity, error) {
	return reqctx.Identity{ProjectID: "proj-a", UserID: "alice", Roles: []string{"admin", "member"},
		AuthToken: "alice-token", AuthEnabled: true}, nil
}

func formReq(t *testing.T, method, u string, v url.Values) response {
	return do(t, method, u, "application/x-www-form-urlencoded", strings.NewReader(v.Encode()))
}

func swiftCode(container, object string) string {
	return `{"source": "swift", "swift": {"container": "` + container + `", "object": "` + object + `"}}`
}

// Upstream's checks and messages when a swift function is created.
func TestAPI_SwiftFunctionCreate(t *testing.T) {
	big := make([]byte, 2<<20) // over the test server's 1 MiB max_package_size
	for _, tc := range []struct {
		name    string
		noAuth  bool
		code    string
		status  int
		message string
	}{
		{name: "auth off", noAuth: true, code: swiftCode("functions", "hello.zip"), status: 400, message: "Swift object not supported."},
		{name: "no object", code: `{"source": "swift", "swift": {"container": "functions"}}`, status: 400,
			message: "Both container and object must be provided for swift type function."},
		{name: "no swift dict", code: `{"source": "swift"}`, status: 400,
			message: "Both container and object must be provided for swift type function."},
		{name: "missing object", code: swiftCode("functions", "nothing.zip"), status: 400, message: "Failed to validate object in Swift."},
		{name: "missing container", code: swiftCode("nothing", "hello.zip"), status: 400, message: "Failed to validate object in Swift."},
		{name: "oversize object", code: swiftCode("functions", "big.zip"), status: 400, message: "Failed to validate object in Swift."},
		{name: "created", code: swiftCode("functions", "hello.zip"), status: 201},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := swiftcodetest.New(1 << 20)
			pkg := testutil.Zip(t, map[string]string{"hello.py": "def main(**kw):\n    return 'hi'\n"})
			etag := src.Put("functions", "hello.zip", pkg)
			src.Put("functions", "big.zip", big)
			var auth api.Authenticator = tokenAuth{}
			if tc.noAuth {
				auth = api.NoAuth{}
			}
			_, ts, _ := newAPIWith(t, auth, func(s *api.Server) { s.Swift = src })
			rt := createRuntime(t, ts.URL)
			r := formReq(t, "POST", ts.URL+"/v1/functions", url.Values{"runtime_id": {rt}, "code": {tc.code}, "name": {"s"}, "entry": {"hello.main"}})
			require.Equal(t, tc.status, r.status, "%s", r.body)
			body := r.json(t)
			if tc.status != http.StatusCreated {
				require.Equal(t, tc.message, body["faultstring"])
				require.Empty(t, src.Trusts(), "no trust is left behind by a refused create")
				return
			}
			require.Equal(t, map[string]any{"source": "swift", "swift": map[string]any{"container": "functions", "object": "hello.zip", "etag": etag}}, body["code"])
			require.Equal(t, map[string]string{"trust-1": "alice"}, src.Trusts(), "the engine reads the object through the creator's trust")
		})
	}
}

// What a swift function does after it is created: download, run, update
// (the CLI's flattened form and a JSON code), versions, delete.
func TestAPI_SwiftFunctionLifecycle(t *testing.T) {
	src := swiftcodetest.New(1 << 20)
	v1 := testutil.Zip(t, map[string]string{"hello.py": "def main(**kw):\n    return 'one'\n"})
	v2 := testutil.Zip(t, map[string]string{"hello.py": "def main(**kw):\n    return 'two'\n"})
	etag1 := src.Put("functions", "hello.zip", v1)
	_, ts, orch := newAPIWith(t, tokenAuth{}, func(s *api.Server) { s.Swift = src })
	rt := createRuntime(t, ts.URL)
	r := formReq(t, "POST", ts.URL+"/v1/functions", url.Values{"runtime_id": {rt}, "code": {swiftCode("functions", "hello.zip")}, "entry": {"hello.main"}})
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	fn := ts.URL + "/v1/functions/" + r.json(t)["id"].(string)
	etagOf := func(r response) string {
		return r.json(t)["code"].(map[string]any)["swift"].(map[string]any)["etag"].(string)
	}

	dl := do(t, "GET", fn+"?download=true", "", nil)
	require.Equal(t, http.StatusOK, dl.status, "%s", dl.body)
	require.Equal(t, v1, dl.body, "the download is the object's recorded bytes")

	run := doJSON(t, "POST", ts.URL+"/v1/executions", `{"function_id": "`+strings.TrimPrefix(fn, ts.URL+"/v1/functions/")+`"}`)
	require.Equal(t, http.StatusCreated, run.status, "%s", run.body)
	require.Equal(t, "success", run.json(t)["status"], "%s", run.body)
	calls := orch.Calls().ScaleUp
	require.NotEmpty(t, calls)
	require.Equal(t, etag1, calls[len(calls)-1].MD5, "workers are specialised for the recorded ETag")

	// The object is replaced: the download says so until an update records it.
	etag2 := src.Put("functions", "hello.zip", v2)
	dl = do(t, "GET", fn+"?download=true", "", nil)
	require.Equal(t, http.StatusConflict, dl.status, "%s", dl.body)
	require.Contains(t, dl.json(t)["faultstring"], "changed after the function recorded it")

	// python-qinlingclient's `function update --object O` sends the dict's keys only.
	up := formReq(t, "PUT", fn, url.Values{"source": {"swift"}, "swift": {"object"}})
	require.Equal(t, http.StatusOK, up.status, "%s", up.body)
	require.Equal(t, etag2, etagOf(up))
	dl = do(t, "GET", fn+"?download=true", "", nil)
	require.Equal(t, v2, dl.body)

	src.Put("other", "hello2.zip", v1)
	for _, tc := range []struct {
		name    string
		form    url.Values
		status  int
		message string
		etag    string
	}{
		{name: "empty swift dict", form: url.Values{"code": {`{"source": "swift", "swift": {}}`}}, status: 400,
			message: "Either container or object must be provided for swift type function update."},
		{name: "code type changed", form: url.Values{"source": {"package"}}, status: 400, message: "The function code type can not be changed."},
		{name: "object that is not there", form: url.Values{"code": {`{"source": "swift", "swift": {"object": "gone.zip"}}`}}, status: 400,
			message: "Failed to validate object in Swift."},
		{name: "other container and object", form: url.Values{"code": {swiftCode("other", "hello2.zip")}}, status: 200, etag: etag1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := formReq(t, "PUT", fn, tc.form)
			require.Equal(t, tc.status, r.status, "%s", r.body)
			if tc.status != http.StatusOK {
				require.Equal(t, tc.message, r.json(t)["faultstring"])
				return
			}
			require.Equal(t, tc.etag, etagOf(r))
		})
	}

	ver := doJSON(t, "POST", fn+"/versions", `{}`)
	require.Equal(t, http.StatusForbidden, ver.status, "%s", ver.body)
	require.Equal(t, "Function versioning only allowed for package type function.", ver.json(t)["faultstring"])

	require.Len(t, src.Trusts(), 1)
	del := do(t, "DELETE", fn, "", nil)
	require.Equal(t, http.StatusNoContent, del.status, "%s", del.body)
	require.Empty(t, src.Trusts(), "deleting the function deletes its trust")
}
