package testutil

import (
	"archive/zip"
	"bytes"
	"io"
	"mime"
	"mime/multipart"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestZip_RoundTripAndDeterministic(t *testing.T) {
	files := map[string]string{"b.py": "import a\n", "a.py": "def main():\n    return 1\n"}
	data := Zip(t, files)
	assert.Equal(t, data, Zip(t, files), "same files must give the same bytes")

	r, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	require.NoError(t, err)
	got := map[string]string{}
	var names []string
	for _, f := range r.File {
		rc, err := f.Open()
		require.NoError(t, err)
		b, err := io.ReadAll(rc)
		require.NoError(t, err)
		rc.Close()
		got[f.Name] = string(b)
		names = append(names, f.Name)
	}
	assert.Equal(t, files, got)
	assert.Equal(t, []string{"a.py", "b.py"}, names)
}

func TestIniFile_DefaultsAndOverrides(t *testing.T) {
	f := &iniFile{}
	f.set("DEFAULT", "state_path", "/s")
	f.set("api", "port", "1")
	WithConfig("api", "port", "2")(f)
	WithConfig("storage", "max_package_size", "10")(f)
	assert.Equal(t, "[DEFAULT]\nstate_path = /s\n\n[api]\nport = 2\n\n[storage]\nmax_package_size = 10\n\n", string(f.bytes()))
}

func TestForm_Encode(t *testing.T) {
	f := &Form{
		Fields: map[string]string{"name": "hello", "code": `{"source": "package"}`},
		Files:  map[string]File{"package": {Name: "hello.zip", Data: []byte("PK")}},
	}
	body, ctype, err := f.encode()
	require.NoError(t, err)
	_, params, err := mime.ParseMediaType(ctype)
	require.NoError(t, err)
	form, err := multipart.NewReader(bytes.NewReader(body), params["boundary"]).ReadForm(1 << 20)
	require.NoError(t, err)
	assert.Equal(t, []string{"hello"}, form.Value["name"])
	assert.Equal(t, []string{`{"source": "package"}`}, form.Value["code"])
	require.Len(t, form.File["package"], 1)
	assert.Equal(t, "hello.zip", form.File["package"][0].Filename)
}

func TestFreePort_NeverTwice(t *testing.T) {
	seen := map[int]bool{}
	for range 20 {
		p := FreePort(t)
		assert.False(t, seen[p], "port %d handed out twice", p)
		seen[p] = true
	}
}

func TestDescendantsAndKillAlive(t *testing.T) {
	cmd := exec.Command("/bin/sh", "-c", "sleep 30 & wait")
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	var kids []int
	require.Eventually(t, func() bool {
		kids = descendants(cmd.Process.Pid)
		return len(kids) == 1
	}, 5*time.Second, 20*time.Millisecond, "the shell's sleep child")
	assert.Equal(t, 1, killAlive(kids))
	require.NoError(t, cmd.Wait())
}
