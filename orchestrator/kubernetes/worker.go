package kubernetes

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/qinling-go/qinling/orchestrator"
	"github.com/qinling-go/qinling/orchestrator/workerclient"
	"github.com/qinling-go/qinling/pkg/errdefs"
)

// maxPackage bounds a package read into memory to push it to pods (the
// API refuses larger ones long before: [storage] max_package_size).
const maxPackage = 64 << 20

// ScaleUp takes count free pods of fn's runtime, specialises each (labels,
// package, resize) and returns them. When the pool has too few free pods it
// waits, up to ScaleUpTimeout, for the replacements the Deployment starts
// for the pods taken; then it fails with ErrNoCapacity. On any error no pod
// is left specialised: the pods taken are deleted.
func (o *Orchestrator) ScaleUp(ctx context.Context, fn orchestrator.Function, count int) ([]orchestrator.Worker, error) {
	switch {
	case count <= 0:
		return nil, fmt.Errorf("scale up function %s: count %d must be positive", fn.ID, count)
	case fn.Package.Open == nil:
		return nil, fmt.Errorf("scale up function %s: no package to deliver", fn.ID)
	}
	start := time.Now()
	cctx, cancel := o.call(ctx)
	d, err := o.client.AppsV1().Deployments(o.cfg.Namespace).Get(cctx, deploymentName(fn.RuntimeID), metav1.GetOptions{})
	cancel()
	if apierrors.IsNotFound(err) || (err == nil && d.DeletionTimestamp != nil) {
		return nil, fmt.Errorf("scale up function %s: pool %s: %w", fn.ID, fn.RuntimeID, orchestrator.ErrPoolNotFound)
	}
	if err != nil {
		return nil, apiError(err, "read the pool's Deployment")
	}
	pkg, err := readPackage(ctx, fn)
	if err != nil {
		return nil, fmt.Errorf("scale up function %s: %w", fn.ID, err)
	}

	pods, err := o.claim(ctx, fn, count)
	var tokens []string
	if err == nil {
		if tokens, err = o.specialise(ctx, fn, pkg, pods); err != nil {
			// A refused package is the zip's fault: the user sees why.
			var refused *workerclient.RefusedError
			if errors.As(err, &refused) {
				err = errdefs.Wrap(errdefs.KindInvalid, err, "The function package was refused by the worker: %s.", refused.Reason)
			} else {
				err = errdefs.Wrap(errdefs.KindUnavailable, err, "Could not prepare a worker for the function.")
			}
		}
	}
	if err != nil {
		names := make([]string, len(pods))
		for i, p := range pods {
			names[i] = p.Name
		}
		o.deleteNames(context.WithoutCancel(ctx), names)
		return nil, fmt.Errorf("scale up function %s version %d: %w", fn.ID, fn.Version, err)
	}
	out := make([]orchestrator.Worker, len(pods))
	for i, p := range pods {
		out[i] = orchestrator.Worker{Name: p.Name, Address: withToken(o.workerAddress(p), tokens[i])}
	}
	o.log.Debug("scaled up", "function_id", fn.ID, "version", fn.Version, "workers", count, "elapsed", time.Since(start))
	return out, nil
}

// readPackage reads fn's zip and checks it against the recorded MD5.
func readPackage(ctx context.Context, fn orchestrator.Function) (workerclient.Package, error) {
	rc, err := fn.Package.Open(ctx)
	if err != nil {
		return workerclient.Package{}, fmt.Errorf("open package: %w", err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, maxPackage+1))
	if err != nil {
		return workerclient.Package{}, fmt.Errorf("read package: %w", err)
	}
	if len(data) > maxPackage {
		return workerclient.Package{}, errdefs.New(errdefs.KindTooLarge, "Function package larger than %d bytes.", maxPackage)
	}
	sum := md5.Sum(data)
	got := hex.EncodeToString(sum[:])
	if fn.Package.MD5 != "" && fn.Package.MD5 != got {
		return workerclient.Package{}, fmt.Errorf("package checksum %s, want %s", got, fn.Package.MD5)
	}
	return workerclient.Package{FunctionID: fn.ID, Version: fn.Version, MD5: got, Zip: data}, nil
}

// claim takes count free ready pods of fn's runtime for fn, waiting for
// more while the pool has too few. It returns the pods taken so far even
// with an error, so the caller can release them.
func (o *Orchestrator) claim(ctx context.Context, fn orchestrator.Function, count int) ([]*corev1.Pod, error) {
	deadline := time.Now().Add(o.cfg.ScaleUpTimeout)
	selector := LabelRuntime + "=" + fn.RuntimeID + ",!" + LabelFunction
	podsAPI := o.client.CoreV1().Pods(o.cfg.Namespace)
	var taken []*corev1.Pod
	for {
		cctx, cancel := o.call(ctx)
		list, err := podsAPI.List(cctx, metav1.ListOptions{LabelSelector: selector})
		cancel()
		if err != nil {
			return taken, apiError(err, "list free pods of runtime "+fn.RuntimeID)
		}
		free := make([]*corev1.Pod, 0, len(list.Items))
		for i := range list.Items {
			if ready(&list.Items[i]) {
				free = append(free, &list.Items[i])
			}
		}
		// Engines that scale at the same moment should not all race for
		// the same pod.
		rand.Shuffle(len(free), func(i, j int) { free[i], free[j] = free[j], free[i] })
		for _, p := range free {
			if len(taken) == count {
				break
			}
			got, err := o.take(ctx, p, fn)
			if apierrors.IsConflict(err) {
				// It changed since the list: taken by another engine (then
				// it is no longer free), or only its status moved on.
				var fresh *corev1.Pod
				if fresh, err = o.stillFree(ctx, p.Name); err == nil {
					got, err = o.take(ctx, fresh, fn)
				}
			}
			switch {
			case err == nil:
				taken = append(taken, got)
			case apierrors.IsConflict(err) || apierrors.IsNotFound(err) || errors.Is(err, errNotFree):
				// Another engine took it, or it went: next one.
			default:
				return taken, apiError(err, "label pod "+p.Name)
			}
		}
		if len(taken) == count {
			return taken, nil
		}
		if time.Now().After(deadline) {
			return taken, errdefs.Wrap(errdefs.KindUnavailable, orchestrator.ErrNoCapacity,
				"Not enough workers available: runtime %s had only %d of the %d free pods needed within %s",
				fn.RuntimeID, len(taken), count, o.cfg.ScaleUpTimeout)
		}
		if len(free) == 0 {
			// Waiting for replacements makes sense only while the pool exists.
			cctx, cancel := o.call(ctx)
			_, err := o.client.AppsV1().Deployments(o.cfg.Namespace).Get(cctx, deploymentName(fn.RuntimeID), metav1.GetOptions{})
			cancel()
			if apierrors.IsNotFound(err) {
				return taken, fmt.Errorf("pool %s: %w", fn.RuntimeID, orchestrator.ErrPoolNotFound)
			}
		}
		select {
		case <-time.After(o.cfg.PollInterval):
		case <-ctx.Done():
			return taken, ctx.Err()
		}
	}
}

var errNotFree = errors.New("pod is no longer free")

// stillFree reads pod name again and returns it if it is still free and ready.
func (o *Orchestrator) stillFree(ctx context.Context, name string) (*corev1.Pod, error) {
	cctx, cancel := o.call(ctx)
	defer cancel()
	p, err := o.client.CoreV1().Pods(o.cfg.Namespace).Get(cctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	if _, taken := p.Labels[LabelFunction]; taken || !ready(p) {
		return nil, errNotFree
	}
	return p, nil
}

// take labels pod p as fn's. The update carries p's resourceVersion, so it
// fails with a conflict if anyone changed the pod since it was listed:
// of two engines taking the same pod, exactly one succeeds.
func (o *Orchestrator) take(ctx context.Context, p *corev1.Pod, fn orchestrator.Function) (*corev1.Pod, error) {
	p = p.DeepCopy()
	p.Labels[LabelFunction] = fn.ID
	p.Labels[LabelFunctionVersion] = strconv.Itoa(fn.Version)
	if p.Annotations == nil {
		p.Annotations = map[string]string{}
	}
	if o.cfg.Owner != "" {
		p.Annotations[annotationEngine] = o.cfg.Owner
	}
	cctx, cancel := o.call(ctx)
	defer cancel()
	return o.client.CoreV1().Pods(o.cfg.Namespace).Update(cctx, p, metav1.UpdateOptions{})
}

// specialise pushes the package to every pod, each with a new token
// (token.go), and resizes them, in parallel; it returns the tokens.
func (o *Orchestrator) specialise(ctx context.Context, fn orchestrator.Function, pkg workerclient.Package, pods []*corev1.Pod) ([]string, error) {
	errs := make([]error, len(pods))
	tokens := make([]string, len(pods))
	var wg sync.WaitGroup
	for i, p := range pods {
		tokens[i] = newToken()
		wg.Go(func() {
			dctx, cancel := context.WithTimeout(ctx, o.cfg.ScaleUpTimeout)
			defer cancel()
			if err := o.wc.WithToken(tokens[i]).Deliver(dctx, o.workerAddress(p), pkg); err != nil {
				errs[i] = fmt.Errorf("pod %s: %w", p.Name, err)
				return
			}
			node := len(p.Spec.Containers) > 0 && isNodeImage(p.Spec.Containers[0].Image)
			o.resize(ctx, p.Name, fn.ID, podSize{cpu: fn.CPU, memory: fn.MemorySize, node: node})
		})
	}
	wg.Wait()
	return tokens, errors.Join(errs...)
}

// podSize is what this instance last asked a pod's resources to be: its
// function's cpu and memory_size, and whether it runs Node.js (whose pods
// get NodeMemoryOverhead on top).
type podSize struct {
	cpu    int
	memory int64
	node   bool
}

// resize patches pod name's resources to cpu and memory through the
// pods/resize subresource (in-place pod resize, Kubernetes 1.33+). A
// cluster without it (or an identity not allowed to use it) turns resizing
// off for this process, logged once; other refusals are logged per pod. In
// both cases the pod keeps the resources it had. The kubelet applies a
// resize asynchronously; it is not waited for.
func (o *Orchestrator) resize(ctx context.Context, name, functionID string, size podSize) {
	if !o.resizes(size.cpu, size.memory) {
		return
	}
	o.setSized(name, size)
	memory := size.memory
	if size.node {
		memory += o.cfg.NodeMemoryOverhead
	}
	patch := fmt.Sprintf(`{"spec":{"containers":[{"name":%q,"resources":{"requests":{"cpu":"%dm","memory":"%d"},"limits":{"cpu":"%dm","memory":"%d"}}}]}}`,
		workerContainer, size.cpu, memory, size.cpu, memory)
	cctx, cancel := o.call(ctx)
	defer cancel()
	_, err := o.client.CoreV1().Pods(o.cfg.Namespace).Patch(cctx, name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}, "resize")
	switch {
	case err == nil:
	case apierrors.IsNotFound(err) && !podGone(ctx, o, name), apierrors.IsMethodNotSupported(err), apierrors.IsForbidden(err):
		o.noResize.Store(true)
		o.resizeOff.Do(func() {
			o.log.Warn("in-place pod resize unavailable; specialised pods keep the pool's cpu and memory ([kubernetes] pool_cpu, pool_memory)", "error", err)
		})
	default:
		o.log.Info("pod not resized to its function's limits; it keeps its previous ones", "pod", name, "function_id", functionID, "error", err)
	}
}

// maxSized bounds the pods whose limits an instance remembers: the pods
// other engines delete are never forgotten one by one, so past it the
// memory starts over (each pod is then read once more).
const maxSized = 4096

func (o *Orchestrator) setSized(name string, size podSize) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.sized) >= maxSized {
		clear(o.sized)
	}
	o.sized[name] = size
}

// resizes reports whether pods are resized to cpu and memory.
func (o *Orchestrator) resizes(cpu int, memory int64) bool {
	return o.cfg.Resize && cpu > 0 && memory > 0 && !o.noResize.Load()
}

// applyLimits resizes pod w before it runs inv when inv's limits differ
// from those this instance last gave it: the function was updated since
// the pod was specialised. A pod this instance has not resized yet (another
// engine specialised it, or this one restarted) is read once to find out.
// Failures are logged and the execution runs under the pod's current
// limits; the pod is not asked again for the same limits.
func (o *Orchestrator) applyLimits(ctx context.Context, w orchestrator.Worker, inv orchestrator.Invocation) {
	if !o.resizes(inv.CPU, inv.MemorySize) {
		return
	}
	o.mu.Lock()
	had, known := o.sized[w.Name]
	o.mu.Unlock()
	want := podSize{cpu: inv.CPU, memory: inv.MemorySize, node: had.node}
	if known && had == want {
		return
	}
	if !known {
		cctx, cancel := o.call(ctx)
		p, err := o.client.CoreV1().Pods(o.cfg.Namespace).Get(cctx, w.Name, metav1.GetOptions{})
		cancel()
		if err != nil || len(p.Spec.Containers) == 0 {
			o.log.Info("could not read a pod's limits before an execution; it keeps them", "pod", w.Name, "execution_id", inv.ExecutionID, "error", err)
			o.setSized(w.Name, want)
			return
		}
		want.node = isNodeImage(p.Spec.Containers[0].Image)
		memory := want.memory
		if want.node {
			memory += o.cfg.NodeMemoryOverhead
		}
		lim := p.Spec.Containers[0].Resources.Limits
		if lim.Cpu().MilliValue() == int64(want.cpu) && lim.Memory().Value() == memory {
			o.setSized(w.Name, want)
			return
		}
	}
	o.resize(ctx, w.Name, inv.FunctionID, want)
}

// isNodeImage reports whether image holds the Node.js runtime server (the
// names the local orchestrator accepts for it).
func isNodeImage(image string) bool {
	switch orchestrator.ImageBaseName(image) {
	case "nodejs-runtime", "node-runtime", "nodejs", "node":
		return true
	}
	return false
}

// podGone tells a missing pod from a missing resize subresource, which both
// answer 404.
func podGone(ctx context.Context, o *Orchestrator, name string) bool {
	cctx, cancel := o.call(ctx)
	defer cancel()
	_, err := o.client.CoreV1().Pods(o.cfg.Namespace).Get(cctx, name, metav1.GetOptions{})
	return apierrors.IsNotFound(err)
}

// Run executes inv on pod w. It asks the API server only to resize a pod
// whose function's limits changed (applyLimits); otherwise the pod's
// runtime server answers, refuses (another function: a reused IP), or
// cannot be reached (ErrWorkerNotFound). A pod that does not answer within
// the timeout plus RunGrace is deleted and the execution reported as timed
// out; a connection that broke mid-way is ErrWorkerLost.
func (o *Orchestrator) Run(ctx context.Context, w orchestrator.Worker, inv orchestrator.Invocation) (orchestrator.Result, error) {
	if o.wasDeleted(w.Name) {
		return orchestrator.Result{}, fmt.Errorf("run %s on pod %s: %w: deleted", inv.ExecutionID, w.Name, orchestrator.ErrWorkerNotFound)
	}
	o.applyLimits(ctx, w, inv)
	addr, token := splitToken(w.Address)
	res, err := o.wc.WithToken(token).Execute(ctx, addr, inv, o.cfg.RunGrace)
	switch {
	case err == nil:
		return res, nil
	case errors.Is(err, workerclient.ErrWorkerStuck):
		o.log.Warn("worker stuck past the timeout, deleting its pod", "pod", w.Name, "execution_id", inv.ExecutionID)
		o.deleteLater(w.Name)
		return res, nil
	case errors.Is(err, orchestrator.ErrWorkerLost):
		o.deleteLater(w.Name)
	}
	return res, fmt.Errorf("pod %s: %w", w.Name, err)
}

// DeleteWorker deletes the pod; an unknown name is not an error. A
// specialised pod is no longer the Deployment's, which replaced it when it
// was taken.
func (o *Orchestrator) DeleteWorker(ctx context.Context, w orchestrator.Worker) error {
	if w.Name == "" {
		return nil
	}
	o.forget(w.Name)
	cctx, cancel := o.call(ctx)
	defer cancel()
	err := o.client.CoreV1().Pods(o.cfg.Namespace).Delete(cctx, w.Name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return apiError(err, "delete pod "+w.Name)
	}
	return nil
}

// DeleteFunction deletes every pod specialised for (functionID, version).
func (o *Orchestrator) DeleteFunction(ctx context.Context, functionID string, version int) error {
	n, err := o.deletePods(ctx, fmt.Sprintf("%s=%s,%s=%d", LabelFunction, functionID, LabelFunctionVersion, version))
	if n > 0 {
		o.log.Info("function pods deleted", "function_id", functionID, "version", version, "pods", n)
	}
	return err
}

// deleteLater deletes a pod in the background.
func (o *Orchestrator) deleteLater(name string) {
	o.forget(name)
	o.background(func(ctx context.Context) {
		if err := o.DeleteWorker(ctx, orchestrator.Worker{Name: name}); err != nil {
			o.log.Warn("could not delete pod", "pod", name, "error", err)
		}
	})
}

// deleteNames deletes pods by name, for clean-ups after a failure.
func (o *Orchestrator) deleteNames(ctx context.Context, names []string) {
	for _, n := range names {
		if err := o.DeleteWorker(ctx, orchestrator.Worker{Name: n}); err != nil {
			o.log.Warn("could not delete pod", "pod", n, "error", err)
		}
	}
}
