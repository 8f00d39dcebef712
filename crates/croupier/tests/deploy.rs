//! What the repository ships for running Croupier elsewhere, checked offline with the tools
//! operators use: the exported Prometheus rules pass `promtool check rules` and promtool's
//! own rule unit tests (a node down fires `down`; a gateway answering 5% errors pages on the
//! availability SLO); the systemd units pass `systemd-analyze verify`; the Kubernetes
//! manifests render with `kubectl kustomize` and every object validates strictly
//! (`kubernetes-validate`); the nodes' preStop hook, `croupier drain`, drains a real node.
//! scripts/test.sh installs the tools when they are missing.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tool(name: &str, package: &str) -> Command {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{name} is missing: run scripts/test.sh (or install {package})"
    );
    Command::new(name)
}

fn expect_success(what: &str, output: &Output) -> String {
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(
        output.status.success(),
        "{what} failed:\n{stdout}\n{stderr}"
    );
    format!("{stdout}{stderr}")
}

const PROMTOOL_TESTS: &str = r#"rule_files: [rules.yml]
evaluation_interval: 15s
tests:
  - interval: 15s
    input_series:
      - series: 'up{job="croupier-node",instance="n1:7001"}'
        values: '1 0 0 0 0'
      - series: 'up{job="croupier-node",instance="n2:7001"}'
        values: '1 1 1 1 1'
    alert_rule_test:
      - eval_time: 1m
        alertname: down
        exp_alerts:
          - exp_labels: {job: croupier-node, instance: "n1:7001", component: games, severity: major, source: scrape}
            exp_annotations: {summary: "down < 1 on n1:7001"}
  - interval: 15s
    input_series:
      - series: 'croupier_gateway_requests_total{job="croupier-gateway",instance="g1:8001",node="n1",status="200"}'
        values: '0+1900x300'
      - series: 'croupier_gateway_requests_total{job="croupier-gateway",instance="g1:8001",node="n1",status="503"}'
        values: '0+100x300'
    alert_rule_test:
      - eval_time: 75m
        alertname: slo_burn_page
        exp_alerts:
          - exp_labels: {slo: availability, component: games, severity: major}
            exp_annotations: {summary: "the availability SLO burns its error budget too fast"}
  - interval: 15s
    input_series:
      - series: 'pg_stat_database_numbackends{job="postgres",instance="db1:9187",datname="casino"}'
        values: '10 50 80 80 80 80 80 80'
      - series: 'pg_stat_database_numbackends{job="postgres",instance="db1:9187",datname="postgres"}'
        values: '5 5 5 5 5 5 5 5'
      - series: 'pg_settings_max_connections{job="postgres",instance="db1:9187"}'
        values: '100 100 100 100 100 100 100 100'
    alert_rule_test:
      - eval_time: 30s
        alertname: store_connections_high
        exp_alerts: []
      - eval_time: 90s
        alertname: store_connections_high
        exp_alerts:
          - exp_labels: {job: postgres, instance: "db1:9187", component: store, severity: minor, source: scrape}
            exp_annotations: {summary: "store_connections_high > 0.8 on db1:9187"}
"#;

#[test]
fn exported_prometheus_rules_pass_promtool_and_its_rule_tests() {
    let dir = tempfile::tempdir().unwrap();
    let (rules, dashboard) = (dir.path().join("rules.yml"), dir.path().join("dash.json"));
    let status = croupier()
        .args(["control", "export", "--prometheus-rules"])
        .arg(&rules)
        .arg("--grafana-dashboard")
        .arg(&dashboard)
        .status()
        .unwrap();
    assert!(status.success());
    let checked = tool("promtool", "Debian's prometheus")
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .unwrap();
    let said = expect_success("promtool check rules", &checked);
    assert!(said.contains("SUCCESS"), "{said}");
    std::fs::write(dir.path().join("tests.yml"), PROMTOOL_TESTS).unwrap();
    let tested = tool("promtool", "Debian's prometheus")
        .current_dir(dir.path())
        .args(["test", "rules", "tests.yml"])
        .output()
        .unwrap();
    expect_success("promtool test rules", &tested);
    let model: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&dashboard).unwrap()).unwrap();
    assert!(model["panels"].as_array().is_some_and(|p| p.len() >= 8));
}

#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    let dir = tempfile::tempdir().unwrap();
    let binary = env!("CARGO_BIN_EXE_croupier");
    let mut units = Vec::new();
    for entry in std::fs::read_dir(repo().join("deploy/systemd")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !(name.ends_with(".service") || name.ends_with(".socket")) {
            continue;
        }
        // The units name the installed binary; verify them against the one just built.
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("/usr/local/bin/croupier", binary);
        std::fs::write(dir.path().join(&name), text).unwrap();
        units.push(dir.path().join(name));
    }
    assert!(units.len() >= 5, "{units:?}");
    let output = tool("systemd-analyze", "systemd")
        .args(["verify", "--man=no"])
        .args(&units)
        .output()
        .unwrap();
    let said = expect_success("systemd-analyze verify", &output);
    // It exits 0 on unknown keys and bad values, only saying so: any word is a failure.
    assert!(said.trim().is_empty(), "systemd-analyze verify:\n{said}");
}

/// The manifests of `deploy/kubernetes/<layer>` as `kubectl kustomize` renders them.
fn kustomize(layer: &str) -> String {
    let rendered = tool("kubectl", "kubectl or Debian's kubernetes-client")
        .args(["kustomize"])
        .arg(repo().join("deploy/kubernetes").join(layer))
        .output()
        .unwrap();
    expect_success(&format!("kubectl kustomize {layer}"), &rendered);
    String::from_utf8_lossy(&rendered.stdout).into_owned()
}

#[test]
fn kubernetes_manifests_render_and_every_object_validates() {
    let dir = tempfile::tempdir().unwrap();
    for layer in ["base", "overlays/example"] {
        let yaml = kustomize(layer);
        assert!(yaml.contains("kind: StatefulSet"), "{yaml}");
        let file = dir.path().join(format!("{}.yaml", layer.replace('/', "-")));
        std::fs::write(&file, &yaml).unwrap();
        let checked = Command::new("python3")
            .arg(repo().join("deploy/kubernetes/validate.py"))
            .arg(&file)
            .output()
            .unwrap();
        let said = expect_success(&format!("validate.py {layer}"), &checked);
        assert!(said.contains("objects valid"), "{said}");
    }
}

/// A database URL may carry its password: every unit and manifest gives it to the process
/// in its environment, and none puts it on a command line, which every local user reads.
#[test]
fn no_unit_or_manifest_puts_a_database_url_on_a_command_line() {
    let mut command_lines = Vec::new();
    for entry in std::fs::read_dir(repo().join("deploy/systemd")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        command_lines.extend(
            text.lines()
                .filter(|l| l.starts_with("Exec"))
                .map(str::to_owned),
        );
    }
    let yaml = kustomize("overlays/example");
    command_lines.extend(
        yaml.lines()
            .filter(|l| l.trim_start().starts_with("- --"))
            .map(str::to_owned),
    );
    assert!(
        command_lines.iter().any(|l| l.contains("croupier node")),
        "{command_lines:?}"
    );
    for line in &command_lines {
        for url in [
            "--store",
            "--lease",
            "CROUPIER_STORE",
            "CROUPIER_CONTROL_LEASE",
            "postgres",
        ] {
            assert!(
                !line.contains(url),
                "a database URL on a command line: {line}"
            );
        }
    }
    assert!(
        yaml.contains("name: CROUPIER_STORE"),
        "the node's ledger is in its environment"
    );
}

#[test]
fn the_prestop_drain_stops_new_work_and_returns_once_idle() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), "node-1");
    let player = sign_in(&node, "before-the-drain");
    let started = std::time::Instant::now();
    let drained = croupier()
        .args(["drain", "--node", &node.base, "--deadline-s", "10"])
        .env("CROUPIER_OPS_TOKEN", OPS_TOKEN)
        .output()
        .unwrap();
    expect_success("croupier drain", &drained);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "an idle node is drained at once, not at the deadline: {:?}",
        started.elapsed()
    );
    let (status, ready) = get(&node.url("/readyz"), None).unwrap();
    assert_eq!((status, ready["reason"].as_str()), (503, Some("draining")));
    let (status, _) = post(
        &node.url("/api/v1/rounds"),
        Some(&player),
        Some("after-the-drain"),
        &dice_bet(100),
    )
    .unwrap();
    assert_eq!(status, 503, "a drained node takes no new round");
    let refused = croupier()
        .args(["drain", "--node", &node.base])
        .env(
            "CROUPIER_OPS_TOKEN",
            "not-the-ops-token-0000000000000000000000",
        )
        .output()
        .unwrap();
    assert!(!refused.status.success(), "a wrong token drains nothing");
    ledger_integrity(dir.path());
}
