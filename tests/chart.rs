//! The install paths: the Helm chart (`charts/etcd-operator`), the plain manifests (`config/`)
//! and the CRDs (`crds/`), checked with real `helm` and `kubectl` against a real kube-apiserver.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use std::time::Duration;

use etcd_operator::leader::{LeaderElectionConfig, LeaderElector, RunOutcome};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Api;
use kube::api::PostParams;
use serde_json::Value;
use support::kube::{KubeControlPlane, helm_command};

const CRD_NAME: &str = "etcdclusters.etcd.operator.dev";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn chart() -> String {
    repo().join("charts/etcd-operator").display().to_string()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// All YAML documents of a stream, empty ones dropped.
fn docs(yaml: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(yaml)
        .unwrap_or_else(|e| panic!("parsing YAML: {e}\n{yaml}"))
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn one<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found = of_kind(docs, kind);
    assert_eq!(found.len(), 1, "expected one {kind}, got {}", found.len());
    found[0]
}

/// `helm` without a cluster.
fn helm(args: &[&str]) -> String {
    let out = helm_command()
        .expect("helm")
        .args(args)
        .output()
        .expect("running helm");
    assert!(
        out.status.success(),
        "helm {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn template(extra: &[&str]) -> Vec<Value> {
    let chart = chart();
    let mut args = vec!["template", "eo", chart.as_str(), "--namespace", "ops"];
    args.extend_from_slice(extra);
    docs(&helm(&args))
}

/// The generator's CRDs, split into `(name, document text)`.
fn generated_crds() -> Vec<(String, String)> {
    let all = etcd_operator::api::crd_yaml().expect("crd yaml");
    let mut out = Vec::new();
    for text in all.split("\n---\n").flat_map(|p| p.split("---\n")) {
        if text.trim().is_empty() {
            continue;
        }
        let doc: Value = serde_saphyr::from_str(text).expect("generated CRD parses");
        let name = doc["metadata"]["name"]
            .as_str()
            .expect("CRD name")
            .to_string();
        let text = if text.ends_with('\n') {
            text.to_string()
        } else {
            format!("{text}\n")
        };
        out.push((name, text));
    }
    out
}

#[test]
fn every_crd_copy_equals_the_generator_output() {
    let generated = generated_crds();
    assert!(generated.iter().any(|(n, _)| n == CRD_NAME));
    let fix = "run hack/sync-crds.sh";
    for dir in [
        "crds",
        "charts/etcd-operator/files/crds",
        "config/crd/bases",
    ] {
        let dir = repo().join(dir);
        let files: BTreeSet<String> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}; {fix}", dir.display()))
            .map(|e| {
                e.expect("dir entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .filter(|n| n.ends_with(".yaml"))
            .collect();
        let expected: BTreeSet<String> =
            generated.iter().map(|(n, _)| format!("{n}.yaml")).collect();
        assert_eq!(files, expected, "CRD files in {}; {fix}", dir.display());
        for (name, text) in &generated {
            let path = dir.join(format!("{name}.yaml"));
            assert!(
                read(&path) == *text,
                "{} differs from `etcd-operator crd`; {fix}",
                path.display()
            );
        }
    }
    let kustomization = read(&repo().join("config/crd/Kustomization"));
    for (name, _) in &generated {
        assert!(
            kustomization.contains(&format!("bases/{name}.yaml")),
            "config/crd/Kustomization lacks {name}; {fix}"
        );
    }
}

#[test]
fn helm_lint_strict_is_clean_for_default_and_alternative_values() {
    let chart = chart();
    for extra in [
        &[][..],
        &[
            "--set",
            "metrics.serviceMonitor.enabled=true",
            "--set",
            "podAntiAffinity=hard",
        ][..],
        &[
            "--set",
            "leaderElection.enabled=false",
            "--set",
            "replicaCount=1",
            "--set",
            "crds.install=false",
        ][..],
    ] {
        let mut args = vec!["lint", "--strict", chart.as_str()];
        args.extend_from_slice(extra);
        let out = helm(&args);
        assert!(out.contains("0 chart(s) failed"), "{out}");
        assert!(!out.contains("[WARNING]"), "{out}");
    }
}

#[test]
fn chart_renders_ha_deployment_with_restricted_pod_security() {
    let docs = template(&[]);
    let deploy = one(&docs, "Deployment");
    assert_eq!(deploy["spec"]["replicas"], 2);
    let pod = &deploy["spec"]["template"]["spec"];
    let psc = &pod["securityContext"];
    assert_eq!(psc["runAsNonRoot"], true);
    assert_eq!(psc["runAsUser"], 65532);
    assert_eq!(psc["seccompProfile"]["type"], "RuntimeDefault");
    let c = &pod["containers"][0];
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(
        c["securityContext"]["capabilities"]["drop"],
        serde_json::json!(["ALL"])
    );
    let args: Vec<&str> = c["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for want in [
        "run",
        "--leader-elect",
        "--leader-election-lease=etcd-operator-leader",
        "--leader-election-lease-duration=15s",
        "--leader-election-renew-deadline=10s",
        "--leader-election-retry-period=2s",
        // The NetworkPolicy of spec.networkPolicy lets in the Pods the chart's selector picks.
        "--operator-pod-labels=app.kubernetes.io/name=etcd-operator,app.kubernetes.io/instance=eo",
    ] {
        assert!(args.contains(&want), "missing {want} in {args:?}");
    }
    let env: Vec<&str> = c["env"]
        .as_array()
        .expect("env")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert!(env.contains(&"POD_NAME") && env.contains(&"POD_NAMESPACE"));
    let anti =
        &pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"];
    assert_eq!(
        anti[0]["podAffinityTerm"]["topologyKey"],
        "kubernetes.io/hostname"
    );
    assert_eq!(pod["serviceAccountName"], "eo-etcd-operator");

    // The CRD is rendered (kept on uninstall) and the ServiceMonitor only on request.
    let crd = one(&docs, "CustomResourceDefinition");
    assert_eq!(
        crd["metadata"]["annotations"]["helm.sh/resource-policy"],
        "keep"
    );
    assert!(of_kind(&docs, "ServiceMonitor").is_empty());
    let with_sm = template(&["--set", "metrics.serviceMonitor.enabled=true"]);
    assert_eq!(
        one(&with_sm, "ServiceMonitor")["spec"]["endpoints"][0]["port"],
        "metrics"
    );
    let no_keep = template(&["--set", "crds.keep=false"]);
    assert!(one(&no_keep, "CustomResourceDefinition")["metadata"]["annotations"].is_null());
    let no_le = template(&["--set", "leaderElection.enabled=false"]);
    assert!(of_kind(&no_le, "Role").is_empty());
    let args =
        one(&no_le, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
    assert!(!args.contains("--leader-elect"), "{args}");
}

/// The long flags `etcd-operator run --help` lists.
fn run_flags() -> BTreeSet<String> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_etcd-operator"))
        .args(["run", "--help"])
        .output()
        .expect("running etcd-operator run --help");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with("--"))
        .filter_map(|l| l.split([' ', '[', '=', ',']).next())
        .map(str::to_string)
        .collect()
}

/// The operator container of a Deployment document.
fn operator_container(deploy: &Value) -> &Value {
    let c = &deploy["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["name"], "operator", "{deploy}");
    c
}

/// Checks a Deployment's operator container against the real binary: the subcommand is `run`,
/// every flag exists in `run --help`, the whole argument list parses (`--help` appended exits 0
/// only when every argument before it is valid), the metrics port is the one `--metrics-addr`
/// names and the probes hit it on `/healthz` and `/readyz`.
fn check_container_against_binary(what: &str, deploy: &Value, flags: &BTreeSet<String>) {
    let c = operator_container(deploy);
    let args: Vec<String> = c["args"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: no args"))
        .iter()
        .map(|a| a.as_str().expect("string arg").to_string())
        .collect();
    assert_eq!(
        args.first().map(String::as_str),
        Some("run"),
        "{what}: {args:?}"
    );
    for a in &args[1..] {
        let name = a.split('=').next().unwrap_or_default();
        assert!(
            name.starts_with("--") && flags.contains(name),
            "{what}: `{a}` is not a flag of `etcd-operator run` ({flags:?})"
        );
    }
    let mut parse = args.clone();
    parse.push("--help".into());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_etcd-operator"))
        .args(&parse)
        .output()
        .expect("running etcd-operator");
    assert!(
        out.status.success(),
        "{what}: the binary refuses {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let addr = args
        .iter()
        .find_map(|a| a.strip_prefix("--metrics-addr="))
        .unwrap_or_else(|| panic!("{what}: no --metrics-addr in {args:?}"));
    let port: u64 = addr
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    let ports = c["ports"].as_array().expect("ports");
    let metrics = ports
        .iter()
        .find(|p| p["name"] == "metrics")
        .unwrap_or_else(|| panic!("{what}: no metrics port"));
    assert_eq!(metrics["containerPort"].as_u64(), Some(port), "{what}");
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        assert_eq!(c[probe]["httpGet"]["path"], path, "{what}: {probe}");
        assert_eq!(c[probe]["httpGet"]["port"], "metrics", "{what}: {probe}");
    }
}

#[test]
fn every_flag_the_chart_and_config_pass_exists_in_the_binary() {
    let flags = run_flags();
    for want in [
        "--metrics-addr",
        "--log-format",
        "--leader-elect",
        "--namespace",
    ] {
        assert!(flags.contains(want), "run --help lacks {want}: {flags:?}");
    }
    for (what, extra) in [
        ("chart defaults", &[][..]),
        (
            "chart without leader election, text logs, other port",
            &[
                "--set",
                "leaderElection.enabled=false",
                "--set",
                "logFormat=text",
                "--set",
                "metrics.port=9090",
            ][..],
        ),
        (
            "chart with extraArgs",
            &["--set", "extraArgs[0]=--namespace=apps"][..],
        ),
    ] {
        let docs = template(extra);
        check_container_against_binary(what, one(&docs, "Deployment"), &flags);
    }
    let config = docs_of_file("config/manager/manager.yaml");
    check_container_against_binary("config/manager", one(&config, "Deployment"), &flags);
}

/// The exact rules the operator needs, as (group, resource, verbs): what
/// `src/runtime/kubernetes/*.rs` calls (see the comments in the ClusterRole).
fn expected_cluster_rules() -> BTreeSet<(String, String, BTreeSet<String>)> {
    let want: Vec<(&str, &str, &[&str])> = vec![
        (
            "etcd.operator.dev",
            "etcdclusters",
            &["list", "watch", "patch"],
        ),
        ("etcd.operator.dev", "etcdclusters/status", &["patch"]),
        ("etcd.operator.dev", "etcdclusters/finalizers", &["update"]),
        (
            "",
            "pods",
            &["get", "list", "watch", "create", "patch", "delete"],
        ),
        (
            "",
            "persistentvolumeclaims",
            &["list", "watch", "create", "patch", "delete"],
        ),
        (
            "",
            "services",
            &["list", "watch", "create", "patch", "delete"],
        ),
        (
            "policy",
            "poddisruptionbudgets",
            &["list", "watch", "create", "patch"],
        ),
        (
            "networking.k8s.io",
            "networkpolicies",
            &["create", "patch", "delete"],
        ),
        ("events.k8s.io", "events", &["create", "patch"]),
        ("", "secrets", &["get", "create", "patch"]),
    ];
    want.into_iter()
        .map(|(g, r, v)| {
            (
                g.to_string(),
                r.to_string(),
                v.iter().map(|s| s.to_string()).collect(),
            )
        })
        .collect()
}

/// Flattens RBAC rules into (group, resource, verbs) and fails on any wildcard or resourceName.
fn flatten_rules(role: &Value) -> BTreeSet<(String, String, BTreeSet<String>)> {
    let mut out = BTreeSet::new();
    for rule in role["rules"].as_array().expect("rules") {
        let list = |k: &str| -> Vec<String> {
            rule[k]
                .as_array()
                .unwrap_or_else(|| panic!("rule without {k}: {rule}"))
                .iter()
                .map(|v| v.as_str().expect("string").to_string())
                .collect()
        };
        let (groups, resources, verbs) = (list("apiGroups"), list("resources"), list("verbs"));
        for s in groups.iter().chain(&resources).chain(&verbs) {
            assert!(!s.contains('*'), "wildcard in {rule}");
        }
        assert!(rule.get("nonResourceURLs").is_none(), "{rule}");
        for g in &groups {
            for r in &resources {
                out.insert((g.clone(), r.clone(), verbs.iter().cloned().collect()));
            }
        }
    }
    out
}

#[test]
fn cluster_role_is_least_privilege_and_identical_in_chart_and_config() {
    let docs = template(&[]);
    let chart_rules = flatten_rules(one(&docs, "ClusterRole"));
    assert_eq!(chart_rules, expected_cluster_rules());
    let config = docs_of_file("config/rbac/cluster_role.yaml");
    assert_eq!(flatten_rules(one(&config, "ClusterRole")), chart_rules);

    let lease_rules = |role: &Value| flatten_rules(role);
    let want: BTreeSet<_> = [(
        "coordination.k8s.io".to_string(),
        "leases".to_string(),
        ["get", "create", "update"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
    )]
    .into();
    assert_eq!(lease_rules(one(&docs, "Role")), want);
    assert_eq!(
        lease_rules(one(
            &docs_of_file("config/rbac/leader_election_role.yaml"),
            "Role"
        )),
        want
    );
}

/// With `rbac.secretNamespaces`, Secrets are readable in those namespaces only: the ClusterRole
/// loses its secrets rule and each namespace gets a Role with it (and a binding to the
/// operator's ServiceAccount); `rbac.readSecrets=false` grants no Secret at all.
#[test]
fn secret_access_can_be_narrowed_to_namespaces_or_dropped() {
    let docs = template(&["--set", "rbac.secretNamespaces={team-a,team-b}"]);
    let secrets: (String, String, BTreeSet<String>) = (
        String::new(),
        "secrets".into(),
        ["get", "create", "patch"].map(String::from).into(),
    );
    assert!(!flatten_rules(one(&docs, "ClusterRole")).contains(&secrets));
    let roles: Vec<&Value> = of_kind(&docs, "Role")
        .into_iter()
        .filter(|r| r["metadata"]["name"] == "eo-etcd-operator-secrets")
        .collect();
    let namespaces: Vec<&str> = roles
        .iter()
        .map(|r| r["metadata"]["namespace"].as_str().expect("namespace"))
        .collect();
    assert_eq!(namespaces, ["team-a", "team-b"]);
    for r in &roles {
        assert_eq!(flatten_rules(r), [secrets.clone()].into());
    }
    let bindings: Vec<&Value> = of_kind(&docs, "RoleBinding")
        .into_iter()
        .filter(|b| b["metadata"]["name"] == "eo-etcd-operator-secrets")
        .collect();
    assert_eq!(bindings.len(), 2);
    assert!(
        bindings
            .iter()
            .all(|b| b["subjects"][0]["name"] == "eo-etcd-operator")
    );
    let none = template(&["--set", "rbac.readSecrets=false"]);
    assert!(!flatten_rules(one(&none, "ClusterRole")).contains(&secrets));
    assert!(
        of_kind(&none, "Role")
            .iter()
            .all(|r| r["metadata"]["name"] != "eo-etcd-operator-secrets")
    );
}

fn docs_of_file(rel: &str) -> Vec<Value> {
    docs(&read(&repo().join(rel)))
}

fn kubectl_json(cp: &KubeControlPlane, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.extend_from_slice(&["-o", "json"]);
    let out = cp.kubectl(&a).expect("kubectl get");
    serde_json::from_str(&out).expect("kubectl json")
}

fn exists(cp: &KubeControlPlane, args: &[&str]) -> bool {
    let mut a = args.to_vec();
    a.push("--ignore-not-found");
    a.extend_from_slice(&["-o", "name"]);
    !cp.kubectl(&a).expect("kubectl get").trim().is_empty()
}

fn can_i(cp: &KubeControlPlane, sa: &str, verb_resource_ns: &[&str]) -> bool {
    let mut a = vec!["auth", "can-i", "--as", sa];
    a.extend_from_slice(verb_resource_ns);
    // `can-i` exits 1 for "no"; the answer is on stdout either way.
    match cp.kubectl(&a) {
        Ok(out) => out.trim() == "yes",
        Err(e) => {
            let text = e.to_string();
            assert!(text.contains("no"), "unexpected can-i failure: {text}");
            false
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn helm_install_upgrade_and_uninstall_against_a_real_apiserver() {
    let cp = KubeControlPlane::start().await.expect("control plane");
    let chart = chart();
    cp.helm(&[
        "install",
        "eo",
        &chart,
        "--namespace",
        "ops",
        "--create-namespace",
    ])
    .expect("helm install");

    for obj in [
        ["deployment", "eo-etcd-operator", "-n", "ops"],
        ["serviceaccount", "eo-etcd-operator", "-n", "ops"],
        ["service", "eo-etcd-operator-metrics", "-n", "ops"],
        ["poddisruptionbudget", "eo-etcd-operator", "-n", "ops"],
        ["role", "eo-etcd-operator-leader-election", "-n", "ops"],
        [
            "rolebinding",
            "eo-etcd-operator-leader-election",
            "-n",
            "ops",
        ],
    ] {
        assert!(
            exists(&cp, &["get", obj[0], obj[1], obj[2], obj[3]]),
            "{obj:?}"
        );
    }
    for obj in [
        ["clusterrole", "eo-etcd-operator"],
        ["clusterrolebinding", "eo-etcd-operator"],
        ["crd", CRD_NAME],
    ] {
        assert!(exists(&cp, &["get", obj[0], obj[1]]), "{obj:?}");
    }
    let crd = kubectl_json(&cp, &["get", "crd", CRD_NAME]);
    assert_eq!(
        crd["metadata"]["annotations"]["helm.sh/resource-policy"],
        "keep"
    );
    let deploy = kubectl_json(&cp, &["get", "deployment", "eo-etcd-operator", "-n", "ops"]);
    assert_eq!(deploy["spec"]["replicas"], 2);

    // RBAC as the apiserver enforces it for the chart's ServiceAccount.
    let sa = "system:serviceaccount:ops:eo-etcd-operator";
    for (q, want) in [
        (&["create", "pods", "-n", "anywhere"][..], true),
        (
            &["delete", "persistentvolumeclaims", "-n", "anywhere"][..],
            true,
        ),
        (&["patch", "services", "-n", "anywhere"][..], true),
        (
            &["create", "poddisruptionbudgets.policy", "-n", "x"][..],
            true,
        ),
        (&["watch", "etcdclusters.etcd.operator.dev", "-A"][..], true),
        (
            &["patch", "etcdclusters.etcd.operator.dev/status", "-n", "x"][..],
            true,
        ),
        (&["create", "events.events.k8s.io", "-n", "x"][..], true),
        (
            &["update", "leases.coordination.k8s.io", "-n", "ops"][..],
            true,
        ),
        (
            &["update", "leases.coordination.k8s.io", "-n", "other"][..],
            false,
        ),
        (
            &["delete", "etcdclusters.etcd.operator.dev", "-n", "x"][..],
            false,
        ),
        (&["get", "secrets", "-n", "ops"][..], true),
        (&["list", "secrets", "-n", "ops"][..], false),
        (&["create", "deployments.apps", "-n", "ops"][..], false),
        (&["update", "pods", "-n", "x"][..], false),
        // A member's own Service goes with a member scaled away; the PDB never by the operator.
        (&["delete", "services", "-n", "x"][..], true),
        (
            &["delete", "poddisruptionbudgets.policy", "-n", "x"][..],
            false,
        ),
        (
            &["update", "etcdclusters.etcd.operator.dev", "-n", "x"][..],
            false,
        ),
        (&["create", "events", "-n", "x"][..], false),
        (
            &["delete", "networkpolicies.networking.k8s.io", "-n", "x"][..],
            true,
        ),
        (
            &["list", "networkpolicies.networking.k8s.io", "-n", "x"][..],
            false,
        ),
    ] {
        assert_eq!(can_i(&cp, sa, q), want, "can-i {q:?}");
    }

    // Leader election with the chart ServiceAccount's own token (TokenRequest), under RBAC: it
    // may hold the Lease in the release namespace and nowhere else.
    let token = service_account_token(&cp, "ops", "eo-etcd-operator").await;
    let as_sa = client_with_token(&cp, &token).await;
    let quick = |ns: &str| {
        LeaderElectionConfig::new(ns, "etcd-operator-leader", "eo-etcd-operator-0").timings(
            Duration::from_secs(3),
            Duration::from_secs(2),
            Duration::from_millis(500),
        )
    };
    let elector = LeaderElector::new(as_sa.clone(), quick("ops")).expect("elector");
    let mut status = elector.status();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(elector.run(std::future::pending::<()>, async move {
        let _ = stopped.await;
    }));
    tokio::time::timeout(Duration::from_secs(90), status.wait_for(|s| s.leading))
        .await
        .expect("the ServiceAccount leads in its namespace")
        .expect("status channel");
    let _ = stop.send(());
    assert_eq!(
        run.await.expect("joined").expect("released cleanly"),
        RunOutcome::Shutdown
    );
    let api: Api<Lease> = Api::namespaced(as_sa.clone(), "default");
    let denied = api
        .get_opt("etcd-operator-leader")
        .await
        .expect_err("forbidden elsewhere");
    assert!(denied.to_string().contains("forbidden"), "{denied}");

    // A cluster made while the chart is installed, to see what uninstall keeps.
    let sample = repo().join("config/samples/etcdcluster.yaml");
    cp.kubectl(&["apply", "-n", "ops", "-f", &sample.display().to_string()])
        .expect("sample applies");

    // Upgrade with changed values and a changed CRD (a chart copy whose CRD has a new short name).
    let tmp = tempfile::tempdir().expect("tmp");
    let copy = tmp.path().join("etcd-operator");
    copy_dir(Path::new(&chart), &copy);
    let crd_file = copy.join(format!("files/crds/{CRD_NAME}.yaml"));
    let text = read(&crd_file);
    let changed = text.replacen("    - etcd\n", "    - etcd\n    - etcdc\n", 1);
    assert_ne!(text, changed, "the CRD has the short name `etcd` to extend");
    std::fs::write(&crd_file, changed).expect("write");
    cp.helm(&[
        "upgrade",
        "eo",
        &copy.display().to_string(),
        "--namespace",
        "ops",
        "--set",
        "replicaCount=3",
        "--set",
        "leaderElection.leaseDuration=20s",
        "--set",
        "metrics.service.enabled=false",
    ])
    .expect("helm upgrade");
    let deploy = kubectl_json(&cp, &["get", "deployment", "eo-etcd-operator", "-n", "ops"]);
    assert_eq!(deploy["spec"]["replicas"], 3);
    assert!(
        deploy["spec"]["template"]["spec"]["containers"][0]["args"]
            .to_string()
            .contains("--leader-election-lease-duration=20s")
    );
    assert!(!exists(
        &cp,
        &["get", "service", "eo-etcd-operator-metrics", "-n", "ops"]
    ));
    let crd = kubectl_json(&cp, &["get", "crd", CRD_NAME]);
    assert!(
        crd["spec"]["names"]["shortNames"]
            .to_string()
            .contains("etcdc"),
        "helm upgrade updates the CRD: {}",
        crd["spec"]["names"]
    );
    let history = cp.helm(&["history", "eo", "-n", "ops"]).expect("history");
    assert!(
        history.contains("upgrade") || history.contains("Upgrade"),
        "{history}"
    );

    // Uninstall: the operator's objects go, the CRD and the EtcdCluster stay.
    let out = cp
        .helm(&["uninstall", "eo", "--namespace", "ops"])
        .expect("helm uninstall");
    assert!(out.contains("uninstalled"), "{out}");
    assert!(!exists(
        &cp,
        &["get", "deployment", "eo-etcd-operator", "-n", "ops"]
    ));
    assert!(!exists(&cp, &["get", "clusterrole", "eo-etcd-operator"]));
    assert!(exists(&cp, &["get", "crd", CRD_NAME]), "the CRD is kept");
    assert!(
        exists(&cp, &["get", "etcdclusters", "example", "-n", "ops"]),
        "the EtcdCluster is kept"
    );

    // A reinstall adopts the kept CRD.
    cp.helm(&["install", "eo", &chart, "--namespace", "ops"])
        .expect("reinstall over the kept CRD");
    assert!(exists(
        &cp,
        &["get", "deployment", "eo-etcd-operator", "-n", "ops"]
    ));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir") {
        let e = e.expect("entry");
        let dest = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).expect("copy");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_applies_crds_and_the_config_manifests() {
    let cp = KubeControlPlane::start().await.expect("control plane");
    let path = |rel: &str| repo().join(rel).display().to_string();

    // CRDs alone, as `kubectl apply -f crds/` (server-side dry run first, then for real).
    let out = cp
        .kubectl(&["apply", "--dry-run=server", "-f", &path("crds")])
        .expect("dry run of crds/");
    assert!(out.contains(CRD_NAME), "{out}");
    assert!(
        !exists(&cp, &["get", "crd", CRD_NAME]),
        "dry run stored nothing"
    );
    cp.kubectl(&["apply", "-f", &path("crds")])
        .expect("apply crds/");
    cp.kubectl(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        &format!("crd/{CRD_NAME}"),
    ])
    .expect("CRD established");

    // Everything through kustomize (server-side dry run, then for real; re-applying the CRD
    // from config/ over the one from crds/ is a no-op). A server-side dry run cannot create the
    // namespace its namespaced objects need, so the namespace is applied first.
    cp.kubectl(&["apply", "-f", &path("config/manager/namespace.yaml")])
        .expect("namespace");
    cp.kubectl(&["apply", "--dry-run=server", "-k", &path("config/default")])
        .expect("dry run of config/default");
    assert!(!exists(
        &cp,
        &[
            "get",
            "deployment",
            "etcd-operator",
            "-n",
            "etcd-operator-system"
        ]
    ));
    let out = cp
        .kubectl(&["apply", "-k", &path("config/default")])
        .expect("apply -k config/default");
    for what in [
        "serviceaccount/etcd-operator",
        "clusterrole.rbac.authorization.k8s.io/etcd-operator",
        "deployment.apps/etcd-operator",
        "service/etcd-operator-metrics",
    ] {
        assert!(out.contains(what), "{what} missing from:\n{out}");
    }
    let sa = "system:serviceaccount:etcd-operator-system:etcd-operator";
    assert!(can_i(&cp, sa, &["create", "pods", "-n", "x"]));
    assert!(can_i(
        &cp,
        sa,
        &[
            "create",
            "leases.coordination.k8s.io",
            "-n",
            "etcd-operator-system"
        ]
    ));
    assert!(can_i(&cp, sa, &["get", "secrets", "-n", "x"]));
    assert!(!can_i(&cp, sa, &["list", "secrets", "-n", "x"]));

    // The samples are valid against the CRD (server-side dry run, then stored).
    cp.kubectl(&[
        "apply",
        "--dry-run=server",
        "-n",
        "default",
        "-k",
        &path("config/samples"),
    ])
    .expect("samples dry run");
    cp.kubectl(&[
        "apply",
        "-n",
        "default",
        "-f",
        &path("config/samples/etcdcluster.yaml"),
    ])
    .expect("sample");
    let c = kubectl_json(&cp, &["get", "etcdcluster", "example", "-n", "default"]);
    assert_eq!(c["spec"]["replicas"], 3);

    // The folders also apply as plain manifests with -f (their extensionless `Kustomization`
    // files are skipped by kubectl).
    let out = cp
        .kubectl(&[
            "apply",
            "-f",
            &path("crds"),
            "-f",
            &path("config/manager/namespace.yaml"),
            "-f",
            &path("config/rbac"),
            "-f",
            &path("config/manager"),
        ])
        .expect("apply -f of the config folders (the README's command)");
    for what in [
        "customresourcedefinition.apiextensions.k8s.io/etcdclusters.etcd.operator.dev",
        "role.rbac.authorization.k8s.io/etcd-operator-leader-election",
        "deployment.apps/etcd-operator",
        "poddisruptionbudget.policy/etcd-operator",
    ] {
        assert!(out.contains(what), "{what} missing from:\n{out}");
    }
    cp.kubectl(&[
        "apply",
        "--dry-run=server",
        "-n",
        "default",
        "-f",
        &path("config/samples"),
    ])
    .expect("apply -f config/samples");
}

/// A token of a ServiceAccount from the TokenRequest API (what a pod's projected token is).
async fn service_account_token(cp: &KubeControlPlane, ns: &str, name: &str) -> String {
    let api: Api<ServiceAccount> = Api::namespaced(cp.client().await.expect("client"), ns);
    let req = TokenRequest {
        spec: TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..TokenRequestSpec::default()
        },
        ..TokenRequest::default()
    };
    api.create_token_request(name, &PostParams::default(), &req)
        .await
        .expect("TokenRequest")
        .status
        .expect("token status")
        .token
}

/// A client of the control plane authenticated with `token` instead of the admin's.
async fn client_with_token(cp: &KubeControlPlane, token: &str) -> kube::Client {
    let text = read(cp.kubeconfig()).replace(cp.admin_token(), token);
    let kc = kube::config::Kubeconfig::from_yaml(&text).expect("kubeconfig");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .expect("config");
    kube::Client::try_from(cfg).expect("client")
}

#[test]
fn chart_refuses_invalid_values() {
    let chart = chart();
    for (bad, why) in [
        (
            &["--set", "podAntiAffinity=sideways"][..],
            "podAntiAffinity",
        ),
        (
            &["--set", "leaderElection.leaseDuration=15 seconds"][..],
            "leaseDuration",
        ),
        (&["--set", "replicaCount=0"][..], "replicaCount"),
        (
            &[
                "--set",
                "metrics.serviceMonitor.enabled=true",
                "--set",
                "metrics.service.enabled=false",
            ][..],
            "metrics.service.enabled",
        ),
    ] {
        let mut args = vec!["template", "eo", chart.as_str()];
        args.extend_from_slice(bad);
        let out = helm_command()
            .expect("helm")
            .args(&args)
            .output()
            .expect("running helm");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{bad:?} was accepted");
        assert!(err.contains(why), "{bad:?}: {err}");
    }
}
