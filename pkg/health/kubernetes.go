package health

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/ballast-os/ballast/api/machine"
	"github.com/ballast-os/ballast/pkg/client"
)

// APIServerService is the service ID of kube-apiserver on control planes.
const APIServerService = "kube-apiserver"

// kubeClients caches, per control-plane address, the HTTP client built from
// the admin kubeconfig that node issued, so that the repeated checks of
// Wait ask for one kubeconfig, not one a second.
var kubeClients sync.Map // address -> *kubeClient

type kubeClient struct {
	server string
	http   *http.Client
}

// kubernetesChecks checks the Kubernetes control plane when the control
// planes run it: kube-apiserver ready on each, the endpoint answering
// /readyz, the scheduler's and controller-manager's leases held, the
// cluster's nodes (wantNodes of them) Ready and CoreDNS available. ok is
// false when no control plane runs kube-apiserver.
func kubernetesChecks(ctx context.Context, cps []Node, clients map[string]*client.Client, wantNodes int) ([]Check, bool) {
	var checks []Check
	var first *client.Client
	var firstAddr string
	for _, n := range cps {
		c := clients[n.Address]
		if c == nil {
			continue
		}
		resp, err := c.ServiceList(ctx, &machine.ServiceListRequest{})
		if err != nil {
			continue
		}
		for _, s := range resp.GetServices() {
			if s.GetId() != APIServerService {
				continue
			}
			var err error
			if s.GetState() != "Running" || s.GetHealth() == nil || !s.GetHealth().GetHealthy() {
				err = fmt.Errorf("%s %s", s.GetState(), s.GetHealth().GetLastMessage())
			}
			checks = append(checks, Check{"kube-apiserver ready on " + n.Address, err})
			if first == nil {
				first, firstAddr = c, n.Address
			}
		}
	}
	if first == nil {
		return nil, false
	}
	kc, err := kubeClientFor(ctx, firstAddr, first)
	if err != nil {
		return append(checks, Check{"Kubernetes endpoint answers /readyz", err}), true
	}
	checks = append(checks, Check{"Kubernetes endpoint " + kc.server + " answers /readyz", kc.readyz(ctx)})
	checks = append(checks, Check{"leases kube-scheduler and kube-controller-manager held", kc.leasesHeld(ctx)})
	checks = append(checks, Check{fmt.Sprintf("%d nodes registered and Ready", wantNodes), kc.nodesReady(ctx, wantNodes)})
	checks = append(checks, Check{"CoreDNS available", kc.deploymentAvailable(ctx, "kube-system", "coredns")})
	return checks, true
}

// nodesReady requires at least want Nodes, each with condition Ready True.
func (k *kubeClient) nodesReady(ctx context.Context, want int) error {
	body, err := k.get(ctx, "/api/v1/nodes")
	if err != nil {
		return err
	}
	var list struct {
		Items []struct {
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
			Status struct {
				Conditions []struct {
					Type    string `json:"type"`
					Status  string `json:"status"`
					Reason  string `json:"reason"`
					Message string `json:"message"`
				} `json:"conditions"`
			} `json:"status"`
		} `json:"items"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		return fmt.Errorf("nodes: %w", err)
	}
	var problems []string
	if len(list.Items) < want {
		problems = append(problems, fmt.Sprintf("%d of %d registered", len(list.Items), want))
	}
	for _, n := range list.Items {
		ready := false
		for _, c := range n.Status.Conditions {
			if c.Type != "Ready" {
				continue
			}
			ready = c.Status == "True"
			if !ready {
				problems = append(problems, fmt.Sprintf("%s not Ready (%s: %s)", n.Metadata.Name, c.Reason, c.Message))
			}
		}
		if !ready && len(n.Status.Conditions) == 0 {
			problems = append(problems, n.Metadata.Name+" has reported no status yet")
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s", strings.Join(problems, "; "))
	}
	return nil
}

// deploymentAvailable requires every wanted replica of a Deployment to be
// available.
func (k *kubeClient) deploymentAvailable(ctx context.Context, ns, name string) error {
	body, err := k.get(ctx, "/apis/apps/v1/namespaces/"+ns+"/deployments/"+name)
	if err != nil {
		return err
	}
	var d struct {
		Spec struct {
			Replicas *int `json:"replicas"`
		} `json:"spec"`
		Status struct {
			Available int `json:"availableReplicas"`
		} `json:"status"`
	}
	if err := json.Unmarshal(body, &d); err != nil {
		return fmt.Errorf("deployment %s: %w", name, err)
	}
	want := 1
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	if d.Status.Available < want || want == 0 {
		return fmt.Errorf("%d of %d replicas available", d.Status.Available, want)
	}
	return nil
}

func kubeClientFor(ctx context.Context, addr string, c *client.Client) (*kubeClient, error) {
	if v, ok := kubeClients.Load(addr); ok {
		return v.(*kubeClient), nil
	}
	resp, err := c.Kubeconfig(ctx, &machine.KubeconfigRequest{})
	if err != nil {
		return nil, fmt.Errorf("get an admin kubeconfig from %s: %w", addr, err)
	}
	kc, err := newKubeClient(resp.GetKubeconfig())
	if err != nil {
		return nil, err
	}
	kubeClients.Store(addr, kc)
	return kc, nil
}

// newKubeClient builds an HTTP client from a kubeconfig with embedded
// certificates (as nodes issue them).
func newKubeClient(data []byte) (*kubeClient, error) {
	var kc struct {
		Clusters []struct {
			Cluster struct {
				Server string `yaml:"server"`
				CA     string `yaml:"certificate-authority-data"`
			} `yaml:"cluster"`
		} `yaml:"clusters"`
		Users []struct {
			User struct {
				Cert string `yaml:"client-certificate-data"`
				Key  string `yaml:"client-key-data"`
			} `yaml:"user"`
		} `yaml:"users"`
	}
	if err := yaml.Unmarshal(data, &kc); err != nil || len(kc.Clusters) != 1 || len(kc.Users) != 1 {
		return nil, fmt.Errorf("kubeconfig from the node is not readable (%v)", err)
	}
	dec := func(s string) []byte { b, _ := base64.StdEncoding.DecodeString(s); return b }
	cert, err := tls.X509KeyPair(dec(kc.Users[0].User.Cert), dec(kc.Users[0].User.Key))
	if err != nil {
		return nil, fmt.Errorf("kubeconfig client certificate: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(dec(kc.Clusters[0].Cluster.CA)) {
		return nil, fmt.Errorf("kubeconfig has no CA certificate")
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool, Certificates: []tls.Certificate{cert}}, DisableKeepAlives: true}
	return &kubeClient{server: strings.TrimRight(kc.Clusters[0].Cluster.Server, "/"), http: &http.Client{Transport: tr, Timeout: 5 * time.Second}}, nil
}

func (k *kubeClient) get(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.server+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := k.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", path, resp.Status, strings.TrimSpace(string(body)))
	}
	return body, nil
}

func (k *kubeClient) readyz(ctx context.Context) error {
	body, err := k.get(ctx, "/readyz")
	if err != nil {
		return err
	}
	if strings.TrimSpace(string(body)) != "ok" {
		return fmt.Errorf("/readyz: %s", body)
	}
	return nil
}

// leasesHeld requires both leader-election leases to name a holder whose
// renewal has not expired.
func (k *kubeClient) leasesHeld(ctx context.Context) error {
	var problems []string
	for _, name := range []string{"kube-scheduler", "kube-controller-manager"} {
		body, err := k.get(ctx, "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/"+name)
		if err != nil {
			problems = append(problems, name+": "+err.Error())
			continue
		}
		var lease struct {
			Spec struct {
				Holder   string    `json:"holderIdentity"`
				Duration int       `json:"leaseDurationSeconds"`
				Renew    time.Time `json:"renewTime"`
			} `json:"spec"`
		}
		if err := json.Unmarshal(body, &lease); err != nil {
			problems = append(problems, name+": "+err.Error())
			continue
		}
		s := lease.Spec
		switch {
		case s.Holder == "":
			problems = append(problems, name+": no holder")
		case time.Since(s.Renew) > time.Duration(s.Duration)*time.Second:
			problems = append(problems, fmt.Sprintf("%s: %s has not renewed since %s", name, s.Holder, s.Renew.Format(time.RFC3339)))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s", strings.Join(problems, "; "))
	}
	return nil
}
