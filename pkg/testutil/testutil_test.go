package testutil

import (
	"archive/zip"
	"bytes"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
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

func TestProcess_Lifecycle(t *testing.T) {
	for _, tc := range []struct {
		name     string
		script   string // run by /bin/sh -c in the process's directory
		startErr string // "" when it must become ready
		stopErr  string // "" when SIGTERM must be enough
	}{
		{name: "ready once the probe passes, stopped by SIGTERM", script: "touch ready; exec sleep 300"},
		{name: "exits during startup", script: "echo boom; exit 3", startErr: "it exited during startup (exit status 3)"},
		{name: "ignores SIGTERM: its group is killed after the grace period",
			script: `trap "" TERM; sleep 300 & touch ready; wait`, stopErr: "did not exit within"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := &process{
				name: "sh", path: "/bin/sh", args: []string{"-c", tc.script}, dir: dir,
				logPath: filepath.Join(dir, "log"), deathSignal: syscall.SIGKILL,
				ready: func() error {
					_, err := os.Stat(filepath.Join(dir, "ready"))
					return err
				},
				readyWithin: time.Minute, poll: 10 * time.Millisecond, grace: 200 * time.Millisecond,
			}
			err := p.start()
			if tc.startErr != "" {
				require.ErrorContains(t, err, tc.startErr)
				assert.Contains(t, err.Error(), "boom", "the error carries the log's end")
				assert.Zero(t, p.pid())
				return
			}
			require.NoError(t, err)
			pid := p.pid()
			require.NotZero(t, pid)
			require.ErrorContains(t, p.start(), "already running")
			kids := descendants(pid)
			err = p.stop()
			if tc.stopErr != "" {
				require.ErrorContains(t, err, tc.stopErr)
			} else {
				require.NoError(t, err)
			}
			assert.Zero(t, p.pid())
			// SIGKILL is delivered asynchronously: wait for the group to die.
			WaitFor(t, "nothing of its group to outlive it", time.Minute, 10*time.Millisecond, func() (bool, any) {
				var alive []int
				for _, k := range kids {
					if _, state, ok := procStat(k); ok && state != "Z" {
						alive = append(alive, k)
					}
				}
				return len(alive) == 0, alive
			})
			require.NoError(t, p.stop(), "stopping a stopped process does nothing")
		})
	}
}

func TestPoll(t *testing.T) {
	calls := 0
	require.NoError(t, poll(time.Minute, time.Millisecond, nil, func() error {
		if calls++; calls < 3 {
			return errors.New("not yet")
		}
		return nil
	}))
	assert.Equal(t, 3, calls)

	err := poll(0, time.Millisecond, nil, func() error { return errors.New("refused") })
	require.ErrorContains(t, err, "refused", "the last error is kept")

	exited := make(chan struct{})
	close(exited)
	require.ErrorIs(t, poll(time.Minute, time.Millisecond, exited, func() error { return errors.New("x") }), errExited)
}

func TestWaitFor(t *testing.T) {
	calls := 0
	WaitFor(t, "the third call", time.Minute, time.Millisecond, func() (bool, any) {
		calls++
		return calls == 3, calls
	})
	assert.Equal(t, 3, calls)
}

func TestMD5(t *testing.T) {
	assert.Equal(t, "d41d8cd98f00b204e9800998ecf8427e", MD5(nil))
}

func TestObjectOf(t *testing.T) {
	want := map[string]any{"source": "package"}
	for name, v := range map[string]any{"object": want, "JSON string": `{"source": "package"}`} {
		t.Run(name, func(t *testing.T) { assert.Equal(t, want, ObjectOf(t, v)) })
	}
}
