package local

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/qinling-go/qinling/orchestrator"
)

// Runtime kinds: KindPython3 is served by runtimes/python3/server.py,
// KindNodeJS by runtimes/nodejs/server.js.
const (
	KindPython3 = "python3"
	KindNodeJS  = "nodejs"
)

// pythonVersion matches "python3.N" images ("python3.11").
var pythonVersion = regexp.MustCompile(`^python3\.[0-9]+$`)

// RuntimeKind maps a runtime image to the kind of local runtime that serves
// it. Besides the plain names "python3", "python3.N", "nodejs" and "node",
// upstream's image names are accepted so that runtimes created for a
// Kubernetes deployment keep working: any image whose last path element,
// tag and digest removed, is python3-runtime or python-runtime
// (openstackqinling/python3-runtime:0.0.2) runs on python3, and one that is
// nodejs-runtime, node-runtime, nodejs or node (openstackqinling/nodejs-runtime,
// node:20) on Node.js. Any other image is an error wrapping
// orchestrator.ErrImageNotRunnable whose message names the image and what is
// supported; the engine shows it to the user as the runtime's error.
func RuntimeKind(image string) (string, error) {
	name := strings.TrimSpace(image)
	if name == KindPython3 || pythonVersion.MatchString(name) {
		return KindPython3, nil
	}
	switch orchestrator.ImageBaseName(name) {
	case "python3-runtime", "python-runtime":
		return KindPython3, nil
	case "nodejs-runtime", "node-runtime", "nodejs", "node":
		return KindNodeJS, nil
	}
	return "", fmt.Errorf("%w: image %q is not supported by the local orchestrator; "+
		"use python3 (or python3.N), or an image named python3-runtime or python-runtime "+
		"such as openstackqinling/python3-runtime:0.0.2; or nodejs, or an image named nodejs-runtime "+
		"such as openstackqinling/nodejs-runtime", orchestrator.ErrImageNotRunnable, image)
}
