package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// readLayout returns the files of an OCI layout tar by name.
func readLayout(t *testing.T, path string) map[string][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	files := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = data
	}
}

func sum(data []byte) string {
	s := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(s[:])
}

func TestBuild_LayoutDigestsAndOwners(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "rootfs")
	for _, d := range []string{"bin", "var/qinling/packages", "tmp"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(root, "tmp"), os.ModeSticky|0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin/hello"), []byte("#!/bin/sh\necho hi\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("hello", filepath.Join(root, "bin/sh")); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "img.tar")
	o := Options{
		RootFS: root, Name: "localhost/qinling-go/test:latest", Out: out,
		Entrypoint: []string{"/bin/hello"}, User: "65534:65534",
		Owners: map[string][2]int{"var/qinling/packages": {65534, 65534}},
	}
	if err := Build(o); err != nil {
		t.Fatal(err)
	}
	files := readLayout(t, out)
	var idx index
	if err := json.Unmarshal(files["index.json"], &idx); err != nil {
		t.Fatal(err)
	}
	if len(idx.Manifests) != 1 || idx.Manifests[0].Annotations["io.containerd.image.name"] != o.Name ||
		idx.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != "latest" {
		t.Fatalf("index.json: %s", files["index.json"])
	}
	blobOf := func(d descriptor) []byte {
		data, ok := files["blobs/sha256/"+d.Digest[len("sha256:"):]]
		if !ok || sum(data) != d.Digest || int64(len(data)) != d.Size {
			t.Fatalf("blob %s missing or wrong", d.Digest)
		}
		return data
	}
	var man manifest
	if err := json.Unmarshal(blobOf(idx.Manifests[0]), &man); err != nil {
		t.Fatal(err)
	}
	var img image
	if err := json.Unmarshal(blobOf(man.Config), &img); err != nil {
		t.Fatal(err)
	}
	if img.Config.User != "65534:65534" || len(img.Config.Entrypoint) != 1 || img.Config.Entrypoint[0] != "/bin/hello" {
		t.Fatalf("config: %+v", img.Config)
	}
	gz, err := gzip.NewReader(bytes.NewReader(blobOf(man.Layers[0])))
	if err != nil {
		t.Fatal(err)
	}
	layer, err := io.ReadAll(gz)
	if err != nil {
		t.Fatal(err)
	}
	if sum(layer) != img.RootFS.DiffIDs[0] {
		t.Fatal("diff_id is not the digest of the uncompressed layer")
	}
	entries := map[string]*tar.Header{}
	tr := tar.NewReader(bytes.NewReader(layer))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		entries[h.Name] = h
	}
	if h := entries["var/qinling/packages/"]; h == nil || h.Uid != 65534 || h.Gid != 65534 {
		t.Fatalf("packages dir: %+v", h)
	}
	if h := entries["bin/hello"]; h == nil || h.Uid != 0 || h.Mode&0o777 != 0o755 {
		t.Fatalf("bin/hello: %+v", h)
	}
	if h := entries["tmp/"]; h == nil || h.Mode&0o1777 != 0o1777 {
		t.Fatalf("tmp: %+v", h)
	}
	if h := entries["bin/sh"]; h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != "hello" {
		t.Fatalf("bin/sh: %+v", h)
	}

	// The same rootfs gives the same image.
	first := files["index.json"]
	if err := Build(o); err != nil {
		t.Fatal(err)
	}
	if again := readLayout(t, out)["index.json"]; !bytes.Equal(first, again) {
		t.Fatalf("rebuild changed the image:\n%s\n%s", first, again)
	}
}

func TestParseOwners(t *testing.T) {
	got, err := parseOwners([]string{"/var/qinling/packages=65534:65534"})
	if err != nil || got["var/qinling/packages"] != [2]int{65534, 65534} {
		t.Fatalf("got %v, %v", got, err)
	}
	for _, bad := range []string{"x", "/a=1", "/a=1:x", "=1:2"} {
		if _, err := parseOwners([]string{bad}); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
