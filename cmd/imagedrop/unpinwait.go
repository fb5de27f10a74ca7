package main

import (
	"context"
	"fmt"
	"io"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	typedappsv1 "k8s.io/client-go/kubernetes/typed/apps/v1"
)

// unpinWait is unpin --wait-daemonset: instead of unpinning, wait until
// every pod of the uninstall's unpin DaemonSet has unpinned its node (is
// available), as the chart's pre-delete Job does with imagedrop's own image.
type unpinWait struct {
	daemonSet string
	namespace string
	timeout   time.Duration
	kube      kubeConfig
}

// waitPoll is how often the DaemonSet is read while waiting.
const waitPoll = 2 * time.Second

// run waits for the DaemonSet, reading it every waitPoll, and prints how it went.
func (w unpinWait) run(ctx context.Context, stdout io.Writer) error {
	rc, err := w.kube.restConfig()
	if err != nil {
		return err
	}
	apps, err := typedappsv1.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	tick := time.NewTicker(waitPoll)
	defer tick.Stop()
	for {
		ds, err := apps.DaemonSets(w.namespace).Get(ctx, w.daemonSet, metav1.GetOptions{})
		state := ""
		if err == nil {
			var done bool
			if done, state = daemonSetDone(ds); done {
				fmt.Fprintf(stdout, "daemonset %s/%s: %s\n", w.namespace, w.daemonSet, state)
				return nil
			}
		} else {
			state = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("daemonset %s/%s not done after %s: %s", w.namespace, w.daemonSet, w.timeout, state)
		case <-tick.C:
		}
	}
}

// daemonSetDone reports whether every pod the DaemonSet's controller wants
// runs its current spec and is available (kubectl rollout status's test),
// and says how far it is.
func daemonSetDone(ds *appsv1.DaemonSet) (bool, string) {
	st := ds.Status
	if ds.Generation > st.ObservedGeneration {
		return false, "not yet seen by its controller"
	}
	s := fmt.Sprintf("%d of %d pods done", min(st.NumberAvailable, st.UpdatedNumberScheduled), st.DesiredNumberScheduled)
	return st.UpdatedNumberScheduled >= st.DesiredNumberScheduled && st.NumberAvailable >= st.DesiredNumberScheduled, s
}
