package kubernetes_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/qinling-go/qinling/orchestrator"
	"github.com/qinling-go/qinling/orchestrator/kubernetes"
	"github.com/qinling-go/qinling/orchestrator/kubernetes/kubetest"
	"github.com/qinling-go/qinling/orchestrator/orchestratortest"
	"github.com/qinling-go/qinling/orchestrator/workerclient"
)

// TestWorkerTokenRefusesOtherPods plays a function in another pod that
// calls this backend's pods directly, as the pod network allows: it runs
// without the engine's token, on the real runtime servers (kubetest), in
// both runtimes.
func TestWorkerTokenRefusesOtherPods(t *testing.T) {
	for _, tc := range []struct {
		name, image string
		function    func(t *testing.T, name string) (orchestrator.Package, string)
	}{
		{"python3", image, orchestratortest.PythonFunction},
		{"nodejs", nodeImage, orchestratortest.NodeFunction},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.image == nodeImage {
				if _, err := os.Stat("/usr/bin/node"); err != nil {
					t.Skipf("/usr/bin/node not available (apt-get install nodejs): %v", err)
				}
			}
			c := kubetest.Start(t, kubetest.Options{})
			o := newBackend(t, c)
			defer o.Close()
			ctx := context.Background()
			rt := "rt-tok-" + tc.name
			require.NoError(t, o.CreatePool(ctx, orchestrator.Runtime{ID: rt, Image: tc.image}))
			pkg, entry := tc.function(t, orchestratortest.Hello)
			fn := orchestrator.Function{ID: "fn-tok", RuntimeID: rt, Entry: entry, CPU: 100, MemorySize: 64 << 20, Timeout: 5 * time.Second, Package: pkg}
			ws, err := o.ScaleUp(ctx, fn, 1)
			require.NoError(t, err)
			w := ws[0]
			plain, _, _ := strings.Cut(w.Address, "#")
			require.NotEqual(t, plain, w.Address, "the worker's address carries its token")

			stranger := workerclient.New(workerclient.Options{Dial: c.Dial})
			inv := orchestrator.Invocation{ExecutionID: "e-stranger", FunctionID: fn.ID, Entry: entry, Timeout: 5 * time.Second}
			for name, cl := range map[string]*workerclient.Client{
				"no token":    stranger,
				"wrong token": stranger.WithToken(strings.Repeat("f", 64)),
			} {
				_, err = cl.Execute(ctx, plain, inv, time.Second)
				require.ErrorIs(t, err, orchestrator.ErrWorkerNotFound, "%s: a stranger's execution is refused", name)
				require.Contains(t, err.Error(), "token", name)
				require.NotContains(t, err.Error(), fn.ID, "%s: the refusal does not say which function the pod serves", name)
				err = cl.Deliver(ctx, plain, workerclient.Package{FunctionID: "fn-evil", Version: 0, Zip: []byte("PK")})
				require.ErrorIs(t, err, orchestrator.ErrWorkerNotFound, "%s: a stranger's package is refused", name)
			}

			// The engine still runs its function there.
			res, err := o.Run(ctx, w, inv)
			require.NoError(t, err)
			require.True(t, res.Success, "%s", res.Output)

			// A free pod takes no package without a token, and runs nothing.
			free, err := c.Client.CoreV1().Pods(c.Namespace).List(ctx, metav1.ListOptions{LabelSelector: kubernetes.LabelRuntime + "=" + rt + ",!" + kubernetes.LabelFunction})
			require.NoError(t, err)
			require.NotEmpty(t, free.Items)
			addr := "http://" + free.Items[0].Status.PodIP + ":9090"
			err = stranger.Deliver(ctx, addr, workerclient.Package{FunctionID: "fn-evil", Version: 0, Zip: []byte("PK")})
			require.ErrorIs(t, err, orchestrator.ErrWorkerNotFound)
			_, err = stranger.Execute(ctx, addr, inv, time.Second)
			require.ErrorIs(t, err, orchestrator.ErrWorkerNotFound)
			// The readiness probe's GET /ping needs no token.
			require.NoError(t, stranger.Ping(ctx, addr))
		})
	}
}
