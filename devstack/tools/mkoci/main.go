// Command mkoci writes a one-layer OCI image layout, as a tar that
// `ctr images import` takes, from a directory holding the image's root
// filesystem. devstack/lib/kubernetes-images.sh builds the devstack
// cluster's images with it; no registry and no container tool is involved.
//
//	mkoci -rootfs DIR -name localhost/qinling-go/NAME:TAG -out IMAGE.tar \
//	      [-entrypoint '["/bin/x","a"]'] [-cmd '[...]'] [-env K=V]... \
//	      [-workdir DIR] [-user UID:GID] [-chown PATH=UID:GID]...
//
// The layer holds every directory, regular file and symbolic link of DIR
// (hard links become copies; devices, sockets and pipes are left out), owned
// by 0:0 unless -chown names the path (or a directory above it), with
// modification time 0, in lexical order: the same rootfs always gives the
// same digests.
package main

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Media types of the OCI image specification.
const (
	mediaIndex    = "application/vnd.oci.image.index.v1+json"
	mediaManifest = "application/vnd.oci.image.manifest.v1+json"
	mediaConfig   = "application/vnd.oci.image.config.v1+json"
	mediaLayer    = "application/vnd.oci.image.layer.v1.tar+gzip"
)

// Options describe one image.
type Options struct {
	RootFS     string
	Name       string // full reference, e.g. localhost/qinling-go/pause:latest
	Out        string
	Entrypoint []string
	Cmd        []string
	Env        []string
	WorkingDir string
	User       string
	Owners     map[string][2]int // path inside the image -> uid, gid
}

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Platform    *platform         `json:"platform,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

type platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
}

type imageConfig struct {
	User       string   `json:"User,omitempty"`
	Env        []string `json:"Env,omitempty"`
	Entrypoint []string `json:"Entrypoint,omitempty"`
	Cmd        []string `json:"Cmd,omitempty"`
	WorkingDir string   `json:"WorkingDir,omitempty"`
}

type image struct {
	Created      string      `json:"created"`
	Architecture string      `json:"architecture"`
	OS           string      `json:"os"`
	Config       imageConfig `json:"config"`
	RootFS       struct {
		Type    string   `json:"type"`
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
	History []map[string]string `json:"history"`
}

type manifest struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Config        descriptor   `json:"config"`
	Layers        []descriptor `json:"layers"`
}

type index struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Manifests     []descriptor `json:"manifests"`
}

// blob is one file of blobs/sha256.
type blob struct {
	digest string // sha256:...
	data   []byte // in memory, or
	path   string // a file on disk
	size   int64
}

// listFlag collects a repeated flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	var o Options
	var entrypoint, cmd string
	var env, chown listFlag
	flag.StringVar(&o.RootFS, "rootfs", "", "directory holding the image's root filesystem")
	flag.StringVar(&o.Name, "name", "", "image name with tag, e.g. localhost/qinling-go/pause:latest")
	flag.StringVar(&o.Out, "out", "", "the OCI layout tar to write")
	flag.StringVar(&entrypoint, "entrypoint", "", "entrypoint as a JSON array")
	flag.StringVar(&cmd, "cmd", "", "default arguments as a JSON array")
	flag.Var(&env, "env", "KEY=VALUE in the image's environment (repeatable)")
	flag.StringVar(&o.WorkingDir, "workdir", "", "working directory")
	flag.StringVar(&o.User, "user", "", "user the container runs as (UID:GID)")
	flag.Var(&chown, "chown", "PATH=UID:GID: owner of PATH and everything under it (repeatable)")
	flag.Parse()
	if flag.NArg() > 0 || o.RootFS == "" || o.Name == "" || o.Out == "" {
		fmt.Fprintln(os.Stderr, "usage: mkoci -rootfs DIR -name NAME:TAG -out FILE.tar [options]")
		flag.PrintDefaults()
		os.Exit(2)
	}
	o.Env = env
	var err error
	if o.Entrypoint, err = jsonList("-entrypoint", entrypoint); err == nil {
		o.Cmd, err = jsonList("-cmd", cmd)
	}
	if err == nil {
		o.Owners, err = parseOwners(chown)
	}
	if err == nil {
		err = Build(o)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkoci:", err)
		os.Exit(1)
	}
}

func jsonList(flagName, s string) ([]string, error) {
	if s == "" {
		return nil, nil
	}
	var l []string
	if err := json.Unmarshal([]byte(s), &l); err != nil {
		return nil, fmt.Errorf("%s: want a JSON array of strings: %v", flagName, err)
	}
	return l, nil
}

func parseOwners(specs []string) (map[string][2]int, error) {
	owners := map[string][2]int{}
	for _, spec := range specs {
		path, ids, ok := strings.Cut(spec, "=")
		u, g, ok2 := strings.Cut(ids, ":")
		uid, err1 := strconv.Atoi(u)
		gid, err2 := strconv.Atoi(g)
		if !ok || !ok2 || err1 != nil || err2 != nil || path == "" {
			return nil, fmt.Errorf("-chown %q: want PATH=UID:GID", spec)
		}
		owners[strings.Trim(filepath.Clean("/"+path), "/")] = [2]int{uid, gid}
	}
	return owners, nil
}

// Build writes the image o describes to o.Out.
func Build(o Options) error {
	if !strings.Contains(o.Name, ":") || strings.HasSuffix(o.Name, ":") {
		return fmt.Errorf("name %q has no tag", o.Name)
	}
	if st, err := os.Stat(o.RootFS); err != nil || !st.IsDir() {
		return fmt.Errorf("rootfs %s is not a directory", o.RootFS)
	}
	layerFile, err := os.CreateTemp(filepath.Dir(o.Out), ".mkoci-layer-*")
	if err != nil {
		return err
	}
	defer os.Remove(layerFile.Name())
	defer layerFile.Close()

	diffID, layer, err := writeLayer(o, layerFile)
	if err != nil {
		return err
	}
	layer.path = layerFile.Name()

	var img image
	img.Created = time.Unix(0, 0).UTC().Format(time.RFC3339)
	img.Architecture = runtime.GOARCH
	img.OS = "linux"
	img.Config = imageConfig{User: o.User, Env: o.Env, Entrypoint: o.Entrypoint, Cmd: o.Cmd, WorkingDir: o.WorkingDir}
	if len(img.Config.Env) == 0 {
		img.Config.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	}
	img.RootFS.Type = "layers"
	img.RootFS.DiffIDs = []string{diffID}
	img.History = []map[string]string{{"created": img.Created, "created_by": "qinling-go devstack/tools/mkoci"}}
	config, err := jsonBlob(img)
	if err != nil {
		return err
	}
	man, err := jsonBlob(manifest{
		SchemaVersion: 2,
		MediaType:     mediaManifest,
		Config:        descriptor{MediaType: mediaConfig, Digest: config.digest, Size: config.size},
		Layers:        []descriptor{{MediaType: mediaLayer, Digest: layer.digest, Size: layer.size}},
	})
	if err != nil {
		return err
	}
	tag := o.Name[strings.LastIndex(o.Name, ":")+1:]
	idx, err := json.Marshal(index{
		SchemaVersion: 2,
		MediaType:     mediaIndex,
		Manifests: []descriptor{{
			MediaType: mediaManifest, Digest: man.digest, Size: man.size,
			Platform: &platform{Architecture: runtime.GOARCH, OS: "linux"},
			Annotations: map[string]string{
				"io.containerd.image.name":          o.Name,
				"org.opencontainers.image.ref.name": tag,
			},
		}},
	})
	if err != nil {
		return err
	}
	return writeLayout(o.Out, idx, []blob{config, man, layer})
}

// writeLayer writes the gzipped layer to w and returns its diff_id (the
// digest of the uncompressed tar) and its descriptor (digest of the gzip).
func writeLayer(o Options, w io.Writer) (string, blob, error) {
	gzHash, tarHash := sha256.New(), sha256.New()
	counter := &countWriter{w: io.MultiWriter(w, gzHash)}
	gz, err := gzip.NewWriterLevel(counter, gzip.BestSpeed)
	if err != nil {
		return "", blob{}, err
	}
	tw := tar.NewWriter(io.MultiWriter(gz, tarHash))
	err = filepath.WalkDir(o.RootFS, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(o.RootFS, path)
		if err != nil || rel == "." {
			return err
		}
		return addEntry(tw, o, path, filepath.ToSlash(rel))
	})
	if err == nil {
		err = tw.Close()
	}
	if err == nil {
		err = gz.Close()
	}
	if err != nil {
		return "", blob{}, err
	}
	return digestOf(tarHash), blob{digest: digestOf(gzHash), size: counter.n}, nil
}

func addEntry(tw *tar.Writer, o Options, path, rel string) error {
	st, err := os.Lstat(path)
	if err != nil {
		return err
	}
	h := &tar.Header{Name: rel, Mode: int64(st.Mode().Perm()), ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
	if st.Mode()&fs.ModeSetuid != 0 {
		h.Mode |= 04000
	}
	if st.Mode()&fs.ModeSetgid != 0 {
		h.Mode |= 02000
	}
	if st.Mode()&fs.ModeSticky != 0 {
		h.Mode |= 01000
	}
	h.Uid, h.Gid = owner(o.Owners, rel)
	switch {
	case st.IsDir():
		h.Typeflag, h.Name = tar.TypeDir, rel+"/"
	case st.Mode().IsRegular():
		h.Typeflag, h.Size = tar.TypeReg, st.Size()
	case st.Mode()&fs.ModeSymlink != 0:
		h.Typeflag = tar.TypeSymlink
		if h.Linkname, err = os.Readlink(path); err != nil {
			return err
		}
	default:
		return nil // devices, sockets, pipes: not in an image
	}
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	if h.Typeflag != tar.TypeReg {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := io.Copy(tw, f)
	if err == nil && n != h.Size {
		err = fmt.Errorf("%s changed size while being read", path)
	}
	return err
}

// owner: the -chown entry for rel or its nearest listed parent; 0:0 else.
func owner(owners map[string][2]int, rel string) (int, int) {
	for p := rel; p != "." && p != "/" && p != ""; p = filepath.Dir(p) {
		if ids, ok := owners[p]; ok {
			return ids[0], ids[1]
		}
	}
	return 0, 0
}

func jsonBlob(v any) (blob, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return blob{}, err
	}
	sum := sha256.Sum256(data)
	return blob{digest: "sha256:" + hex.EncodeToString(sum[:]), data: data, size: int64(len(data))}, nil
}

func digestOf(h hash.Hash) string { return "sha256:" + hex.EncodeToString(h.Sum(nil)) }

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// writeLayout writes oci-layout, index.json and the blobs as a tar at out,
// atomically (a temporary file renamed into place).
func writeLayout(out string, idx []byte, blobs []blob) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(out), ".mkoci-out-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	tw := tar.NewWriter(tmp)
	epoch := time.Unix(0, 0)
	put := func(name string, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: epoch, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	if err = put("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return err
	}
	if err = put("index.json", idx); err != nil {
		return err
	}
	for _, dir := range []string{"blobs/", "blobs/sha256/"} {
		if err = tw.WriteHeader(&tar.Header{Name: dir, Mode: 0o755, ModTime: epoch, Typeflag: tar.TypeDir}); err != nil {
			return err
		}
	}
	sort.Slice(blobs, func(i, j int) bool { return blobs[i].digest < blobs[j].digest })
	for _, b := range blobs {
		name := "blobs/sha256/" + strings.TrimPrefix(b.digest, "sha256:")
		if b.path == "" {
			if err = put(name, b.data); err != nil {
				return err
			}
			continue
		}
		if err = copyBlob(tw, name, b, epoch); err != nil {
			return err
		}
	}
	if err = tw.Close(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if err = os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), out)
}

func copyBlob(tw *tar.Writer, name string, b blob, epoch time.Time) error {
	f, err := os.Open(b.path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: b.size, ModTime: epoch, Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	n, err := io.Copy(tw, f)
	if err == nil && n != b.size {
		err = errors.New("layer file changed while being copied")
	}
	return err
}
