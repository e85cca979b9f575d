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

// apiserverService is the service ID of kube-apiserver on control planes.
const apiserverService = "kube-apiserver"

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
// /readyz, and the scheduler's and controller-manager's leases held. ok is
// false when no control plane runs kube-apiserver.
func kubernetesChecks(ctx context.Context, cps []Node, clients map[string]*client.Client) ([]Check, bool) {
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
			if s.GetId() != apiserverService {
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
	return checks, true
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
