# shellcheck shell=bash
# devstack/lib/kubernetes-images.sh: the devstack cluster's images, built
# from this machine's own files (no registry, no base image, no docker) as
# one-layer OCI tars by devstack/tools/mkoci and imported into the node's
# containerd (namespace k8s.io). Rebuilt on every stack.sh run, in seconds,
# so a change to a runtime (runtimes/*/server.* and the modules beside it)
# reaches the next pods. Sourced after
# lib/kubernetes.sh.
#
#   K8S_PAUSE_IMAGE   /pause, a static C program: every pod's sandbox
#   K8S_PYTHON_IMAGE  Debian's python3.11 (binary, stdlib, shared libraries)
#                     + busybox + /app/server.py and /app/_qinling_runtime/
#                     (runtimes/python3)
#   K8S_NODEJS_IMAGE  /usr/bin/node + its shared libraries + busybox +
#                     /app/server.js and /app/_qinling_runtime/ (runtimes/nodejs)
#   K8S_HELLO_IMAGE   busybox + /bin/hello, an image-type function: prints
#                     its arguments; `sleep N ...` sleeps first, `fail ...`
#                     exits 1

# The runtimes' server command: what upstream's runtime images run.
K8S_RUNTIME_PORT=9090
K8S_PACKAGES_DIR=/var/qinling/packages

# k8s_image_tars: IMAGE TAR lines, in import order.
k8s_image_tars() {
	printf '%s %s\n' "$K8S_PAUSE_IMAGE" "$KUBE_IMAGE_DIR/pause.tar" \
		"$K8S_PYTHON_IMAGE" "$KUBE_IMAGE_DIR/python3-runtime.tar" \
		"$K8S_NODEJS_IMAGE" "$KUBE_IMAGE_DIR/nodejs-runtime.tar" \
		"$K8S_HELLO_IMAGE" "$KUBE_IMAGE_DIR/hello-image.tar"
}

# rootfs_copy ROOT FILE...: copy each file to the same path under ROOT
# (following symlinks), with the shared libraries ldd finds for it.
rootfs_copy() {
	local root=$1 f lib
	shift
	for f in "$@"; do
		mkdir -p "$root$(dirname "$f")"
		cp -L "$f" "$root$f"
		# ldd: "libx.so => /path (0x...)", "/lib64/ld-linux-x86-64.so.2 (0x...)".
		for lib in $(ldd "$f" 2>/dev/null | awk '$2 == "=>" && $3 ~ "^/" {print $3} $1 ~ "^/" {print $1}'); do
			[[ -e $root$lib ]] && continue
			mkdir -p "$root$(dirname "$lib")"
			cp -L "$lib" "$root$lib"
		done
	done
}

# rootfs_base ROOT: the directories, users and busybox (with a link per
# applet in /bin) every image but pause has.
rootfs_base() {
	local root=$1 applet
	mkdir -p "$root"/{bin,etc,tmp,usr/bin,app} "$root$K8S_PACKAGES_DIR"
	chmod 1777 "$root/tmp"
	# root's home, which pods' unprivileged users cannot enter: the
	# orchestrator puts the kubelet's termination message file there
	# (orchestrator/kubernetes/pool.go, terminationMessagePath).
	install -d -m 0700 "$root/root"
	cp /bin/busybox "$root/bin/busybox"
	for applet in $("$root/bin/busybox" --list); do
		[[ -e $root/bin/$applet ]] || ln -s busybox "$root/bin/$applet"
	done
	printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' 'nobody:x:65534:65534:nobody:/tmp:/bin/sh' >"$root/etc/passwd"
	printf '%s\n' 'root:x:0:' 'nogroup:x:65534:' >"$root/etc/group"
}

# runtime_app ROOT KIND SERVER EXT: the runtime's server and its modules
# (runtimes/KIND/SERVER and runtimes/KIND/_qinling_runtime/*.EXT, the files
# runtimes/runtimes.go embeds) as ROOT/app, replacing what an earlier build
# left there.
runtime_app() {
	local root=$1 src=$QINLING_REPO/runtimes/$2 server=$3 ext=$4
	rm -rf "$root/app/_qinling_runtime" &&
		mkdir -p "$root/app/_qinling_runtime" &&
		cp "$src/$server" "$root/app/$server" &&
		cp "$src/_qinling_runtime/"*."$ext" "$root/app/_qinling_runtime/" ||
		die "kubernetes: cannot copy the $2 runtime from $src"
}

# mkoci_image ROOT NAME TAR ARGS...: the OCI tar of ROOT.
mkoci_image() {
	local root=$1 name=$2 tar=$3
	shift 3
	"$BIN_DIR/qinling-mkoci" -rootfs "$root" -name "$name" -out "$tar" "$@" ||
		die "kubernetes: mkoci failed for $name"
}

# k8s_runtime_entrypoint SERVER_BINARY SERVER_FILE: the runtime server's
# command line as a JSON array.
k8s_runtime_entrypoint() {
	printf '["%s", "%s", "--host", "0.0.0.0", "--port", "%s", "--packages-dir", "%s"]' \
		"$1" "$2" "$K8S_RUNTIME_PORT" "$K8S_PACKAGES_DIR"
}

build_pause_image() {
	local root=$KUBE_IMAGE_DIR/rootfs/pause src=$KUBE_IMAGE_DIR/src
	mkdir -p "$root" "$src"
	# The sandbox's process: sleeps until told to stop, reaps orphans.
	cat >"$src/pause.c" <<-'EOF'
		/* qinling-go devstack: the pod sandbox process. */
		#include <signal.h>
		#include <stdio.h>
		#include <stdlib.h>
		#include <sys/wait.h>
		#include <unistd.h>

		static void on_stop(int sig) {
			fprintf(stderr, "pause: signal %d, exiting\n", sig);
			exit(0);
		}

		static void on_child(int sig) {
			(void)sig;
			while (waitpid(-1, NULL, WNOHANG) > 0) {
			}
		}

		int main(void) {
			struct sigaction stop = {.sa_handler = on_stop};
			struct sigaction child = {.sa_handler = on_child, .sa_flags = SA_NOCLDSTOP};
			sigaction(SIGINT, &stop, NULL);
			sigaction(SIGTERM, &stop, NULL);
			sigaction(SIGCHLD, &child, NULL);
			for (;;)
				pause();
		}
	EOF
	gcc -static -Os -s -o "$root/pause" "$src/pause.c" >>"$LOG_DIR/kube-images.log" 2>&1 ||
		die "kubernetes: gcc -static failed for pause.c; see $LOG_DIR/kube-images.log"
	mkoci_image "$root" "$K8S_PAUSE_IMAGE" "$KUBE_IMAGE_DIR/pause.tar" -entrypoint '["/pause"]' -user 65535:65535
}

build_python_image() {
	local root=$KUBE_IMAGE_DIR/rootfs/python3-runtime py=/usr/bin/python3.11 stdlib=/usr/lib/python3.11
	[[ -x $py && -d $stdlib ]] || die "kubernetes: $py and $stdlib are needed for the python3 runtime image"
	rootfs_base "$root"
	# The standard library without what a function server never uses.
	mkdir -p "$root/usr/lib"
	tar -C /usr/lib -cf - --exclude=python3.11/test --exclude=python3.11/idlelib --exclude=python3.11/tkinter \
		--exclude=python3.11/lib2to3 --exclude=python3.11/ensurepip --exclude='python3.11/config-*' \
		--exclude=python3.11/dist-packages --exclude=python3.11/site-packages python3.11 |
		tar -C "$root/usr/lib" -xf -
	rootfs_copy "$root" "$py" "$stdlib"/lib-dynload/*.so
	ln -sfn python3.11 "$root/usr/bin/python3"
	runtime_app "$root" python3 server.py py
	check_runtime_rootfs "$root" python3 /usr/bin/python3 /app/server.py
	mkoci_image "$root" "$K8S_PYTHON_IMAGE" "$KUBE_IMAGE_DIR/python3-runtime.tar" \
		-entrypoint "$(k8s_runtime_entrypoint /usr/bin/python3 /app/server.py)" \
		-env PATH=/usr/bin:/bin -env LANG=C.UTF-8 -env HOME=/tmp -env PYTHONUNBUFFERED=1 \
		-workdir /app -user 65534:65534 -chown "$K8S_PACKAGES_DIR=65534:65534"
}

build_nodejs_image() {
	local root=$KUBE_IMAGE_DIR/rootfs/nodejs-runtime node
	node=$(readlink -f /usr/bin/node 2>/dev/null) || true
	[[ -x $node ]] || die "kubernetes: /usr/bin/node is needed for the nodejs runtime image (apt-get install nodejs)"
	rootfs_base "$root"
	rootfs_copy "$root" "$node"
	[[ $node == /usr/bin/node ]] || ln -sfn "$node" "$root/usr/bin/node"
	# The server needs only node's built-in modules: no /usr/share/nodejs
	# (check_runtime_rootfs proves it).
	runtime_app "$root" nodejs server.js js
	check_runtime_rootfs "$root" nodejs /usr/bin/node /app/server.js
	mkoci_image "$root" "$K8S_NODEJS_IMAGE" "$KUBE_IMAGE_DIR/nodejs-runtime.tar" \
		-entrypoint "$(k8s_runtime_entrypoint /usr/bin/node /app/server.js)" \
		-env PATH=/usr/bin:/bin -env LANG=C.UTF-8 -env HOME=/tmp \
		-workdir /app -user 65534:65534 -chown "$K8S_PACKAGES_DIR=65534:65534"
}

build_hello_image() {
	local root=$KUBE_IMAGE_DIR/rootfs/hello-image
	rootfs_base "$root"
	cat >"$root/bin/hello" <<-'EOF'
		#!/bin/sh
		# qinling-go devstack's image function: upstream runs one pod per
		# execution with the input, split on whitespace, as arguments, and
		# returns the pod's log. "sleep N ..." sleeps N seconds first (for
		# timeouts); "fail ..." exits 1 after printing.
		case $1 in
		sleep)
			sleep "${2:-3600}"
			shift 2
			;;
		esac
		echo "Hello from image, args: $*"
		[ "$1" != fail ]
	EOF
	chmod 755 "$root/bin/hello"
	mkoci_image "$root" "$K8S_HELLO_IMAGE" "$KUBE_IMAGE_DIR/hello-image.tar" \
		-entrypoint '["/bin/hello"]' -env PATH=/bin -user 65534:65534
}

# free_port: a TCP port on 127.0.0.1 that nothing listens on.
free_port() {
	local p
	for p in $(shuf -i 20000-29999 -n 20); do
		port_open_on 127.0.0.1 "$p" || {
			printf '%s' "$p"
			return 0
		}
	done
	return 1
}

port_open_on() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# check_runtime_rootfs ROOT NAME BINARY SERVER: the runtime server starts in
# the rootfs (chroot, as nobody) and answers GET /ping, before it becomes an
# image: a missing library shows here, not as a crash-looping pod.
check_runtime_rootfs() {
	local root=$1 name=$2 bin=$3 server=$4 port pid ok=0 i
	port=$(free_port) || die "kubernetes: no free port to check the $name image"
	chroot --userspec=65534:65534 "$root" /bin/env -i PATH=/usr/bin:/bin HOME=/tmp LANG=C.UTF-8 \
		"$bin" "$server" --host 127.0.0.1 --port "$port" --packages-dir "$K8S_PACKAGES_DIR" \
		>>"$LOG_DIR/kube-images.log" 2>&1 &
	pid=$!
	for ((i = 0; i < 100; i++)); do
		if [[ $(curl -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:$port/ping") == 200 ]]; then
			ok=1
			break
		fi
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	((ok)) || die "kubernetes: the $name runtime server does not start in its image's rootfs; see $LOG_DIR/kube-images.log"
}

# build_k8s_images: every image tar, from scratch.
build_k8s_images() {
	local t0=$SECONDS
	mkdir -p "$BIN_DIR" "$KUBE_IMAGE_DIR"
	(cd "$QINLING_REPO" && GOFLAGS=${GOFLAGS:--buildvcs=false} go build -o "$BIN_DIR/qinling-mkoci" ./devstack/tools/mkoci) \
		>>"$LOG_DIR/kube-images.log" 2>&1 || die "kubernetes: go build ./devstack/tools/mkoci failed; see $LOG_DIR/kube-images.log"
	rm -rf "$KUBE_IMAGE_DIR/rootfs"
	build_pause_image
	build_python_image
	build_nodejs_image
	build_hello_image
	# The rootfs copies are big and only the tars matter.
	rm -rf "$KUBE_IMAGE_DIR/rootfs"
	log "kubernetes: built 4 images in $((SECONDS - t0))s ($(du -shc "$KUBE_IMAGE_DIR"/*.tar | tail -n 1 | cut -f1) of OCI tars)"
}

# import_k8s_images: into the node's containerd, all at once, replacing
# what the names pointed at before.
import_k8s_images() {
	local t0=$SECONDS name tar pids=() tars=() i failed=()
	while read -r name tar; do
		kube_ctr images import "$tar" >"$tar.import.log" 2>&1 &
		pids+=("$!")
		tars+=("$tar")
	done < <(k8s_image_tars)
	for i in "${!pids[@]}"; do
		wait "${pids[$i]}" || failed+=("${tars[$i]}")
		cat "${tars[$i]}.import.log" >>"$LOG_DIR/kube-images.log"
		rm -f "${tars[$i]}.import.log"
	done
	((${#failed[@]} == 0)) || die "kubernetes: ctr images import failed for ${failed[*]}; see $LOG_DIR/kube-images.log"
	kube_ctr images tag --force "$K8S_PYTHON_IMAGE" "$K8S_PYTHON_IMAGE_ALT" >>"$LOG_DIR/kube-images.log" 2>&1 ||
		die "kubernetes: could not tag $K8S_PYTHON_IMAGE as $K8S_PYTHON_IMAGE_ALT; see $LOG_DIR/kube-images.log"
	log "kubernetes: imported the images into containerd in $((SECONDS - t0))s"
}
