//! `croupier up --tls`: every component serves HTTPS with the local CA's certificate, the
//! nodes serve only clients presenting it (the gateway and the control plane: mutual TLS),
//! players play through the gateway over HTTPS and WSS, the control plane watches every
//! component over TLS, and what is not TLS 1.2+ from a trusted peer gets no answer.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use croupier_loadtest::layout::Layout;
use serde_json::{Value, json};
use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};

/// An HTTPS client trusting `ca` (or the system's roots), presenting the local certificate
/// when `present` is given.
fn https_agent(ca: Option<&Path>, present: Option<&Path>) -> ureq::Agent {
    let pem = |path: &Path| std::fs::read(path).unwrap();
    let roots = match ca {
        Some(ca) => RootCerts::new_with_certs(&[Certificate::from_pem(&pem(ca)).unwrap()]),
        None => RootCerts::new_with_certs(&[]),
    };
    let identity = present.map(|tls| {
        ClientCert::new_with_certs(
            &[Certificate::from_pem(&pem(&tls.join("cert.pem"))).unwrap()],
            PrivateKey::from_pem(&pem(&tls.join("key.pem"))).unwrap(),
        )
    });
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = TlsConfig::builder()
        .root_certs(roots)
        .client_cert(identity)
        .unversioned_rustls_crypto_provider(provider)
        .build();
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(15)))
        .tls_config(tls)
        .build()
        .into()
}

fn call(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Result<(u16, Value), String> {
    let mut request = ureq::http::Request::builder().method(method).uri(url);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    if body.is_some() {
        request = request.header("content-type", "application/json").header(
            croupier_web::wire::IDEMPOTENCY_KEY,
            format!("tls-{}", url.len()),
        );
    }
    let request = request
        .body(body.map(Value::to_string).unwrap_or_default())
        .unwrap();
    let mut answer = agent.run(request).map_err(|e| e.to_string())?;
    let text = answer.body_mut().read_to_string().unwrap_or_default();
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Ok((answer.status().as_u16(), value))
}

/// Whether `openssl s_client` completes a handshake with `version` (`-tls1_1`…); security
/// level 0 so that OpenSSL itself offers the old versions.
fn openssl_handshake(port: u16, ca: &Path, version: &str) -> Option<bool> {
    let output = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            version,
        ])
        .args(["-cipher", "DEFAULT@SECLEVEL=0"])
        .arg("-CAfile")
        .arg(ca)
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    Some(output.status.success() && text.contains("Verify return code: 0 (ok)"))
}

#[test]
fn up_with_tls_serves_https_everywhere_and_the_nodes_only_to_their_peers() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let layout = Layout {
        tls: true,
        ..up_layout(&data)
    };
    let _up = Up::demo_quiet(&layout);
    let tls = data.join("tls");
    let ca = tls.join("ca.pem");
    wait_for("the local CA", || ca.exists());
    let trusting = https_agent(Some(&ca), None);
    let peer = https_agent(Some(&ca), Some(&tls));
    let players = layout.players_url();
    let admin = layout.admin_url();
    let control_url = layout.control_url();
    let node = layout.node_url(0);
    for (agent, url) in [
        (&peer, format!("{node}/readyz")),
        (&trusting, format!("{admin}/readyz")),
        (&trusting, format!("{control_url}/readyz")),
    ] {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let answer = call(agent, "GET", &url, None, None);
            if answer.as_ref().is_ok_and(|r| r.0 == 200) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{url}: {answer:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    wait_for("the gateway routing to every node over mutual TLS", || {
        call(
            &trusting,
            "GET",
            &format!("{admin}/admin/nodes"),
            Some(OPS_TOKEN),
            None,
        )
        .is_ok_and(|(_, body)| {
            body["nodes"]
                .as_array()
                .is_some_and(|n| n.iter().filter(|n| n["eligible"] == true).count() == 3)
        })
    });

    // The operator's tool over HTTPS, and told to check revocations against a list that is
    // not there: refused before anything is sent.
    let ctl = |crl: Option<&Path>| {
        let mut command = croupier();
        command
            .args(["ctl", "--url", &control_url, "--tls-ca"])
            .arg(&ca)
            .env("CROUPIER_OPS_TOKEN", OPS_TOKEN);
        if let Some(crl) = crl {
            command.arg("--tls-crl").arg(crl);
        }
        command.arg("status").output().unwrap()
    };
    let status = ctl(None);
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let refused = ctl(Some(&tls.join("no-such-crl.pem")));
    assert!(!refused.status.success(), "ctl checked against no list");
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("no-such-crl.pem"), "{said}");

    // A player signs in and bets through the gateway over HTTPS.
    let (status, session) = call(
        &trusting,
        "POST",
        &format!("{players}/api/v1/sessions"),
        None,
        Some(&json!({"player": "tls-alice"})),
    )
    .unwrap();
    assert_eq!(status, 201, "{session}");
    let token = session["token"].as_str().unwrap();
    let (status, round) = call(
        &trusting,
        "POST",
        &format!("{players}/api/v1/rounds"),
        Some(token),
        Some(&dice_bet(100)),
    )
    .unwrap();
    assert_eq!(status, 201, "{round}");

    // What is not TLS from a trusted peer gets no answer.
    let plain = get(
        &format!("http://{}/api/v1/lobby", layout.players_listen()),
        None,
    );
    assert!(plain.is_err(), "plain HTTP answered: {plain:?}");
    let untrusting = https_agent(None, None);
    let refused = call(
        &untrusting,
        "GET",
        &format!("{players}/api/v1/lobby"),
        None,
        None,
    );
    assert!(
        refused.is_err(),
        "a client not trusting the CA: {refused:?}"
    );
    let anonymous = call(&trusting, "GET", &format!("{node}/readyz"), None, None);
    assert!(
        anonymous.is_err(),
        "a node served a client without a certificate"
    );
    if let Some(tls11) = openssl_handshake(layout.gateway_port, &ca, "-tls1_1") {
        assert!(!tls11, "TLS 1.1 was accepted");
        assert_eq!(
            openssl_handshake(layout.gateway_port, &ca, "-tls1_2"),
            Some(true)
        );
        assert_eq!(
            openssl_handshake(layout.gateway_port, &ca, "-tls1_3"),
            Some(true)
        );
    }

    // The control plane reaches every node and the gateway over TLS.
    wait_for("the control plane seeing every target up", || {
        call(
            &trusting,
            "GET",
            &format!("{control_url}/api/v1/targets"),
            Some(OPS_TOKEN),
            None,
        )
        .is_ok_and(|(_, body)| {
            body["targets"]
                .as_array()
                .is_some_and(|t| t.len() >= 4 && t.iter().all(|t| t["up"] == true))
        })
    });

    // The audit, as a peer of the deployment, finds TLS 1.2+ only, no plain HTTP, certificates
    // good for two more weeks and HSTS on every address.
    let report = dir.path().join("audit.json");
    let mut audit = croupier();
    audit
        .args(["audit", "--gateway", &players, "--admin", &admin])
        .args(["--control", &control_url])
        .args((0..3).flat_map(|i| ["--node".to_owned(), layout.node_url(i)]))
        .arg("--data")
        .arg(&data)
        .arg("--tls-ca")
        .arg(&ca)
        .arg("--tls-cert")
        .arg(tls.join("cert.pem"))
        .arg("--tls-key")
        .arg(tls.join("key.pem"))
        .arg("--json")
        .arg(&report)
        .env("CROUPIER_OPS_TOKEN", OPS_TOKEN);
    // (This stack runs on the test suite's well-known token, which the audit fails: only
    // the TLS checks are looked at here; tests/audit.rs runs the whole audit.)
    let audited = audit.output().unwrap();
    let table = String::from_utf8_lossy(&audited.stdout);
    let report: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    for check in ["tls_versions", "tls_only", "tls_certificate", "tls_hsts"] {
        let passed = report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["check"] == check && f["status"] == "pass")
            .count();
        assert_eq!(passed, 6, "{check} on every address:\n{table}");
    }

    // Players through HTTPS and WSS under load, with the bank checks.
    let summary = dir.path().join("summary.json");
    let output = croupier()
        .args(["loadtest", "--target", &players, "--quiet"])
        .arg("--tls-ca")
        .arg(&ca)
        .arg("--summary-json")
        .arg(&summary)
        .args(["--rate", "20", "--players", "4", "--duration-secs", "2"])
        .args(["--check-ledger", &ledger(&data).as_arg()])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{text}");
    let summary: Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    assert!(
        summary["websockets"]["opened"].as_u64() >= Some(4),
        "{summary:#}"
    );
    assert_eq!(summary["websockets"]["failures"], 0, "{summary:#}");
    ledger_integrity(&data);
}
