package infra

import (
	"os"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

type workflow struct {
	Permissions map[string]string
	Jobs        map[string]struct {
		If          string `json:"if"`
		Environment string `json:"environment"`
		Strategy    struct {
			Matrix map[string][]string `json:"matrix"`
		} `json:"strategy"`
		Steps []struct {
			Uses string            `json:"uses"`
			Run  string            `json:"run"`
			With map[string]string `json:"with"`
		} `json:"steps"`
	} `json:"jobs"`
}

func readWorkflow(t *testing.T, name string) (workflow, string) {
	t.Helper()
	b, err := os.ReadFile("../.github/workflows/" + name)
	if err != nil {
		t.Fatal(err)
	}
	var w workflow
	if err := yaml.Unmarshal(b, &w); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return w, string(b)
}

// The pipelines: Terraform checked and planned per environment on pull
// requests through OIDC, applied on merge with prod and stage behind an
// approval; the image released to ECR for ArgoCD; a reusable catalog
// workflow validating against the base branch and posting the plan.
func TestWorkflows(t *testing.T) {
	tf, src := readWorkflow(t, "terraform.yml")
	if tf.Permissions["id-token"] != "write" {
		t.Error("terraform: no OIDC (id-token: write)")
	}
	plan := tf.Jobs["plan"]
	if got := strings.Join(plan.Strategy.Matrix["env"], ","); got != "dev,stage,prod" || !strings.Contains(plan.If, "pull_request") {
		t.Errorf("terraform plan: matrix %s, if %q", got, plan.If)
	}
	var runs []string
	oidc := false
	for _, s := range plan.Steps {
		runs = append(runs, s.Run)
		oidc = oidc || (strings.HasPrefix(s.Uses, "aws-actions/configure-aws-credentials") && s.With["role-to-assume"] != "")
	}
	for _, want := range []string{"terraform fmt -check", "terraform validate", "terraform plan"} {
		if !strings.Contains(strings.Join(runs, "\n"), want) {
			t.Errorf("terraform plan job does not run %s", want)
		}
	}
	if !oidc {
		t.Error("terraform plan does not assume a role through OIDC")
	}
	apply := tf.Jobs["apply"]
	if apply.Environment == "" || !strings.Contains(apply.If, "push") || !strings.Contains(src, "max-parallel: 1") {
		t.Error("terraform apply: not per environment (approvals), not on merge, or not one at a time")
	}
	rel, _ := readWorkflow(t, "release.yml")
	var uses []string
	for _, s := range rel.Jobs["image"].Steps {
		uses = append(uses, s.Uses)
	}
	if u := strings.Join(uses, " "); !strings.Contains(u, "amazon-ecr-login") || !strings.Contains(u, "build-push-action") {
		t.Errorf("release: %s", u)
	}
	_, csrc := readWorkflow(t, "catalog.yml")
	// ("on" is YAML 1.1's true to the parser: read the text.)
	if !strings.Contains(csrc, "\non:\n  workflow_call:") {
		t.Error("catalog workflow is not reusable (workflow_call)")
	}
	if !strings.Contains(csrc, "whp catalog validate") || !strings.Contains(csrc, "--base") || !strings.Contains(csrc, "whp reconcile --dry-run") {
		t.Error("catalog workflow: no validate against the base, or no plan")
	}
	argo, err := os.ReadFile("../deploy/argocd/application.yaml")
	if err != nil || !strings.Contains(string(argo), "path: deploy/overlays/prod") {
		t.Errorf("no ArgoCD application for the prod overlay: %v", err)
	}
	if _, err := os.Stat("../deploy/overlays/prod/kustomization.yaml"); err != nil {
		t.Error("the ArgoCD application points at a missing overlay")
	}
}
