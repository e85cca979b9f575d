// Package probe measures availability during a disruption, for the tests
// and the benchmarks: a check called at an interval with the longest time
// between two successes, and a client creating a ConfigMap at an interval
// that can later tell which acknowledged ones the API lost.
package probe

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/clientcmd"
)

// Gap calls a check at an interval and keeps the longest time between two
// successes (from the start to the first one too).
type Gap struct {
	stopCh, done chan struct{}
	once         sync.Once

	mu         sync.Mutex
	ok, failed int
	start      time.Time
	last       time.Time
	longest    time.Duration
	failures   []Failure
}

// Failure is one failed call: when it started (since the start), how long
// it took, and its error.
type Failure struct {
	At, Took time.Duration
	Err      string
}

func (f Failure) String() string {
	return fmt.Sprintf("+%s (%s): %s", f.At.Round(10*time.Millisecond), f.Took.Round(10*time.Millisecond), f.Err)
}

// keptFailures is how many failures a Gap keeps (the first ones).
const keptFailures = 20

// StartGap calls check every interval until Stop. check gets the call's
// number, from 0.
func StartGap(every time.Duration, check func(i int) error) *Gap {
	now := time.Now()
	g := &Gap{stopCh: make(chan struct{}), done: make(chan struct{}), start: now, last: now}
	go func() {
		defer close(g.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-g.stopCh:
				return
			case <-tick.C:
			}
			began := time.Now()
			err := check(i)
			now := time.Now()
			g.mu.Lock()
			if err == nil {
				g.ok++
				g.longest = max(g.longest, now.Sub(g.last))
				g.last = now
			} else {
				g.failed++
				if len(g.failures) < keptFailures {
					g.failures = append(g.failures, Failure{At: began.Sub(g.start), Took: now.Sub(began), Err: err.Error()})
				}
			}
			g.mu.Unlock()
		}
	}()
	return g
}

// Stop ends the calls and waits for the one under way.
func (g *Gap) Stop() { g.once.Do(func() { close(g.stopCh); <-g.done }) }

// Failures are the first failed calls (at most 20), to tell a refused
// call from one that hung until its timeout.
func (g *Gap) Failures() []Failure {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]Failure(nil), g.failures...)
}

// Result is how many calls succeeded and failed, and the longest time
// between two successes.
func (g *Gap) Result() (ok, failed int, longest time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.ok, g.failed, g.longest
}

// ConfigMaps creates a ConfigMap in namespace default at an interval
// through the kubeconfig's server, and records the acknowledged ones.
type ConfigMaps struct {
	*Gap
	cm    corev1client.ConfigMapInterface
	mu    sync.Mutex
	acked []string
}

// StartConfigMaps starts the writes (each with a 2 s timeout), named
// prefix-NNNNNN.
func StartConfigMaps(kubeconfig, prefix string, every time.Duration) (*ConfigMaps, error) {
	data, err := os.ReadFile(kubeconfig)
	if err != nil {
		return nil, err
	}
	rc, err := clientcmd.RESTConfigFromKubeConfig(data)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
	}
	rc.Timeout = 2 * time.Second
	core, err := corev1client.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	w := &ConfigMaps{cm: core.ConfigMaps(metav1.NamespaceDefault)}
	w.Gap = StartGap(every, func(i int) error {
		name := fmt.Sprintf("%s-%06d", prefix, i)
		if _, err := w.cm.Create(context.Background(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
			return err
		}
		w.mu.Lock()
		w.acked = append(w.acked, name)
		w.mu.Unlock()
		return nil
	})
	return w, nil
}

// Acked is the names the API acknowledged.
func (w *ConfigMaps) Acked() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.acked...)
}

// Lost lists the acknowledged ConfigMaps the API no longer has.
func (w *ConfigMaps) Lost(ctx context.Context) ([]string, error) {
	list, err := w.cm.List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list ConfigMaps: %w", err)
	}
	have := map[string]bool{}
	for _, c := range list.Items {
		have[c.Name] = true
	}
	var lost []string
	for _, n := range w.Acked() {
		if !have[n] {
			lost = append(lost, n)
		}
	}
	return lost, nil
}
