package infra

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/zclconf/go-cty/cty"

	"github.com/whp-dev/whp/runtime/topic"
	"github.com/whp-dev/whp/store"
	"github.com/whp-dev/whp/store/dynamo"
)

var modules = []string{"network", "kms", "msk", "dynamodb", "lambda", "eks", "apigw", "secrets", "iam", "observability", "appconfig", "s3"}

var envs = []string{"dev", "stage", "prod"}

func module(t *testing.T, name string) stack { return load(t, filepath.Join("modules", name)) }

// Every .tf is formatted as terraform fmt would (hclwrite.Format).
func TestFormatted(t *testing.T) {
	err := filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".tf") {
			return err
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if got := hclwrite.Format(src); !bytes.Equal(got, src) {
			t.Errorf("%s is not formatted (terraform fmt)", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Each module is what terraform-aws-modules are: variables, outputs,
// versions and a README; every variable and output says what it is.
func TestModuleLayout(t *testing.T) {
	dirs, _ := os.ReadDir("modules")
	var got []string
	for _, d := range dirs {
		got = append(got, d.Name())
	}
	want := slices.Clone(modules)
	sort.Strings(want)
	if !slices.Equal(got, want) {
		t.Fatalf("modules %v, want %v", got, want)
	}
	for _, m := range modules {
		for _, f := range []string{"main.tf", "variables.tf", "outputs.tf", "versions.tf", "README.md"} {
			if _, err := os.Stat(filepath.Join("modules", m, f)); err != nil {
				t.Errorf("module %s has no %s", m, f)
			}
		}
		s := module(t, m)
		for _, v := range s.blocks("variable") {
			if _, ok := v.Body.Attributes["description"]; !ok {
				t.Errorf("%s: variable %s has no description", m, v.Labels[0])
			}
			if _, ok := v.Body.Attributes["type"]; !ok {
				t.Errorf("%s: variable %s has no type", m, v.Labels[0])
			}
		}
		for _, o := range s.blocks("output") {
			if _, ok := o.Body.Attributes["description"]; !ok {
				t.Errorf("%s: output %s has no description", m, o.Labels[0])
			}
		}
		if len(s.blocks("terraform")) != 1 {
			t.Errorf("%s: no terraform block (versions.tf)", m)
		}
	}
}

// Each environment is one stack in its own account (us-east-1, with a
// backup region), state in S3 with locking; the stack instantiates every
// module and names everything webhooks-{env}.
func TestEnvironments(t *testing.T) {
	st := load(t, "stack")
	for _, m := range modules {
		found := false
		for _, b := range st.blocks("module") {
			if e, ok := b.Body.Attributes["source"]; ok && constant(t, e.Expr).AsString() == "../modules/"+m {
				found = true
			}
		}
		if !found {
			t.Errorf("the stack does not instantiate module %s", m)
		}
	}
	if got := st.source(st.local(t, "name")); got != `"webhooks-${local.env}"` {
		t.Errorf("stack: local name = %s, want webhooks-${local.env}", got)
	}
	if got := st.source(st.local(t, "env")); got != "var.env" {
		t.Errorf("stack: local env = %s, want var.env", got)
	}
	for _, env := range envs {
		s := load(t, filepath.Join("envs", env))
		stacks := s.blocks("module", "stack")
		if len(stacks) != 1 || constant(t, stacks[0].Body.Attributes["source"].Expr).AsString() != "../../stack" {
			t.Fatalf("env %s does not instantiate the stack", env)
		}
		stack := stacks[0]
		if e, ok := attr(stack, "env"); !ok || s.source(e) != "local.env" {
			t.Errorf("env %s: the stack's env is not local.env", env)
		}
		var backend *hclsyntax.Block
		for _, tb := range s.blocks("terraform") {
			for _, b := range tb.Body.Blocks {
				if b.Type == "backend" && b.Labels[0] == "s3" {
					backend = b
				}
			}
		}
		if backend == nil {
			t.Fatalf("env %s: no s3 backend", env)
		}
		want(t, backend, "encrypt", cty.True)
		want(t, backend, "use_lockfile", cty.True)
		want(t, backend, "key", cty.StringVal("webhooks/"+env+".tfstate"))
		if got := constant(t, s.local(t, "env")).AsString(); got != env {
			t.Errorf("env %s: local env = %q", env, got)
		}
		if r := s.variableDefault(t, "region").AsString(); r != "us-east-1" {
			t.Errorf("env %s: region %s", env, r)
		}
		if s.variableDefault(t, "backup_region").AsString() == "" {
			t.Errorf("env %s: no backup region", env)
		}
		if !regexp.MustCompile(`^\d{12}$`).MatchString(s.variableDefault(t, "account_id").AsString()) {
			t.Errorf("env %s: account id", env)
		}
		for _, p := range s.blocks("provider", "aws") {
			if _, ok := p.Body.Attributes["allowed_account_ids"]; !ok {
				t.Errorf("env %s: a provider without allowed_account_ids could apply to another account", env)
			}
		}
		// The retention the env gives its stack stays within 30–90 days.
		e, ok := attr(stack, "log_retention_days")
		if !ok {
			t.Errorf("env %s: no log retention for the stack", env)
		} else if d, _ := constant(t, e).AsBigFloat().Int64(); d < 30 || d > 90 {
			t.Errorf("env %s: log retention %d days", env, d)
		}
	}
	// The stack hands that retention to every module that keeps logs.
	for _, b := range st.blocks("module") {
		if e, ok := b.Body.Attributes["log_retention_days"]; ok && st.source(e.Expr) != "var.log_retention_days" {
			t.Errorf("stack, module %s: log retention %s, want var.log_retention_days", b.Labels[0], st.source(e.Expr))
		}
	}
	if len(st.blocks("variable", "log_retention_days")[0].Body.Blocks) == 0 {
		t.Error("stack: log_retention_days has no 30–90 validation")
	}
}

func TestNetwork(t *testing.T) {
	s := module(t, "network")
	if c := s.variableDefault(t, "cidr").AsString(); !strings.HasSuffix(c, "/16") {
		t.Errorf("default VPC %s is not a /16", c)
	}
	if len(s.blocks("variable", "cidr")[0].Body.Blocks) == 0 {
		t.Error("the VPC CIDR has no validation")
	}
	for _, name := range []string{"public", "private"} {
		want(t, s.resource(t, "aws_subnet", name), "count", cty.NumberIntVal(3))
	}
	want(t, s.resource(t, "aws_nat_gateway", "this"), "count", cty.NumberIntVal(3))
	for _, gw := range []string{"dynamodb", "s3"} {
		e := s.resource(t, "aws_vpc_endpoint", gw)
		want(t, e, "vpc_endpoint_type", cty.StringVal("Gateway"))
		if src, _ := attr(e, "service_name"); !strings.HasSuffix(strings.Trim(s.source(src), `"`), "."+gw) {
			t.Errorf("gateway endpoint %s: service %s", gw, s.source(src))
		}
	}
	got := constant(t, s.local(t, "interface_endpoints"))
	for _, svc := range []string{"logs", "sts", "secretsmanager", "ecr.api", "ecr.dkr", "kms"} {
		if !got.HasElement(cty.StringVal(svc)).True() {
			t.Errorf("no interface endpoint for %s", svc)
		}
	}
	want(t, s.resource(t, "aws_vpc_endpoint", "interface"), "private_dns_enabled", cty.True)
}

func TestKMS(t *testing.T) {
	s := module(t, "kms")
	got := constant(t, s.local(t, "purposes"))
	for _, p := range []string{"msk", "dynamodb", "s3", "secrets", "parameters", "logs"} {
		if !got.HasElement(cty.StringVal(p)).True() {
			t.Errorf("no CMK for %s", p)
		}
	}
	want(t, s.resource(t, "aws_kms_key", "this"), "enable_key_rotation", cty.True)
}

func TestMSK(t *testing.T) {
	s := module(t, "msk")
	if got := constant(t, s.local(t, "clusters")); !got.HasElement(cty.StringVal("ingress")).True() || !got.HasElement(cty.StringVal("egress")).True() || got.LengthInt() != 2 {
		t.Errorf("clusters %#v, want ingress and egress", got)
	}
	if v := s.variableDefault(t, "kafka_version").AsString(); !strings.HasPrefix(v, "3.") {
		t.Errorf("Kafka %s, want 3.x", v)
	}
	c := s.resource(t, "aws_msk_cluster", "this")
	want(t, c, "number_of_broker_nodes", cty.NumberIntVal(3))
	want(t, c, "encryption_info.encryption_in_transit.client_broker", cty.StringVal("TLS"))
	want(t, c, "encryption_info.encryption_in_transit.in_cluster", cty.True)
	want(t, c, "client_authentication.sasl.iam", cty.True)
	want(t, c, "client_authentication.unauthenticated", cty.False)
	want(t, c, "logging_info.broker_logs.cloudwatch_logs.enabled", cty.True)
	want(t, c, "open_monitoring.prometheus.jmx_exporter.enabled_in_broker", cty.True)
	want(t, c, "open_monitoring.prometheus.node_exporter.enabled_in_broker", cty.True)
	if _, ok := attr(c, "encryption_info.encryption_at_rest_kms_key_arn"); !ok {
		t.Error("MSK storage is not encrypted with a CMK")
	}
	if v := s.variableDefault(t, "log_retention_days"); !within(v, 30, 90) {
		t.Errorf("broker log retention %#v", v)
	}
	props, _ := attr(s.resource(t, "aws_msk_configuration", "this"), "server_properties")
	src := s.source(props)
	for _, p := range []string{"auto.create.topics.enable=false", "default.replication.factor=3", "min.insync.replicas=2"} {
		if !strings.Contains(src, p) {
			t.Errorf("the MSK configuration lacks %s", p)
		}
	}
}

// The tables are the runtime's (store/dynamo.Tables): names, sort keys,
// indexes and TTL, with PITR, SSE-KMS, deletion protection and
// auto-scaling.
func TestDynamoDB(t *testing.T) {
	s := module(t, "dynamodb")
	tables := constant(t, s.local(t, "tables"))
	if tables.LengthInt() != len(dynamo.Tables) {
		t.Errorf("%d tables, the runtime has %d", tables.LengthInt(), len(dynamo.Tables))
	}
	for _, rt := range dynamo.Tables {
		if !tables.Type().HasAttribute(rt.Name) {
			t.Errorf("no table %s", rt.Name)
			continue
		}
		tv := tables.GetAttr(rt.Name)
		if tv.GetAttr("sort_key").True() != rt.SortKey || tv.GetAttr("ttl").True() != rt.TTL {
			t.Errorf("%s: sort key %v / ttl %v, runtime %v / %v", rt.Name, tv.GetAttr("sort_key").True(), tv.GetAttr("ttl").True(), rt.SortKey, rt.TTL)
		}
		idx := tv.GetAttr("indexes")
		if idx.LengthInt() != len(rt.Indexes) {
			t.Errorf("%s: %d indexes, runtime %d", rt.Name, idx.LengthInt(), len(rt.Indexes))
		}
		for _, ri := range rt.Indexes {
			if !idx.Type().HasAttribute(ri.Name) {
				t.Errorf("%s: no index %s", rt.Name, ri.Name)
				continue
			}
			i := idx.GetAttr(ri.Name)
			if i.GetAttr("hash").AsString() != ri.PartitionKey || i.GetAttr("range").AsString() != ri.SortKey {
				t.Errorf("%s/%s: keys %s/%s, runtime %s/%s", rt.Name, ri.Name, i.GetAttr("hash").AsString(), i.GetAttr("range").AsString(), ri.PartitionKey, ri.SortKey)
			}
		}
	}
	tb := s.resource(t, "aws_dynamodb_table", "this")
	want(t, tb, "hash_key", cty.StringVal(dynamo.AttrPK))
	want(t, tb, "point_in_time_recovery.enabled", cty.True)
	want(t, tb, "server_side_encryption.enabled", cty.True)
	want(t, tb, "deletion_protection_enabled", cty.True)
	if _, ok := attr(tb, "server_side_encryption.kms_key_arn"); !ok {
		t.Error("tables are not encrypted with the CMK")
	}
	if name, _ := attr(tb, "name"); s.source(name) != `"${var.name}-${each.key}"` {
		t.Errorf("table name %s, want ${var.name}-${each.key}", s.source(name))
	} else if store.TableName("dev", "x") != "webhooks-dev-x" {
		t.Errorf("the runtime names tables %s", store.TableName("dev", "x"))
	}
	if !strings.Contains(string(readFile(t, "modules/dynamodb/main.tf")), `attribute_name = "`+dynamo.AttrTTL+`"`) {
		t.Errorf("TTL is not on %s", dynamo.AttrTTL)
	}
	scaling := s.source(s.local(t, "scaling"))
	for _, m := range []string{"DynamoDBReadCapacityUtilization", "DynamoDBWriteCapacityUtilization"} {
		if !strings.Contains(scaling, m) {
			t.Errorf("no auto-scaling on %s", m)
		}
	}
	s.resource(t, "aws_appautoscaling_target", "this")
	want(t, s.resource(t, "aws_appautoscaling_policy", "this"), "policy_type", cty.StringVal("TargetTrackingScaling"))
}

func TestLambda(t *testing.T) {
	s := module(t, "lambda")
	f := s.resource(t, "aws_lambda_function", "this")
	want(t, f, "runtime", cty.StringVal("provided.al2023"))
	want(t, f, "architectures", cty.TupleVal([]cty.Value{cty.StringVal("arm64")}))
	want(t, f, "handler", cty.StringVal("bootstrap"))
	want(t, f, "tracing_config.mode", cty.StringVal("Active"))
	for _, a := range []string{"vpc_config.subnet_ids", "reserved_concurrent_executions", "logging_config.log_group"} {
		if _, ok := attr(f, a); !ok {
			t.Errorf("functions lack %s", a)
		}
	}
	roles := constant(t, s.local(t, "roles"))
	for _, r := range []string{"ingest", "processor", "dispatcher", "reconcile"} {
		if !roles.Type().HasAttribute(r) {
			t.Errorf("no function for %s", r)
		}
	}
	m := s.resource(t, "aws_lambda_event_source_mapping", "msk")
	want(t, m, "function_response_types", cty.TupleVal([]cty.Value{cty.StringVal("ReportBatchItemFailures")}))
	if !hasBlock(m, "destination_config.on_failure") {
		t.Error("the MSK mappings have no on-failure destination")
	}
	// The mappings' consumer groups are the ones the roles use on EKS, so
	// offsets carry over between runtimes.
	src := s.source(s.local(t, "mappings"))
	for _, g := range []string{`"whp-processor"`, `"whp-dispatcher"`} {
		if !strings.Contains(src, g) {
			t.Errorf("no mapping in group %s", g)
		}
	}
	if v := s.variableDefault(t, "log_retention_days"); !within(v, 30, 90) {
		t.Errorf("log retention %#v", v)
	}
	if got := constant(t, s.resource(t, "aws_scheduler_schedule", "this").Body.Attributes["for_each"].Expr); got.LengthInt() != 2 {
		t.Errorf("schedules for %#v, want the dispatcher and the reconciler", got)
	}
}

func TestEKS(t *testing.T) {
	s := module(t, "eks")
	c := s.resource(t, "aws_eks_cluster", "this")
	want(t, c, "vpc_config.endpoint_private_access", cty.True)
	want(t, c, "vpc_config.endpoint_public_access", cty.False)
	if !hasBlock(c, "encryption_config") {
		t.Error("Kubernetes secrets are not encrypted")
	}
	s.resource(t, "aws_eks_node_group", "this")
	s.resource(t, "aws_iam_openid_connect_provider", "this")
	want(t, s.resource(t, "aws_launch_template", "nodes"), "metadata_options.http_tokens", cty.StringVal("required"))
	// The nodes' egress: MSK's IAM listener, the endpoints, DNS, HTTPS.
	for _, r := range s.blocks("resource", "aws_vpc_security_group_egress_rule") {
		from, _ := attr(r, "from_port")
		port, _ := constant(t, from).AsBigFloat().Int64()
		if port != 9098 && port != 443 && port != 53 {
			t.Errorf("node egress %s opens port %d", r.Labels[1], port)
		}
	}
}

func TestAPIGateway(t *testing.T) {
	s := module(t, "apigw")
	want(t, s.resource(t, "aws_apigatewayv2_authorizer", "jwt"), "authorizer_type", cty.StringVal("JWT"))
	want(t, s.resource(t, "aws_apigatewayv2_route", "this"), "authorization_type", cty.StringVal("JWT"))
	want(t, s.resource(t, "aws_apigatewayv2_integration", "ingest"), "payload_format_version", cty.StringVal("2.0"))
	if s.variableDefault(t, "private").True() {
		t.Error("private by default")
	}
}

func TestSecretsAndArtifacts(t *testing.T) {
	if _, ok := attr(module(t, "secrets").resource(t, "aws_secretsmanager_secret", "this"), "kms_key_id"); !ok {
		t.Error("secrets are not encrypted with the CMK")
	}
	s := module(t, "s3")
	want(t, s.resource(t, "aws_s3_bucket_versioning", "artifacts"), "versioning_configuration.status", cty.StringVal("Enabled"))
	want(t, s.resource(t, "aws_s3_bucket_server_side_encryption_configuration", "artifacts"), "rule.apply_server_side_encryption_by_default.sse_algorithm", cty.StringVal("aws:kms"))
	pab := s.resource(t, "aws_s3_bucket_public_access_block", "artifacts")
	for _, a := range []string{"block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets"} {
		want(t, pab, a, cty.True)
	}
	a := module(t, "appconfig")
	a.resource(t, "aws_appconfig_application", "this")
	a.resource(t, "aws_appconfig_environment", "this")
	a.resource(t, "aws_appconfig_configuration_profile", "flags")
}

func TestObservability(t *testing.T) {
	s := module(t, "observability")
	for _, a := range []string{"retries", "dlq_growth", "partner_5xx", "consumer_lag", "pod_restarts", "lambda_errors", "lambda_throttles"} {
		s.resource(t, "aws_cloudwatch_metric_alarm", a)
	}
	s.resource(t, "aws_cloudwatch_dashboard", "this")
	s.resource(t, "aws_sns_topic", "alarms")
	s.resource(t, "aws_budgets_budget", "this")
	if v := s.variableDefault(t, "log_retention_days"); !within(v, 30, 90) {
		t.Errorf("log retention %#v", v)
	}
	// The whp metrics the alarms watch are the runtime's (EMF on Lambda).
	src := string(readFile(t, "modules/observability/main.tf"))
	for _, m := range []string{"whp.delivery.retries", "whp.deliveries", "whp.delivery.attempt.duration", "whp.delivery.end_to_end.duration", "whp.ingest.validations"} {
		if !strings.Contains(src, `"`+m+`"`) {
			t.Errorf("nothing watches %s", m)
		}
	}
}

// Every log group everywhere keeps 30 to 90 days.
func TestLogRetention(t *testing.T) {
	for _, m := range modules {
		s := module(t, m)
		for _, lg := range s.blocks("resource", "aws_cloudwatch_log_group") {
			e, ok := attr(lg, "retention_in_days")
			if !ok {
				t.Errorf("%s: log group %s keeps logs forever", m, lg.Labels[1])
				continue
			}
			src := s.source(e)
			if name, ok := strings.CutPrefix(src, "var."); ok {
				if v := s.variableDefault(t, name); !within(v, 30, 90) {
					t.Errorf("%s: log group %s retention default %#v", m, lg.Labels[1], v)
				}
				if len(s.blocks("variable", name)[0].Body.Blocks) == 0 && m == "observability" {
					t.Errorf("%s: %s has no 30–90 validation", m, name)
				}
				continue
			}
			if v := constant(t, e); !within(v, 30, 90) {
				t.Errorf("%s: log group %s retention %#v", m, lg.Labels[1], v)
			}
		}
	}
}

// IAM: a role per workload; DynamoDB and Kafka actions never on "*";
// DynamoDB from the VPC only; the topics and groups named as the runtime
// names them; the roles the deploy/ manifests annotate exist.
func TestIAM(t *testing.T) {
	s := module(t, "iam")
	workloads := s.local(t, "workloads").(*hclsyntax.ObjectConsExpr)
	names := map[string]bool{}
	for _, item := range workloads.Items {
		name := strings.Trim(s.source(item.KeyExpr), `"`)
		names[name] = true
		for _, st := range item.ValueExpr.(*hclsyntax.TupleConsExpr).Exprs {
			obj := st.(*hclsyntax.ObjectConsExpr)
			fields := map[string]string{}
			for _, f := range obj.Items {
				fields[strings.Trim(s.source(f.KeyExpr), `"`)] = s.source(f.ValueExpr)
			}
			actions, resources := fields["actions"], fields["resources"]
			kafkaOrDynamo := strings.Contains(actions, "dynamodb:") || strings.Contains(actions, "kafka-cluster:") ||
				strings.Contains(actions, "local.read") || strings.Contains(actions, "local.write") ||
				strings.Contains(actions, "local.connect") || strings.Contains(actions, "local.consume") ||
				strings.Contains(actions, "local.produce") || strings.Contains(actions, "local.group")
			if kafkaOrDynamo && regexp.MustCompile(`"\*"`).MatchString(resources) {
				t.Errorf("%s %s: a wildcard resource for DynamoDB or Kafka actions", name, fields["sid"])
			}
			dynamoAction := strings.Contains(actions, "dynamodb:") || strings.Contains(actions, "local.read") || strings.Contains(actions, "local.write")
			if dynamoAction && fields["vpc"] != "true" {
				t.Errorf("%s %s: DynamoDB without the VPC condition", name, fields["sid"])
			}
		}
	}
	for _, w := range []string{"ingest", "processor", "dispatcher", "reconciler", "console"} {
		if !names[w] {
			t.Errorf("no role for %s", w)
		}
	}
	src := s.source(workloads)
	for _, prefix := range []string{topic.IngressPrefix, topic.EgressPrefix, topic.RetryPrefix, topic.DLQPrefix} {
		if !strings.Contains(src, "/"+prefix+"*") {
			t.Errorf("no permission names the runtime's topics %s*", prefix)
		}
	}
	for _, g := range []string{"whp-processor", "whp-dispatcher", "whp-retry"} {
		if !strings.Contains(src, "/"+g+`"`) {
			t.Errorf("no permission names the consumer group %s", g)
		}
	}
	if got := s.source(s.resource(t, "aws_iam_role", "this").Body.Attributes["name"].Expr); got != `"${var.name}-${each.key}"` {
		t.Errorf("role names %s", got)
	}
	// The IRSA roles deploy/ annotates are these roles.
	sa := string(readFile(t, "../deploy/base/serviceaccounts.yaml"))
	for _, m := range regexp.MustCompile(`role/webhooks-dev-([a-z]+)`).FindAllStringSubmatch(sa, -1) {
		if !names[m[1]] {
			t.Errorf("deploy/ annotates role webhooks-dev-%s, which infra/ does not make", m[1])
		}
	}
	// Any policy document anywhere: no DynamoDB or Kafka action on "*".
	for _, m := range modules {
		for _, f := range module(t, m).files {
			for _, stmt := range regexp.MustCompile(`(?s)statement \{.*?\n  \}`).FindAllString(string(f.src), -1) {
				if (strings.Contains(stmt, `"dynamodb:`) || strings.Contains(stmt, `"kafka-cluster:`)) && strings.Contains(stmt, `resources = ["*"]`) {
					t.Errorf("%s: a policy statement grants DynamoDB or Kafka on *", f.path)
				}
			}
		}
	}
}

func within(v cty.Value, lo, hi int64) bool {
	if v.Type() != cty.Number {
		return false
	}
	n, _ := v.AsBigFloat().Int64()
	return n >= lo && n <= hi
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Every alarm names a section of docs/runbook.md that exists.
func TestRunbookCoversAlarms(t *testing.T) {
	runbook := string(readFile(t, "../docs/runbook.md"))
	src := string(readFile(t, "modules/observability/main.tf"))
	anchors := regexp.MustCompile(`docs/runbook\.md#([a-z0-9-]+)`).FindAllStringSubmatch(src, -1)
	if len(anchors) < 7 {
		t.Fatalf("%d alarms name a runbook section, want every one", len(anchors))
	}
	for _, a := range anchors {
		if !strings.Contains(runbook, "\n## "+a[1]+"\n") {
			t.Errorf("the runbook has no section %s", a[1])
		}
	}
}

// Every test the threat model cites exists.
func TestThreatModelTests(t *testing.T) {
	tm := string(readFile(t, "../docs/threat-model.md"))
	var all strings.Builder
	filepath.WalkDir("..", func(path string, d os.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(path, "_test.go") && !strings.Contains(path, "node_modules") {
			b, _ := os.ReadFile(path)
			all.Write(b)
		}
		return nil
	})
	tests := all.String()
	cited := regexp.MustCompile(`\bTest[A-Z][A-Za-z0-9]*|\bConformance\b`).FindAllString(tm, -1)
	if len(cited) < 19 {
		t.Fatalf("the threat model cites %d tests", len(cited))
	}
	for _, name := range cited {
		if name == "Conformance" {
			name = "TestConformance"
		}
		if !strings.Contains(tests, "func "+name+"(") {
			t.Errorf("the threat model cites %s, which does not exist", name)
		}
	}
}
