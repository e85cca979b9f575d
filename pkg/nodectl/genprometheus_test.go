package nodectl

import (
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestPrometheusConfig(t *testing.T) {
	for _, tc := range []struct {
		name    string
		targets []promTarget
		jobs    map[string][]string // job → targets
		https   string              // the job with tls_config ("" none)
	}{
		{"all over HTTP",
			[]promTarget{{"10.5.0.2", "controlplane", false}, {"10.5.0.5", "worker", false}},
			map[string][]string{"ballast": {"10.5.0.2:50001", "10.5.0.5:50001"}}, ""},
		{"one node asks for mTLS",
			[]promTarget{{"10.5.0.2", "controlplane", false}, {"10.5.0.3", "controlplane", true}},
			map[string][]string{"ballast": {"10.5.0.2:50001"}, "ballast-mtls": {"10.5.0.3:50001"}}, "ballast-mtls"},
		{"every node asks for mTLS",
			[]promTarget{{"fd00::2", "controlplane", true}},
			map[string][]string{"ballast-mtls": {"[fd00::2]:50001"}}, "ballast-mtls"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, err := prometheusConfig("prod", tc.targets, 15*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			var f promFile
			if err := yaml.Unmarshal(data, &f); err != nil {
				t.Fatalf("%v\n%s", err, data)
			}
			if f.Global.ScrapeInterval != "15s" || len(f.ScrapeConfigs) != len(tc.jobs) {
				t.Fatalf("config:\n%s", data)
			}
			for _, j := range f.ScrapeConfigs {
				want := tc.jobs[j.JobName]
				if len(j.StaticConfigs) != len(want) {
					t.Fatalf("job %s has %d targets, want %v:\n%s", j.JobName, len(j.StaticConfigs), want, data)
				}
				for i, sc := range j.StaticConfigs {
					if sc.Targets[0] != want[i] || sc.Labels["cluster"] != "prod" || sc.Labels["node"] == "" || sc.Labels["role"] == "" {
						t.Fatalf("job %s target %d: %+v, want %s with labels", j.JobName, i, sc, want[i])
					}
				}
				if hasTLS := j.TLSConfig != nil && j.Scheme == "https"; hasTLS != (j.JobName == tc.https) {
					t.Fatalf("job %s: scheme %q tls %+v", j.JobName, j.Scheme, j.TLSConfig)
				}
				if j.TLSConfig != nil && (j.TLSConfig.KeyFile != promKeyFile || j.TLSConfig.CAFile != promCAFile) {
					t.Fatalf("tls_config %+v: want the files written beside the config", j.TLSConfig)
				}
			}
		})
	}
}

func TestGenPrometheusRefusals(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"gen", "prometheus"}, "--output-dir is required"},
		{[]string{"gen", "prometheus", "--output-dir", t.TempDir(), "--scrape-interval", "100ms"}, "want at least 1s"},
	} {
		var out, errb strings.Builder
		if code := Run(tc.args, &out, &errb); code == 0 || !strings.Contains(errb.String(), tc.want) {
			t.Fatalf("nodectl %v: exit %d, stderr %q; want %q", tc.args, code, errb.String(), tc.want)
		}
	}
}
