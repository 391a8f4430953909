// Package deploy holds the Kubernetes manifests for running whp on EKS
// (a Kustomize base and a production overlay). This test renders them with
// Kustomize's own engine, as `kubectl apply -k` would, and checks the
// essentials an SRE relies on.
package deploy

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/whp-dev/whp/runtime/flags"
)

// The fields checked, decoded from the rendered YAML.
type probe struct {
	HTTPGet *struct {
		Path string `json:"path"`
		Port any    `json:"port"`
	} `json:"httpGet"`
}

type container struct {
	Name  string   `json:"name"`
	Image string   `json:"image"`
	Args  []string `json:"args"`
	Ports []struct {
		Name          string `json:"name"`
		ContainerPort int    `json:"containerPort"`
	} `json:"ports"`
	LivenessProbe   *probe `json:"livenessProbe"`
	ReadinessProbe  *probe `json:"readinessProbe"`
	SecurityContext *struct {
		AllowPrivilegeEscalation *bool `json:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   *bool `json:"readOnlyRootFilesystem"`
		Capabilities             struct {
			Drop []string `json:"drop"`
		} `json:"capabilities"`
	} `json:"securityContext"`
	Resources struct {
		Requests map[string]string `json:"requests"`
		Limits   map[string]string `json:"limits"`
	} `json:"resources"`
	VolumeMounts []struct {
		Name      string `json:"name"`
		MountPath string `json:"mountPath"`
	} `json:"volumeMounts"`
	EnvFrom []struct {
		ConfigMapRef struct {
			Name string `json:"name"`
		} `json:"configMapRef"`
	} `json:"envFrom"`
}

type object struct {
	Kind     string `json:"kind"`
	Metadata struct {
		Name        string            `json:"name"`
		Namespace   string            `json:"namespace"`
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
	} `json:"metadata"`
	Spec struct {
		Selector struct {
			MatchLabels map[string]string `json:"matchLabels"`
		} `json:"selector"`
		Replicas       *int `json:"replicas"`
		ScaleTargetRef struct {
			Name string `json:"name"`
		} `json:"scaleTargetRef"`
		MinReplicas    int          `json:"minReplicas"`
		MaxReplicas    int          `json:"maxReplicas"`
		MaxUnavailable any          `json:"maxUnavailable"`
		PolicyTypes    []string     `json:"policyTypes"`
		Egress         []egressRule `json:"egress"`
		Template       struct {
			Metadata struct {
				Labels      map[string]string `json:"labels"`
				Annotations map[string]string `json:"annotations"`
			} `json:"metadata"`
			Spec struct {
				ServiceAccountName            string `json:"serviceAccountName"`
				TerminationGracePeriodSeconds int    `json:"terminationGracePeriodSeconds"`
				SecurityContext               struct {
					RunAsNonRoot *bool `json:"runAsNonRoot"`
					RunAsUser    int   `json:"runAsUser"`
				} `json:"securityContext"`
				Containers []container `json:"containers"`
				Volumes    []struct {
					Name      string `json:"name"`
					ConfigMap *struct {
						Name string `json:"name"`
					} `json:"configMap"`
				} `json:"volumes"`
			} `json:"spec"`
		} `json:"template"`
	} `json:"spec"`
	Data map[string]string `json:"data"`
}

type egressRule struct {
	To []struct {
		IPBlock *struct {
			CIDR   string   `json:"cidr"`
			Except []string `json:"except"`
		} `json:"ipBlock"`
	} `json:"to"`
}

func render(t *testing.T, dir string) map[string]map[string]object {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	byKind := map[string]map[string]object{}
	for _, r := range rm.Resources() {
		b, err := r.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		var o object
		if err := json.Unmarshal(b, &o); err != nil {
			t.Fatalf("%s: %v", r.CurId(), err)
		}
		if byKind[o.Kind] == nil {
			byKind[o.Kind] = map[string]object{}
		}
		byKind[o.Kind][o.Metadata.Name] = o
	}
	return byKind
}

var roles = []string{"ingest", "processor", "dispatcher", "reconciler", "console"}

func TestManifests(t *testing.T) {
	for _, dir := range []string{"base", "overlays/prod"} {
		t.Run(dir, func(t *testing.T) {
			objs := render(t, dir)
			for _, role := range roles {
				name := "whp-" + role
				d, ok := objs["Deployment"][name]
				if !ok {
					t.Fatalf("no Deployment %s", name)
				}
				checkPod(t, d, role)
				sa, ok := objs["ServiceAccount"][d.Spec.Template.Spec.ServiceAccountName]
				if !ok || !strings.HasPrefix(sa.Metadata.Annotations["eks.amazonaws.com/role-arn"], "arn:aws:iam::") {
					t.Errorf("%s: service account %q has no IRSA role annotation", name, d.Spec.Template.Spec.ServiceAccountName)
				}
				pdb, ok := objs["PodDisruptionBudget"][name]
				if !ok {
					t.Errorf("%s: no PodDisruptionBudget", name)
				} else if !selects(pdb.Spec.Selector.MatchLabels, d.Spec.Template.Metadata.Labels) {
					t.Errorf("%s: the PDB's selector %v does not select the pods %v", name, pdb.Spec.Selector.MatchLabels, d.Spec.Template.Metadata.Labels)
				}
				if role != "reconciler" {
					// Prometheus finds the metrics port, which the config
					// map makes the roles listen on, apart from the API's.
					a := d.Spec.Template.Metadata.Annotations
					port := ""
					for _, p := range d.Spec.Template.Spec.Containers[0].Ports {
						if p.Name == "metrics" {
							port = strconv.Itoa(p.ContainerPort)
						}
					}
					if a["prometheus.io/scrape"] != "true" || a["prometheus.io/port"] != port || port == "" ||
						objs["ConfigMap"]["whp"].Data["WHP_METRICS_ADDR"] != ":"+port {
						t.Errorf("%s: metrics port %q, annotations %v, WHP_METRICS_ADDR %q disagree", name, port, a, objs["ConfigMap"]["whp"].Data["WHP_METRICS_ADDR"])
					}
				}
				if role != "reconciler" {
					checkFlags(t, d, objs)
				}
				if role == "console" {
					// Its own settings and the secret files they name.
					c := d.Spec.Template.Spec.Containers[0]
					if len(c.EnvFrom) != 2 || c.EnvFrom[1].ConfigMapRef.Name != "whp-console" {
						t.Errorf("console: envFrom %+v, want whp then whp-console", c.EnvFrom)
					}
					cm := objs["ConfigMap"]["whp-console"].Data
					mounted := false
					for _, m := range c.VolumeMounts {
						mounted = mounted || (m.MountPath == "/var/run/whp-console" && strings.HasPrefix(cm["WHP_SESSION_KEY_FILE"], m.MountPath+"/"))
					}
					if !mounted || !strings.HasPrefix(cm["WHP_OIDC_REDIRECT_URL"], "https://") {
						t.Errorf("console: secrets not mounted where its config reads them (%+v, %v)", c.VolumeMounts, cm)
					}
				}
				if role == "reconciler" {
					// One writer of the catalog's state; no autoscaling.
					if d.Spec.Replicas == nil || *d.Spec.Replicas != 1 {
						t.Errorf("reconciler: replicas must be 1")
					}
					continue
				}
				hpa, ok := objs["HorizontalPodAutoscaler"][name]
				if !ok || hpa.Spec.ScaleTargetRef.Name != name || hpa.Spec.MinReplicas < 2 || hpa.Spec.MaxReplicas < hpa.Spec.MinReplicas {
					t.Errorf("%s: want an HPA on it with at least 2 replicas, got %+v", name, hpa.Spec)
				}
				if d.Spec.Replicas != nil {
					t.Errorf("%s: sets replicas while an HPA owns the count", name)
				}
			}
			checkNetworkPolicy(t, objs["NetworkPolicy"])
			cm := objs["ConfigMap"]["whp"]
			for k, v := range cm.Data {
				if strings.Contains(strings.ToLower(k), "secret") && v != "aws" {
					t.Errorf("config map carries %s: secrets belong in Secrets Manager", k)
				}
			}
			if cm.Data["WHP_STORE"] != "dynamodb" || cm.Data["WHP_KAFKA_SASL"] != "aws-msk-iam" || cm.Data["WHP_KAFKA_TLS"] != "true" {
				t.Errorf("config map does not select the AWS backends: %v", cm.Data)
			}
			if dir == "overlays/prod" {
				if cm.Data["WHP_ENV"] != "prod" {
					t.Errorf("prod overlay: WHP_ENV = %q", cm.Data["WHP_ENV"])
				}
				for _, d := range objs["Deployment"] {
					if d.Metadata.Namespace != "webhooks-prod" {
						t.Errorf("%s in namespace %q", d.Metadata.Name, d.Metadata.Namespace)
					}
					if img := d.Spec.Template.Spec.Containers[0].Image; img != "ghcr.io/whp-dev/whp:v0.1.0" {
						t.Errorf("%s: image %q", d.Metadata.Name, img)
					}
				}
			}
		})
	}
}

func checkPod(t *testing.T, d object, role string) {
	t.Helper()
	name := d.Metadata.Name
	ps := d.Spec.Template.Spec
	if !selects(d.Spec.Selector.MatchLabels, d.Spec.Template.Metadata.Labels) || d.Spec.Template.Metadata.Labels["app.kubernetes.io/component"] != role {
		t.Errorf("%s: selector %v vs pod labels %v", name, d.Spec.Selector.MatchLabels, d.Spec.Template.Metadata.Labels)
	}
	if ps.SecurityContext.RunAsNonRoot == nil || !*ps.SecurityContext.RunAsNonRoot || ps.SecurityContext.RunAsUser == 0 {
		t.Errorf("%s: pod may run as root", name)
	}
	// SIGTERM drains: the grace period must cover a delivery attempt
	// (--delivery-timeout 15s) plus committing offsets.
	if ps.TerminationGracePeriodSeconds < 30 {
		t.Errorf("%s: terminationGracePeriodSeconds %d is shorter than a drain", name, ps.TerminationGracePeriodSeconds)
	}
	if len(ps.Containers) != 1 {
		t.Fatalf("%s: %d containers", name, len(ps.Containers))
	}
	c := ps.Containers[0]
	command := map[string]string{"ingest": "ingest", "processor": "processor", "dispatcher": "dispatcher", "reconciler": "reconcile", "console": "console"}[role]
	if len(c.Args) == 0 || c.Args[0] != command {
		t.Errorf("%s: args %v do not run the %s role", name, c.Args, role)
	}
	if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Errorf("%s: liveness probe is not /healthz", name)
	}
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Errorf("%s: readiness probe is not /readyz", name)
	}
	sc := c.SecurityContext
	if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		t.Errorf("%s: container security context is not locked down: %+v", name, sc)
	}
	if c.Resources.Requests["cpu"] == "" || c.Resources.Requests["memory"] == "" || c.Resources.Limits["memory"] == "" {
		t.Errorf("%s: resources need cpu and memory requests and a memory limit, got %+v", name, c.Resources)
	}
	if len(c.EnvFrom) == 0 || c.EnvFrom[0].ConfigMapRef.Name != "whp" {
		t.Errorf("%s: does not read the whp config map", name)
	}
}

// checkFlags: the role reads the operators' flags where the whp config
// map says (WHP_FLAGS_FILE), from the whp-flags config map mounted there,
// whose flags.json is a flags document the roles accept.
func checkFlags(t *testing.T, d object, objs map[string]map[string]object) {
	t.Helper()
	path := objs["ConfigMap"]["whp"].Data["WHP_FLAGS_FILE"]
	dir, file := filepath.Split(path)
	mounted := ""
	for _, m := range d.Spec.Template.Spec.Containers[0].VolumeMounts {
		if m.MountPath+"/" == dir {
			mounted = m.Name
		}
	}
	from := ""
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Name == mounted && v.ConfigMap != nil {
			from = v.ConfigMap.Name
		}
	}
	doc, ok := objs["ConfigMap"][from].Data[file]
	if path == "" || mounted == "" || !ok {
		t.Errorf("%s: WHP_FLAGS_FILE %q is not a file of a config map mounted in the pod (volume %q, config map %q)", d.Metadata.Name, path, mounted, from)
		return
	}
	if _, err := flags.Parse([]byte(doc)); err != nil {
		t.Errorf("%s: the flags in config map %s: %v", d.Metadata.Name, from, err)
	}
}

func checkNetworkPolicy(t *testing.T, nps map[string]object) {
	t.Helper()
	deny, ok := nps["whp-default-deny"]
	if !ok || !slices.Contains(deny.Spec.PolicyTypes, "Ingress") || !slices.Contains(deny.Spec.PolicyTypes, "Egress") {
		t.Errorf("no default-deny NetworkPolicy for ingress and egress")
	}
	// Wherever egress is opened to the internet, the instance metadata
	// service stays closed.
	for name, np := range nps {
		for _, r := range np.Spec.Egress {
			for _, to := range r.To {
				if to.IPBlock != nil && to.IPBlock.CIDR == "0.0.0.0/0" && !slices.Contains(to.IPBlock.Except, "169.254.0.0/16") {
					t.Errorf("%s: egress to 0.0.0.0/0 does not except link-local (instance metadata)", name)
				}
			}
		}
	}
}

func selects(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// The Dockerfile builds a static binary onto a non-root distroless base.
// (Building the image needs Docker, which CI does not have; the settings
// that matter are checked here, and the binary's static build is the same
// `CGO_ENABLED=0 go build` the tests run.)
func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{
		"AS build",
		"CGO_ENABLED=0 go build",
		"FROM gcr.io/distroless/static",
		"USER 65532:65532",
		`ENTRYPOINT ["/whp"]`,
	} {
		if !strings.Contains(s, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
}
