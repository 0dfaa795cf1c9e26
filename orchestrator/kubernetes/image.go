package kubernetes

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"

	"github.com/qinling-go/qinling/orchestrator"
	"github.com/qinling-go/qinling/orchestrator/workerclient"
	"github.com/qinling-go/qinling/pkg/errdefs"
)

// maxImageLog bounds the log kept of an image function's pod.
const maxImageLog = 1 << 20

// RunImage runs one execution of an image function as its own pod (as
// upstream): the function's image with inv.Args, restartPolicy Never,
// requests and limits from its cpu and memory. The timeout counts from the
// container's start (pulling the image does not eat the function's time;
// it is bounded by ScaleUpTimeout). Success has the pod's log as output and
// as log; a non-zero exit is a failed execution with the exit code; a timeout
// is upstream's "Function execution timeout.". The pod is deleted
// afterwards, whatever happened (upstream left them).
func (o *Orchestrator) RunImage(ctx context.Context, inv orchestrator.ImageInvocation) (orchestrator.Result, error) {
	pod := o.imagePod(inv)
	pods := o.client.CoreV1().Pods(o.cfg.Namespace)
	cctx, cancel := o.call(ctx)
	_, err := pods.Create(cctx, pod, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		// A redelivered execution: start it afresh.
		_ = pods.Delete(cctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To(int64(0))})
		err = errdefs.Unavailable("The pod of a previous attempt of this execution is still being deleted; try again.")
	}
	cancel()
	if err != nil {
		return orchestrator.Result{}, apiError(err, "create the execution's pod")
	}
	defer o.background(func(ctx context.Context) {
		err := pods.Delete(ctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To(int64(0))})
		if err != nil && !apierrors.IsNotFound(err) {
			o.log.Warn("could not delete an image function's pod", "pod", pod.Name, "error", err)
		}
	})
	log := o.log.With("pod", pod.Name, "execution_id", inv.ExecutionID, "function_id", inv.FunctionID)

	started, err := o.waitPod(ctx, pod.Name, o.cfg.ScaleUpTimeout, containerStarted)
	if err != nil {
		return orchestrator.Result{}, err
	}
	if started == nil { // not started in time
		return orchestrator.Result{}, o.imageStartError(ctx, pod.Name, inv.Image)
	}
	if r, fatal := podReason(started); fatal {
		return orchestrator.Result{}, errdefs.Invalid("Image %s cannot run: %s", inv.Image, r)
	}
	begin := time.Now()
	if t := startedAt(started); !t.IsZero() && t.Before(begin) {
		begin = t
	}
	timeout := inv.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	done, err := o.waitPod(ctx, pod.Name, time.Until(begin.Add(timeout)), podFinished)
	if err != nil {
		return orchestrator.Result{}, err
	}
	if done == nil {
		log.Info("image function timed out")
		out, _ := json.Marshal(workerclient.TimeoutOutput)
		return orchestrator.Result{Output: out, Duration: timeout.Seconds(), Logs: o.podLog(ctx, pod.Name)}, nil
	}
	res := orchestrator.Result{Duration: time.Since(begin).Seconds(), Logs: o.podLog(ctx, pod.Name)}
	if t := terminated(done); t != nil && !t.StartedAt.IsZero() && !t.FinishedAt.IsZero() {
		// Whole seconds, as the API server stores them (upstream's duration).
		res.Duration = t.FinishedAt.Sub(t.StartedAt.Time).Seconds()
	}
	if done.Status.Phase == corev1.PodSucceeded {
		// What the container printed is its result (upstream's result had
		// only the duration; the log alone was the output).
		res.Success = true
		res.Output, _ = json.Marshal(res.Logs)
		return res, nil
	}
	msg := "Function execution failed: the container"
	if t := terminated(done); t != nil {
		msg += fmt.Sprintf(" exited with code %d", t.ExitCode)
		if t.Reason != "" && t.Reason != "Error" {
			msg += " (" + t.Reason + ")"
		}
	} else {
		msg += " failed: " + orElse(done.Status.Reason, "unknown reason")
	}
	res.Output, _ = json.Marshal(msg + ".")
	return res, nil
}

// imagePod is the pod of one image function execution.
func (o *Orchestrator) imagePod(inv orchestrator.ImageInvocation) *corev1.Pod {
	name := strings.ToLower(inv.ExecutionID + "-" + inv.FunctionID)
	if len(name) > 63 {
		name = name[:63]
	}
	name = strings.TrimRight(name, "-.")
	res := corev1.ResourceList{}
	if inv.CPU > 0 {
		res[corev1.ResourceCPU] = *resource.NewMilliQuantity(int64(inv.CPU), resource.DecimalSI)
	}
	if inv.MemorySize > 0 {
		res[corev1.ResourceMemory] = *resource.NewQuantity(inv.MemorySize, resource.BinarySI)
	}
	spec := o.basePodSpec()
	spec.RestartPolicy = corev1.RestartPolicyNever
	// A backstop for an engine that dies while waiting: the kubelet stops
	// the pod, and the next clean-up deletes it.
	spec.ActiveDeadlineSeconds = ptr.To(int64((inv.Timeout + o.cfg.ScaleUpTimeout).Seconds()) + 1)
	spec.Containers = []corev1.Container{{
		Name: "function", Image: inv.Image, Args: inv.Args, ImagePullPolicy: o.cfg.ImagePullPolicy,
		Resources:       corev1.ResourceRequirements{Requests: res, Limits: res.DeepCopy()},
		SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: ptr.To(false), Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}},
		// Out of the function's reach, as in worker pods (pool.go).
		TerminationMessagePath:   terminationMessagePath,
		TerminationMessagePolicy: corev1.TerminationMessageReadFile,
	}}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: name,
			Labels: map[string]string{
				LabelFunction: inv.FunctionID, LabelExecution: inv.ExecutionID, labelManagedBy: managedBy,
			},
			Annotations: map[string]string{"io.kubernetes.cri-o.TrustedSandbox": "false"},
		},
		Spec: spec,
	}
}

// containerStarted: running or already finished, or stuck for good.
func containerStarted(p *corev1.Pod) bool {
	if podFinished(p) {
		return true
	}
	if _, fatal := podReason(p); fatal {
		return true
	}
	for _, cs := range p.Status.ContainerStatuses {
		if cs.State.Running != nil || cs.State.Terminated != nil {
			return true
		}
	}
	return false
}

func podFinished(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
}

func startedAt(p *corev1.Pod) time.Time {
	for _, cs := range p.Status.ContainerStatuses {
		if r := cs.State.Running; r != nil {
			return r.StartedAt.Time
		}
		if t := cs.State.Terminated; t != nil {
			return t.StartedAt.Time
		}
	}
	return time.Time{}
}

func terminated(p *corev1.Pod) *corev1.ContainerStateTerminated {
	for _, cs := range p.Status.ContainerStatuses {
		if cs.State.Terminated != nil {
			return cs.State.Terminated
		}
	}
	return nil
}

// waitPod watches pod name until cond holds (returning the pod) or wait
// passes (returning nil). A watch the API server ends is started again;
// the pod is read once after each watch starts, so no change is missed.
func (o *Orchestrator) waitPod(ctx context.Context, name string, wait time.Duration, cond func(*corev1.Pod) bool) (*corev1.Pod, error) {
	wctx, cancel := context.WithTimeout(ctx, max(wait, 0))
	defer cancel()
	pods := o.client.CoreV1().Pods(o.cfg.Namespace)
	for {
		w, err := pods.Watch(wctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", name).String()})
		if err != nil {
			if wctx.Err() != nil && ctx.Err() == nil {
				return nil, nil
			}
			return nil, apiError(err, "watch pod "+name)
		}
		gctx, gcancel := o.call(wctx)
		p, err := pods.Get(gctx, name, metav1.GetOptions{})
		gcancel()
		switch {
		case apierrors.IsNotFound(err):
			w.Stop()
			return nil, fmt.Errorf("pod %s was deleted while the execution ran", name)
		case err == nil && cond(p):
			w.Stop()
			return p, nil
		}
		p, gone, closed := waitEvents(wctx, w, name, cond)
		w.Stop()
		switch {
		case p != nil:
			return p, nil
		case gone:
			return nil, fmt.Errorf("pod %s was deleted while the execution ran", name)
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case wctx.Err() != nil:
			return nil, nil
		case !closed:
			return nil, nil
		}
	}
}

// waitEvents reads w until pod name meets cond, is deleted, or w ends.
// closed reports a watch the API server ended (to be started again).
func waitEvents(ctx context.Context, w watch.Interface, name string, cond func(*corev1.Pod) bool) (p *corev1.Pod, gone, closed bool) {
	for {
		select {
		case <-ctx.Done():
			return nil, false, false
		case ev, ok := <-w.ResultChan():
			if !ok {
				return nil, false, true
			}
			pod, isPod := ev.Object.(*corev1.Pod)
			if !isPod || pod.Name != name { // a fake watch ignores field selectors
				continue
			}
			switch ev.Type {
			case watch.Deleted:
				return nil, true, false
			case watch.Added, watch.Modified:
				if cond(pod) {
					return pod, false, false
				}
			}
		}
	}
}

// podLog returns the pod's log, bounded; a log that cannot be read says so.
func (o *Orchestrator) podLog(ctx context.Context, name string) string {
	cctx, cancel := o.call(ctx)
	defer cancel()
	rc, err := o.client.CoreV1().Pods(o.cfg.Namespace).GetLogs(name, &corev1.PodLogOptions{LimitBytes: ptr.To(int64(maxImageLog))}).Stream(cctx)
	if err != nil {
		return fmt.Sprintf("(the pod's log could not be read: %v)\n", err)
	}
	defer rc.Close()
	b, _ := io.ReadAll(io.LimitReader(rc, maxImageLog))
	return string(b)
}

// imageStartError explains a container that did not start in time.
func (o *Orchestrator) imageStartError(ctx context.Context, name, image string) error {
	cctx, cancel := o.call(ctx)
	defer cancel()
	p, err := o.client.CoreV1().Pods(o.cfg.Namespace).Get(cctx, name, metav1.GetOptions{})
	reason := "not started"
	if err == nil {
		if r, _ := podReason(p); r != "" {
			reason = r
		}
	}
	return errdefs.New(errdefs.KindUnavailable, "Image %s did not start within %s: %s", image, o.cfg.ScaleUpTimeout, reason)
}
