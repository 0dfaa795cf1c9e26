package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/qinling-go/qinling/orchestrator"
)

// CreatePool creates the runtime's Deployment, or brings an existing one to
// rt.Image (a rolling update), and waits until its free pods are available.
// A pool that was created here and cannot become available is deleted
// again, and the error gives the pods' reason (image pull, scheduling,
// crash loop); an image that cannot be pulled or keeps crashing wraps
// orchestrator.ErrImageNotRunnable.
func (o *Orchestrator) CreatePool(ctx context.Context, rt orchestrator.Runtime) error {
	if strings.TrimSpace(rt.Image) == "" {
		return fmt.Errorf("%w: the runtime has no image", orchestrator.ErrImageNotRunnable)
	}
	created, err := o.applyDeployment(ctx, rt)
	if err != nil {
		return err
	}
	if err := o.waitAvailable(ctx, rt); err != nil {
		if created {
			// Nothing to roll back to: leave no crash-looping pods behind,
			// and let a retry start from scratch.
			dctx, cancel := o.call(context.WithoutCancel(ctx))
			defer cancel()
			if derr := o.DeletePool(dctx, rt.ID); derr != nil {
				o.log.Warn("could not delete a pool that failed", "runtime_id", rt.ID, "error", derr)
			}
		}
		return err
	}
	return nil
}

// UpdatePool rolls the pool to rt.Image (CreatePool does it for an existing
// pool); on failure the Deployment stays at the new image, the old pods
// keep serving (maxUnavailable 0), and the engine rolls back by calling
// UpdatePool with the previous image.
func (o *Orchestrator) UpdatePool(ctx context.Context, rt orchestrator.Runtime) error {
	return o.CreatePool(ctx, rt)
}

// applyDeployment creates the Deployment or updates its image and replicas;
// created reports a new one.
func (o *Orchestrator) applyDeployment(ctx context.Context, rt orchestrator.Runtime) (created bool, err error) {
	deps := o.client.AppsV1().Deployments(o.cfg.Namespace)
	want := o.deployment(rt)
	cctx, cancel := o.call(ctx)
	defer cancel()
	cur, err := deps.Get(cctx, want.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		if _, err := deps.Create(cctx, want, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return false, apiError(err, "create the pool's Deployment "+want.Name)
		}
		o.log.Info("pool created", "runtime_id", rt.ID, "deployment", want.Name, "image", rt.Image, "replicas", o.cfg.Replicas)
		return true, nil
	case err != nil:
		return false, apiError(err, "read the pool's Deployment "+want.Name)
	}
	c := &cur.Spec.Template.Spec.Containers[0]
	if c.Image == rt.Image && ptr.Deref(cur.Spec.Replicas, 0) == int32(o.cfg.Replicas) && cur.DeletionTimestamp == nil {
		return false, nil
	}
	if cur.DeletionTimestamp != nil {
		return false, fmt.Errorf("pool %s is being deleted; try again", rt.ID)
	}
	// A rolling update: only the image and the size change, so a
	// Deployment an operator tuned (resources, node selector) keeps that.
	c.Image = rt.Image
	cur.Spec.Replicas = ptr.To(int32(o.cfg.Replicas))
	if _, err := deps.Update(cctx, cur, metav1.UpdateOptions{}); err != nil {
		return false, apiError(err, "update the pool's Deployment "+want.Name)
	}
	o.log.Info("pool updating", "runtime_id", rt.ID, "deployment", want.Name, "image", rt.Image)
	return false, nil
}

// deployment is the pool of rt.
func (o *Orchestrator) deployment(rt orchestrator.Runtime) *appsv1.Deployment {
	name := deploymentName(rt.ID)
	labels := map[string]string{LabelRuntime: rt.ID, labelManagedBy: managedBy}
	maxSurge := intstr.FromString("25%")
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Labels: labels,
			Annotations: map[string]string{annotationRuntime: rt.ID},
		},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(int32(o.cfg.Replicas)),
			// A pod labelled function_id no longer matches: the ReplicaSet
			// lets it go and starts a free replacement.
			Selector: &metav1.LabelSelector{
				MatchLabels: map[string]string{LabelRuntime: rt.ID},
				MatchExpressions: []metav1.LabelSelectorRequirement{
					{Key: LabelFunction, Operator: metav1.LabelSelectorOpDoesNotExist},
				},
			},
			Strategy: appsv1.DeploymentStrategy{
				Type: appsv1.RollingUpdateDeploymentStrategyType,
				// Never fewer free pods than asked during an update, and
				// a broken new image leaves the old pods serving.
				RollingUpdate: &appsv1.RollingUpdateDeployment{
					MaxUnavailable: ptr.To(intstr.FromInt32(0)), MaxSurge: &maxSurge,
				},
			},
			ProgressDeadlineSeconds: ptr.To(int32(max(o.cfg.PoolReadyTimeout/time.Second, 10))),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{
					Labels: labels,
					Annotations: map[string]string{
						// upstream's: untrusted runtimes get a VM sandbox under CRI-O.
						"io.kubernetes.cri-o.TrustedSandbox": fmt.Sprint(rt.Trusted),
					},
				},
				Spec: o.workerPodSpec(rt.Image),
			},
		},
	}
}

// workerPodSpec is a pool pod: the runtime server alone, unprivileged, with
// its packages directory and /tmp on emptyDirs and a read-only root.
func (o *Orchestrator) workerPodSpec(image string) corev1.PodSpec {
	res := corev1.ResourceList{
		corev1.ResourceCPU:    *resource.NewMilliQuantity(int64(o.cfg.PoolCPU), resource.DecimalSI),
		corev1.ResourceMemory: *resource.NewQuantity(o.cfg.PoolMemory, resource.BinarySI),
	}
	spec := o.basePodSpec()
	spec.Volumes = []corev1.Volume{
		// On the node's disk (a package may expand to 512 MiB, more than
		// a function's memory), bounded by the kubelet's eviction.
		{Name: "packages", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: ptr.To(resource.MustParse(packagesSizeLimit))}}},
		// tmpfs, counted against the pod's memory limit: what a function
		// writes there never reaches the node's disk (a disk-backed
		// emptyDir's sizeLimit is only checked now and then by the
		// kubelet, after the bytes are written).
		{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{
			Medium: corev1.StorageMediumMemory, SizeLimit: ptr.To(resource.MustParse("256Mi")),
		}}},
	}
	spec.Containers = []corev1.Container{{
		Name:            workerContainer,
		Image:           image,
		ImagePullPolicy: o.cfg.ImagePullPolicy,
		Ports:           []corev1.ContainerPort{{Name: "worker", ContainerPort: int32(o.cfg.WorkerPort), Protocol: corev1.ProtocolTCP}},
		Env: []corev1.EnvVar{
			{Name: "QINLING_PACKAGES_DIR", Value: packagesDir},
			{Name: envWorkerToken, Value: "required"},
		},
		// Requests equal limits (Guaranteed): an in-place resize to the
		// function's values keeps the QoS class, which resize requires.
		Resources: corev1.ResourceRequirements{Requests: res, Limits: res.DeepCopy()},
		ResizePolicy: []corev1.ContainerResizePolicy{
			{ResourceName: corev1.ResourceCPU, RestartPolicy: corev1.NotRequired},
			{ResourceName: corev1.ResourceMemory, RestartPolicy: corev1.NotRequired},
		},
		ReadinessProbe: &corev1.Probe{
			ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path: "/ping", Port: intstr.FromInt32(int32(o.cfg.WorkerPort)),
			}},
			PeriodSeconds: 1, FailureThreshold: 2, TimeoutSeconds: 1,
		},
		VolumeMounts: []corev1.VolumeMount{
			{Name: "packages", MountPath: packagesDir},
			{Name: "tmp", MountPath: "/tmp"},
		},
		SecurityContext:          o.containerSecurity(),
		TerminationMessagePath:   terminationMessagePath,
		TerminationMessagePolicy: corev1.TerminationMessageReadFile,
	}}
	return spec
}

// packagesSizeLimit bounds a worker pod's packages emptyDir: the zip the
// runtime receives (storage's max_package_size) and what it expands to
// (512 MiB at most, pkg/archive). The kubelet evicts a pod past it.
const packagesSizeLimit = "1Gi"

// terminationMessagePath is where the kubelet puts a container's
// termination message file: a file of its own on the node's disk,
// bind-mounted writable for everyone and counted in no limit
// (kubernetes/kubernetes#122224), which a function could grow until the
// node's disk is full. In /root, root's own directory (mode 0700) in the
// runtime images, as in every distribution's, the pod's unprivileged user
// cannot reach it. The engine reads no termination message.
const terminationMessagePath = "/root/termination-log"

// basePodSpec holds what every pod of the backend has.
func (o *Orchestrator) basePodSpec() corev1.PodSpec {
	return corev1.PodSpec{
		AutomountServiceAccountToken:  ptr.To(false),
		EnableServiceLinks:            ptr.To(false),
		TerminationGracePeriodSeconds: ptr.To(int64(5)),
		SecurityContext: &corev1.PodSecurityContext{
			RunAsNonRoot:   ptr.To(true),
			RunAsUser:      ptr.To(o.cfg.RunAsUser),
			RunAsGroup:     ptr.To(o.cfg.RunAsUser),
			FSGroup:        ptr.To(o.cfg.RunAsUser),
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
	}
}

func (o *Orchestrator) containerSecurity() *corev1.SecurityContext {
	return &corev1.SecurityContext{
		AllowPrivilegeEscalation: ptr.To(false),
		ReadOnlyRootFilesystem:   ptr.To(true),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
	}
}

// waitAvailable waits until the Deployment runs rt.Image on all its
// replicas, failing early when a pod shows a reason that will not go away
// by waiting (the image cannot be pulled, the container keeps crashing).
func (o *Orchestrator) waitAvailable(ctx context.Context, rt orchestrator.Runtime) error {
	name := deploymentName(rt.ID)
	deadline := time.Now().Add(o.cfg.PoolReadyTimeout)
	tick := time.NewTicker(o.cfg.PollInterval)
	defer tick.Stop()
	var last string // the last reason seen, for the timeout message
	for {
		cctx, cancel := o.call(ctx)
		d, err := o.client.AppsV1().Deployments(o.cfg.Namespace).Get(cctx, name, metav1.GetOptions{})
		cancel()
		switch {
		case apierrors.IsNotFound(err):
			return fmt.Errorf("pool %s: its Deployment %s was deleted while it was being created", rt.ID, name)
		case err != nil:
			// A short API outage should not fail a pool; a long one ends at the deadline.
			last = apiError(err, "read the pool's Deployment").Error()
		case deploymentReady(d):
			o.log.Info("pool available", "runtime_id", rt.ID, "image", rt.Image)
			return nil
		default:
			reason, fatal, err := o.podProblem(ctx, rt)
			if err == nil && reason != "" {
				last = reason
				if fatal {
					return fmt.Errorf("%s (image %s): %w", reason, rt.Image, orchestrator.ErrImageNotRunnable)
				}
			}
			if c := condition(d, appsv1.DeploymentProgressing); c != nil && c.Status == corev1.ConditionFalse && c.Reason == "ProgressDeadlineExceeded" {
				return fmt.Errorf("%s (pool not available: %s)", orElse(last, "pods not ready"), c.Message)
			}
			if c := condition(d, appsv1.DeploymentReplicaFailure); c != nil && c.Status == corev1.ConditionTrue {
				last = "pods cannot be created: " + c.Message
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s (pool not available after %s)", orElse(last, "pods not ready"), o.cfg.PoolReadyTimeout)
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return fmt.Errorf("pool %s: %w", rt.ID, ctx.Err())
		}
	}
}

func orElse(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// deploymentReady: the controller has seen the latest spec, every replica
// runs it and is available, and no old pod is left.
func deploymentReady(d *appsv1.Deployment) bool {
	want := ptr.Deref(d.Spec.Replicas, 1)
	s := d.Status
	return d.DeletionTimestamp == nil && s.ObservedGeneration >= d.Generation &&
		s.UpdatedReplicas == want && s.AvailableReplicas >= want && s.Replicas == want
}

func condition(d *appsv1.Deployment, t appsv1.DeploymentConditionType) *appsv1.DeploymentCondition {
	for i := range d.Status.Conditions {
		if d.Status.Conditions[i].Type == t {
			return &d.Status.Conditions[i]
		}
	}
	return nil
}

// Container waiting reasons that waiting will not cure.
var fatalReasons = map[string]bool{
	"ErrImagePull":     false, // the first failure, retried: not yet fatal
	"ImagePullBackOff": true, "ErrImageNeverPull": true, "InvalidImageName": true,
	"CrashLoopBackOff": true, "CreateContainerConfigError": true, "CreateContainerError": true,
	"RunContainerError": true,
}

// podProblem reads the free pods of rt running rt.Image and returns the
// first reason one of them is not ready: a container's waiting reason
// (fatal for image pull and crash loops) or the scheduler's message.
func (o *Orchestrator) podProblem(ctx context.Context, rt orchestrator.Runtime) (reason string, fatal bool, err error) {
	cctx, cancel := o.call(ctx)
	defer cancel()
	pods, err := o.client.CoreV1().Pods(o.cfg.Namespace).List(cctx, metav1.ListOptions{
		LabelSelector: LabelRuntime + "=" + rt.ID + ",!" + LabelFunction,
	})
	if err != nil {
		return "", false, err
	}
	items := pods.Items
	sort.Slice(items, func(i, j int) bool { return items[i].Name < items[j].Name })
	for i := range items {
		p := &items[i]
		if len(p.Spec.Containers) == 0 || p.Spec.Containers[0].Image != rt.Image {
			continue
		}
		if r, f := podReason(p); r != "" {
			if f {
				return r, true, nil
			}
			reason = r
		}
	}
	return reason, false, nil
}

// podReason says why pod p is not running, and whether that is final.
func podReason(p *corev1.Pod) (string, bool) {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse {
			return fmt.Sprintf("pods cannot be scheduled (%s): %s", c.Reason, c.Message), false
		}
	}
	for _, cs := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
		if w := cs.State.Waiting; w != nil && w.Reason != "" && w.Reason != "ContainerCreating" && w.Reason != "PodInitializing" {
			msg := w.Reason
			if w.Message != "" {
				msg += ": " + w.Message
			}
			if t := cs.LastTerminationState.Terminated; t != nil {
				msg += fmt.Sprintf(" (last exit code %d, %s)", t.ExitCode, orElse(t.Reason, "no reason"))
			}
			return msg, fatalReasons[w.Reason]
		}
	}
	return "", false
}

// DeletePool deletes the runtime's Deployment and every pod of the runtime,
// free or specialised. An unknown runtime is not an error.
func (o *Orchestrator) DeletePool(ctx context.Context, runtimeID string) error {
	name := deploymentName(runtimeID)
	cctx, cancel := o.call(ctx)
	err := o.client.AppsV1().Deployments(o.cfg.Namespace).Delete(cctx, name, metav1.DeleteOptions{
		PropagationPolicy: ptr.To(metav1.DeletePropagationBackground),
	})
	cancel()
	if err != nil && !apierrors.IsNotFound(err) {
		return apiError(err, "delete the pool's Deployment "+name)
	}
	// The garbage collector would delete the free pods; the specialised
	// ones left the Deployment, so they are deleted here, and the free ones
	// too so that the pool is gone when this returns.
	n, err := o.deletePods(ctx, LabelRuntime+"="+runtimeID)
	if err != nil {
		return err
	}
	o.log.Info("pool deleted", "runtime_id", runtimeID, "pods", n)
	return nil
}

// deletePods deletes the pods matching selector and returns how many.
func (o *Orchestrator) deletePods(ctx context.Context, selector string) (int, error) {
	pods := o.client.CoreV1().Pods(o.cfg.Namespace)
	cctx, cancel := o.call(ctx)
	list, err := pods.List(cctx, metav1.ListOptions{LabelSelector: selector})
	cancel()
	if err != nil {
		return 0, apiError(err, "list pods "+selector)
	}
	names := make([]string, 0, len(list.Items))
	for _, p := range list.Items {
		names = append(names, p.Name)
	}
	o.forget(names...)
	var errs []error
	for _, n := range names {
		cctx, cancel := o.call(ctx)
		if err := pods.Delete(cctx, n, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, apiError(err, "delete pod "+n))
		}
		cancel()
	}
	return len(names), errors.Join(errs...)
}

// Pool reports the runtime's pods: Total counts every live pod of the
// runtime, free or specialised; Available the ready free ones.
func (o *Orchestrator) Pool(ctx context.Context, runtimeID string) (orchestrator.Capacity, error) {
	cctx, cancel := o.call(ctx)
	defer cancel()
	d, err := o.client.AppsV1().Deployments(o.cfg.Namespace).Get(cctx, deploymentName(runtimeID), metav1.GetOptions{})
	if apierrors.IsNotFound(err) || (err == nil && d.DeletionTimestamp != nil) {
		return orchestrator.Capacity{}, fmt.Errorf("pool %s: %w", runtimeID, orchestrator.ErrPoolNotFound)
	}
	if err != nil {
		return orchestrator.Capacity{}, apiError(err, "read the pool's Deployment")
	}
	list, err := o.client.CoreV1().Pods(o.cfg.Namespace).List(cctx, metav1.ListOptions{LabelSelector: LabelRuntime + "=" + runtimeID})
	if err != nil {
		return orchestrator.Capacity{}, apiError(err, "list the pool's pods")
	}
	var c orchestrator.Capacity
	for i := range list.Items {
		p := &list.Items[i]
		if !alive(p) {
			continue
		}
		c.Total++
		if _, taken := p.Labels[LabelFunction]; !taken && ready(p) {
			c.Available++
		}
	}
	return c, nil
}

// alive: not terminating and not finished.
func alive(p *corev1.Pod) bool {
	return p.DeletionTimestamp == nil && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed
}

// ready: alive, with an IP, and passing its readiness probe.
func ready(p *corev1.Pod) bool {
	if !alive(p) || p.Status.Phase != corev1.PodRunning || p.Status.PodIP == "" {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
