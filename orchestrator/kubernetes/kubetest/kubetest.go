// Package kubetest is a small Kubernetes stand-in for the kubernetes
// orchestrator's tests: client-go's fake clientset, plus a loop that plays
// the parts a real cluster adds to it. As the Deployment controller it
// keeps each Deployment's matching pods at its replicas (rolling to a new
// image) and reports its status; as the kubelet it runs every pool pod as a
// real runtime server on a local port (runtimes/python3/server.py, or
// runtimes/nodejs/server.js for a Node.js image: see NodeJSImage), gives it
// a pod IP and marks it ready, restarts it when it exits, and kills it when
// the pod is deleted; and like the API server it bumps resourceVersions and
// refuses updates carrying a stale one. Dial maps pod IPs to the local
// servers, so the backend under test really executes functions.
//
// Images named by Options decide what fails: images that cannot be pulled,
// pods that cannot be scheduled, containers that crash. Pods that do not
// restart (image functions) play SucceedImage, FailImage and SleepImage.
package kubetest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"
)

// Images with a scripted behaviour for image-function pods.
const (
	SucceedImage = "sim/succeed" // runs 200 ms, exits 0
	FailImage    = "sim/fail"    // runs 200 ms, exits 3
	SleepImage   = "sim/sleep"   // runs until deleted
)

// Options script the cluster.
type Options struct {
	Namespace string
	// PullFails says which images cannot be pulled (default: those
	// containing "unrunnable").
	PullFails func(image string) bool
	// Unschedulable returns the scheduler's message for pods of an image
	// that cannot be scheduled, or "".
	Unschedulable func(image string) string
	// Crashes says which images crash at start (CrashLoopBackOff).
	Crashes func(image string) bool
}

// Cluster is the stand-in. Start it with Start; it stops with the test.
type Cluster struct {
	Client    *fake.Clientset
	Namespace string

	opts    Options
	t       testing.TB
	server  string // runtimes/python3/server.py
	nodeJS  string // runtimes/nodejs/server.js
	pkgRoot string

	mu     sync.Mutex
	pods   map[string]*pod // by pod name
	byIP   map[string]int  // pod IP -> local port
	nextIP int
	stop   chan struct{}
	done   chan struct{}
	wg     sync.WaitGroup // pods starting
	hooks  []k8stesting.ReactionFunc
}

// React adds a reaction in front of every other, for the test to fail or
// record calls. Unlike the clientset's PrependReactor it may be called
// while the cluster runs.
func (c *Cluster) React(f k8stesting.ReactionFunc) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hooks = append(c.hooks, f)
}

func (c *Cluster) hooked(action k8stesting.Action) (bool, k8sruntime.Object, error) {
	c.mu.Lock()
	hooks := append([]k8stesting.ReactionFunc(nil), c.hooks...)
	c.mu.Unlock()
	for i := len(hooks) - 1; i >= 0; i-- {
		if handled, obj, err := hooks[i](action); handled {
			return true, obj, err
		}
	}
	return false, nil, nil
}

type pod struct {
	name, ip string
	image    string
	env      []string // the container's environment, as the kubelet gives it
	port     int
	cmd      *exec.Cmd
	killed   bool
	started  time.Time
}

// Start starts the stand-in; it runs until the test ends.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.Namespace == "" {
		opts.Namespace = "qinling"
	}
	if opts.PullFails == nil {
		opts.PullFails = func(image string) bool { return strings.Contains(image, "unrunnable") }
	}
	_, file, _, _ := runtime.Caller(0)
	runtimes := filepath.Join(filepath.Dir(file), "..", "..", "..", "runtimes")
	server := filepath.Join(runtimes, "python3", "server.py")
	if _, err := os.Stat(server); err != nil {
		t.Fatalf("runtime server: %v", err)
	}
	c := &Cluster{
		Client: fake.NewClientset(), Namespace: opts.Namespace, opts: opts, t: t,
		server: server, nodeJS: filepath.Join(runtimes, "nodejs", "server.js"), pkgRoot: t.TempDir(),
		pods: map[string]*pod{}, byIP: map[string]int{}, nextIP: 10,
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	c.Client.PrependReactor("*", "*", c.hooked)
	c.Client.PrependReactor("*", "pods", c.resourceVersions)
	c.Client.PrependReactor("*", "deployments", c.generations)
	go c.loop()
	t.Cleanup(c.Close)
	return c
}

// Close stops the loop and every runtime server.
func (c *Cluster) Close() {
	select {
	case <-c.stop:
		return
	default:
	}
	close(c.stop)
	<-c.done
	c.wg.Wait()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.pods {
		c.killLocked(p)
	}
}

// Dial connects to the runtime server of the pod whose IP addr names; an
// unknown IP is refused, as a deleted pod's would be.
func (c *Cluster) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	port, ok := c.byIP[host]
	c.mu.Unlock()
	if !ok {
		return nil, &net.OpError{Op: "dial", Net: network, Err: syscall.ECONNREFUSED}
	}
	var d net.Dialer
	return d.DialContext(ctx, network, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
}

// KillServer kills the runtime server of a pod, as if its container
// crashed; it is not restarted.
func (c *Cluster) KillServer(podName string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p := c.pods[podName]; p != nil {
		c.killLocked(p)
		delete(c.byIP, p.ip)
	}
}

var podsGVR = schema.GroupVersionResource{Version: "v1", Resource: "pods"}

// resourceVersions gives pods a new resourceVersion on every write and
// refuses an update whose resourceVersion is not the current one: the API
// server's optimistic concurrency, which the fake clientset lacks.
func (c *Cluster) resourceVersions(action k8stesting.Action) (bool, k8sruntime.Object, error) {
	switch a := action.(type) {
	case k8stesting.CreateActionImpl:
		p, ok := a.GetObject().(*corev1.Pod)
		if ok {
			p.ResourceVersion = nextRV()
			p.CreationTimestamp = metav1.Now()
			if p.Name == "" && p.GenerateName != "" {
				p.Name = p.GenerateName + strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
			}
		}
	case k8stesting.UpdateActionImpl:
		p, ok := a.GetObject().(*corev1.Pod)
		if !ok {
			return false, nil, nil
		}
		cur, err := c.Client.Tracker().Get(podsGVR, a.GetNamespace(), p.Name)
		if err != nil {
			return true, nil, err
		}
		if p.ResourceVersion != "" && cur.(*corev1.Pod).ResourceVersion != p.ResourceVersion {
			return true, nil, apierrors.NewConflict(podsGVR.GroupResource(), p.Name, fmt.Errorf("the object has been modified"))
		}
		p.ResourceVersion = nextRV()
	}
	return false, nil, nil
}

// generations bumps a Deployment's generation when its spec changes, as
// the API server does, so a controller's observedGeneration means something;
// and keeps status updates to the status, so the simulated controller never
// writes back a spec it read before an update.
func (c *Cluster) generations(action k8stesting.Action) (bool, k8sruntime.Object, error) {
	switch a := action.(type) {
	case k8stesting.CreateActionImpl:
		if d, ok := a.GetObject().(*appsv1.Deployment); ok {
			d.Generation = 1
		}
	case k8stesting.UpdateActionImpl:
		d, ok := a.GetObject().(*appsv1.Deployment)
		if !ok {
			return false, nil, nil
		}
		cur, err := c.Client.Tracker().Get(deploymentsGVR, a.GetNamespace(), d.Name)
		if err != nil {
			return false, nil, nil
		}
		old := cur.(*appsv1.Deployment)
		if a.GetSubresource() == "status" {
			// The status subresource changes the status only.
			st := d.Status
			old.DeepCopyInto(d)
			d.Status = st
			return false, nil, nil
		}
		d.Status = old.Status // and the main resource never the status
		d.Generation = old.Generation
		if !equality.Semantic.DeepEqual(old.Spec, d.Spec) {
			d.Generation++
		}
	}
	return false, nil, nil
}

var deploymentsGVR = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}

var rv struct {
	sync.Mutex
	n int64
}

func nextRV() string {
	rv.Lock()
	defer rv.Unlock()
	rv.n++
	return strconv.FormatInt(rv.n, 10)
}

// loop reconciles every 20 ms until Close.
func (c *Cluster) loop() {
	defer close(c.done)
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		c.reconcile()
	}
}

func (c *Cluster) reconcile() {
	ctx := context.Background()
	deps, err := c.Client.AppsV1().Deployments(c.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return
	}
	for i := range deps.Items {
		c.deployment(ctx, &deps.Items[i])
	}
	pods, err := c.Client.CoreV1().Pods(c.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return
	}
	live := map[string]bool{}
	for i := range pods.Items {
		p := &pods.Items[i]
		live[p.Name] = true
		c.kubelet(ctx, p)
	}
	// Deleted pods: their containers stop.
	c.mu.Lock()
	for name, p := range c.pods {
		if !live[name] {
			c.killLocked(p)
			delete(c.byIP, p.ip)
			delete(c.pods, name)
		}
	}
	c.mu.Unlock()
	// Deployments deleted: the garbage collector deletes the pods they own.
	owners := map[string]bool{}
	for _, d := range deps.Items {
		owners[string(d.UID)] = true
	}
	for _, p := range pods.Items {
		if ref := metav1.GetControllerOf(&p); ref != nil && !owners[string(ref.UID)] {
			_ = c.Client.CoreV1().Pods(c.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{})
		}
	}
}

// deployment plays the Deployment and ReplicaSet controllers for d.
func (c *Cluster) deployment(ctx context.Context, d *appsv1.Deployment) {
	if d.UID == "" {
		d.UID = types.UID("uid-" + d.Name)
		_, _ = c.Client.AppsV1().Deployments(c.Namespace).Update(ctx, d, metav1.UpdateOptions{})
	}
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return
	}
	pods, err := c.Client.CoreV1().Pods(c.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return
	}
	image := d.Spec.Template.Spec.Containers[0].Image
	want := int(ptr.Deref(d.Spec.Replicas, 1))
	var current, old []*corev1.Pod
	for i := range pods.Items {
		p := &pods.Items[i]
		ref := metav1.GetControllerOf(p)
		if ref == nil || ref.UID != d.UID {
			continue
		}
		if !sel.Matches(labels.Set(p.Labels)) {
			// No longer matching (specialised): released, as the
			// ReplicaSet controller does.
			p.OwnerReferences = nil
			_, _ = c.Client.CoreV1().Pods(c.Namespace).Update(ctx, p, metav1.UpdateOptions{})
			continue
		}
		if p.Spec.Containers[0].Image == image {
			current = append(current, p)
		} else {
			old = append(old, p)
		}
	}
	for n := len(current); n < want; n++ {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{
				Name:      fmt.Sprintf("%s-%s", d.Name, randSuffix()),
				Namespace: c.Namespace,
				Labels:    copyMap(d.Spec.Template.Labels), Annotations: copyMap(d.Spec.Template.Annotations),
				OwnerReferences: []metav1.OwnerReference{{
					APIVersion: "apps/v1", Kind: "Deployment", Name: d.Name, UID: d.UID, Controller: ptr.To(true),
				}},
			},
			Spec: *d.Spec.Template.Spec.DeepCopy(),
		}
		if created, err := c.Client.CoreV1().Pods(c.Namespace).Create(ctx, p, metav1.CreateOptions{}); err == nil {
			current = append(current, created)
		}
	}
	readyCurrent := 0
	for _, p := range current {
		if isReady(p) {
			readyCurrent++
		}
	}
	// Rolling: old pods go once the new ones are ready (maxUnavailable 0).
	if readyCurrent >= want {
		for _, p := range old {
			_ = c.Client.CoreV1().Pods(c.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{})
		}
		old = nil
	}
	for len(current) > want {
		_ = c.Client.CoreV1().Pods(c.Namespace).Delete(ctx, current[len(current)-1].Name, metav1.DeleteOptions{})
		current = current[:len(current)-1]
	}
	readyOld := 0
	for _, p := range old {
		if isReady(p) {
			readyOld++
		}
	}
	st := appsv1.DeploymentStatus{
		ObservedGeneration: d.Generation,
		Replicas:           int32(len(current) + len(old)),
		UpdatedReplicas:    int32(len(current)),
		ReadyReplicas:      int32(readyCurrent + readyOld),
		AvailableReplicas:  int32(readyCurrent + readyOld),
	}
	if !equality.Semantic.DeepEqual(st, d.Status) {
		d.Status = st
		_, _ = c.Client.AppsV1().Deployments(c.Namespace).UpdateStatus(ctx, d, metav1.UpdateOptions{})
	}
}

// kubelet plays the node for pod p.
func (c *Cluster) kubelet(ctx context.Context, p *corev1.Pod) {
	c.mu.Lock()
	sim := c.pods[p.Name]
	c.mu.Unlock()
	image := p.Spec.Containers[0].Image
	switch {
	case sim != nil:
		if p.Spec.RestartPolicy == corev1.RestartPolicyNever {
			c.finishImage(ctx, p, sim)
		}
		return
	case p.Status.Phase != "" && p.Status.Phase != corev1.PodPending:
		return
	}
	if msg := c.unschedulable(image); msg != "" {
		c.setStatus(ctx, p.Name, func(s *corev1.PodStatus) {
			s.Phase = corev1.PodPending
			s.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: "Unschedulable", Message: msg}}
		})
		return
	}
	waiting := ""
	switch {
	case c.opts.PullFails(image):
		waiting = "ImagePullBackOff"
	case c.opts.Crashes != nil && c.opts.Crashes(image):
		waiting = "CrashLoopBackOff"
	}
	if waiting != "" {
		c.setStatus(ctx, p.Name, func(s *corev1.PodStatus) {
			s.Phase = corev1.PodPending
			s.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue}}
			s.ContainerStatuses = []corev1.ContainerStatus{{
				Name: p.Spec.Containers[0].Name, Image: image,
				State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{
					Reason: waiting, Message: fmt.Sprintf("Back-off pulling image %q", image),
				}},
			}}
		})
		return
	}
	sim = &pod{name: p.Name, image: image, started: time.Now()}
	for _, e := range p.Spec.Containers[0].Env {
		sim.env = append(sim.env, e.Name+"="+e.Value)
	}
	c.mu.Lock()
	sim.ip = fmt.Sprintf("10.244.%d.%d", c.nextIP/250, c.nextIP%250+2)
	c.nextIP++
	c.pods[p.Name] = sim
	c.mu.Unlock()
	if p.Spec.RestartPolicy == corev1.RestartPolicyNever {
		c.setStatus(ctx, p.Name, func(s *corev1.PodStatus) {
			s.Phase = corev1.PodRunning
			s.PodIP = sim.ip
			s.ContainerStatuses = []corev1.ContainerStatus{{Name: p.Spec.Containers[0].Name, Image: image,
				State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}}}}
		})
		return
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		if err := c.run(p.Name, sim); err != nil && !c.stopped() && !c.isKilled(sim) {
			c.t.Errorf("pod %s: %v", p.Name, err)
		}
	}()
}

func (c *Cluster) stopped() bool {
	select {
	case <-c.stop:
		return true
	default:
		return false
	}
}

func (c *Cluster) isKilled(sim *pod) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return sim.killed
}

// run starts the runtime server of a pool pod and marks the pod ready.
func (c *Cluster) run(name string, sim *pod) error {
	dir := filepath.Join(c.pkgRoot, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := c.startServer(sim, dir); err != nil {
		return err
	}
	c.setStatus(context.Background(), name, func(s *corev1.PodStatus) {
		now := metav1.Now()
		s.Phase = corev1.PodRunning
		s.PodIP = sim.ip
		s.Conditions = []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue},
			{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
		}
		s.ContainerStatuses = []corev1.ContainerStatus{{Name: "worker", Ready: true,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}}}
	})
	return nil
}

// NodeJSImage reports whether pods of image run the Node.js runtime server
// (/usr/bin/node runtimes/nodejs/server.js) rather than the Python one: an
// image whose last path element, tag and digest removed, is nodejs-runtime,
// node-runtime, nodejs or node, as the local orchestrator's RuntimeKind.
func NodeJSImage(image string) bool {
	name := image
	if i := strings.IndexByte(name, '@'); i >= 0 {
		name = name[:i]
	}
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	if i := strings.IndexByte(name, ':'); i >= 0 {
		name = name[:i]
	}
	switch name {
	case "nodejs-runtime", "node-runtime", "nodejs", "node":
		return true
	}
	return false
}

// startServer starts the runtime server for sim on a free port, waits until
// it listens, and restarts it whenever it exits until the pod is killed
// (restartPolicy Always, the emptyDir kept).
func (c *Cluster) startServer(sim *pod, dir string) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	var out syncBuffer
	args := []string{"--host", "127.0.0.1", "--port", strconv.Itoa(port), "--packages-dir", dir}
	cmd := exec.Command("/usr/bin/python3", append([]string{c.server}, args...)...)
	if NodeJSImage(sim.image) {
		cmd = exec.Command("/usr/bin/node", append([]string{c.nodeJS}, args...)...)
	}
	cmd.Env = append(os.Environ(), sim.env...)
	cmd.Stdout, cmd.Stderr = &out, &out
	// Die with the test binary, even when it crashes.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	c.mu.Lock()
	if sim.killed {
		c.mu.Unlock()
		return nil
	}
	if err := cmd.Start(); err != nil {
		c.mu.Unlock()
		return err
	}
	sim.cmd, sim.port = cmd, port
	c.mu.Unlock()
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
		c.mu.Lock()
		restart := !sim.killed
		c.mu.Unlock()
		if restart {
			time.Sleep(100 * time.Millisecond)
			_ = c.startServer(sim, dir)
		}
	}()
	deadline := time.Now().Add(15 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
		if err == nil {
			_ = conn.Close()
			break
		}
		select {
		case <-exited:
			return fmt.Errorf("runtime server exited: %s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("runtime server not listening: %s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.mu.Lock()
	if !sim.killed {
		c.byIP[sim.ip] = port
	}
	c.mu.Unlock()
	return nil
}

// finishImage plays an image function's container.
func (c *Cluster) finishImage(ctx context.Context, p *corev1.Pod, sim *pod) {
	if p.Status.Phase != corev1.PodRunning || time.Since(sim.started) < 200*time.Millisecond {
		return
	}
	var code int32
	switch p.Spec.Containers[0].Image {
	case SucceedImage:
	case FailImage:
		code = 3
	default:
		return
	}
	c.setStatus(ctx, p.Name, func(s *corev1.PodStatus) {
		s.Phase = corev1.PodSucceeded
		if code != 0 {
			s.Phase = corev1.PodFailed
		}
		s.ContainerStatuses[0].State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			ExitCode: code, StartedAt: metav1.NewTime(sim.started), FinishedAt: metav1.Now(),
		}}
	})
}

// syncBuffer collects a server's output from its pipes' goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (c *Cluster) unschedulable(image string) string {
	if c.opts.Unschedulable == nil {
		return ""
	}
	return c.opts.Unschedulable(image)
}

// setStatus updates a pod's status, retrying on conflicts.
func (c *Cluster) setStatus(ctx context.Context, name string, f func(*corev1.PodStatus)) {
	for range 20 {
		p, err := c.Client.CoreV1().Pods(c.Namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return
		}
		f(&p.Status)
		_, err = c.Client.CoreV1().Pods(c.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{})
		if !apierrors.IsConflict(err) {
			return
		}
	}
}

func (c *Cluster) killLocked(p *pod) {
	p.killed = true
	if p.cmd != nil && p.cmd.Process != nil {
		_ = p.cmd.Process.Kill()
	}
}

func isReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func copyMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

var suffix struct {
	sync.Mutex
	n int
}

func randSuffix() string {
	suffix.Lock()
	defer suffix.Unlock()
	suffix.n++
	return fmt.Sprintf("%05x", suffix.n)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
