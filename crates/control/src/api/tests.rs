//! The API's behaviour through the router, on a real state file: every documented
//! operation routed and guarded, leadership, rollouts, drills, silences, dashboard sessions.

use super::*;
use serde_json::Value;

use crate::now_ms;
use axum::body::Body;
use tower::ServiceExt;

const TOKEN: &str = "a-test-token-that-is-long-enough-000000";

fn control(dir: &std::path::Path) -> Arc<Control> {
    control_leading(dir, crate::lease::Leadership::sole())
}

fn control_leading(
    dir: &std::path::Path,
    leadership: Arc<crate::lease::Leadership>,
) -> Arc<Control> {
    control_of(dir, leadership, Vec::new())
}

fn control_of(
    dir: &std::path::Path,
    leadership: Arc<crate::lease::Leadership>,
    targets: Vec<croupier_monitor::engine::Target>,
) -> Arc<Control> {
    control_subscribed(dir, leadership, targets, None)
}

fn control_subscribed(
    dir: &std::path::Path,
    leadership: Arc<crate::lease::Leadership>,
    targets: Vec<croupier_monitor::engine::Target>,
    subscriptions: Option<crate::subscriptions::Subscriptions>,
) -> Arc<Control> {
    Control::new(
        crate::ControlConfig {
            reserve: None,
            targets,
            check_url: None,
            test_players: Default::default(),
            webhooks: Vec::new(),
            ops_token: TOKEN.into(),
            rules: croupier_monitor::engine::default_rules(),
            slos: croupier_monitor::slo::default_slos(0.999),
            sla_credits: Vec::new(),
            pager: None,
            subscriptions,
            update: Default::default(),
            backup: None,
            leadership,
            shared_alert_log: None,
            lockout: Default::default(),
            client_tls: Default::default(),
            secure_cookies: false,
        },
        crate::state::State::open(&dir.join("control.db")).unwrap(),
    )
    .unwrap()
}

async fn call(
    router: &Router,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (StatusCode, Value) {
    let mut request = axum::http::Request::builder().method(method).uri(path);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let (status, bytes) = answer(router, request, body).await;
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Sends `request` with `body` to the router: the status and the body's bytes.
async fn answer(
    router: &Router,
    request: axum::http::request::Builder,
    body: &str,
) -> (StatusCode, Vec<u8>) {
    let response = router
        .clone()
        .oneshot(request.body(Body::from(body.to_owned())).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, bytes.to_vec())
}

#[tokio::test]
async fn every_documented_operation_is_routed_and_guarded() {
    let dir = tempfile::tempdir().unwrap();
    let router = router(control(dir.path()));
    let doc: Value = serde_json::from_str(OPENAPI).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 20);
    for (path, operations) in paths {
        let concrete = path
            .replace("{id}", "1")
            .replace("{name}", "node-1")
            .replace("{action}", "ack");
        for (method, operation) in operations.as_object().unwrap() {
            let (status, body) = call(&router, &method.to_uppercase(), &concrete, None, "{}").await;
            assert!(
                body["message"] != "no such route" && status != StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path} is documented but not routed"
            );
            if operation.get("security").is_some() {
                assert_eq!(
                    status,
                    StatusCode::UNAUTHORIZED,
                    "{method} {path} needs the token"
                );
            }
        }
    }
}

/// The other way round: every `/api/v1` path the API's modules name is in openapi.json, so a
/// route added without its documentation fails here (blocks and flags once were).
#[test]
fn every_routed_path_is_documented() {
    let shape = |path: &str| -> String {
        let mut shaped = String::new();
        let mut in_parameter = false;
        for c in path.chars() {
            match c {
                '{' => (in_parameter, shaped) = (true, shaped + "{}"),
                '}' => in_parameter = false,
                c if !in_parameter => shaped.push(c),
                _ => {}
            }
        }
        shaped
    };
    let doc: Value = serde_json::from_str(OPENAPI).unwrap();
    let documented: Vec<String> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(|p| shape(p))
        .collect();
    let api = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api");
    let mut named = 0;
    for entry in std::fs::read_dir(api).unwrap() {
        let file = entry.unwrap().path();
        if file.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let source = std::fs::read_to_string(&file).unwrap();
        for literal in source.split("\"/api/v1/").skip(1) {
            let path = format!("/api/v1/{}", literal.split('"').next().unwrap());
            named += 1;
            assert!(
                documented.contains(&shape(&path)),
                "{path} (in {}) is routed but not in openapi.json",
                file.display()
            );
        }
    }
    assert!(named >= 20, "only {named} paths found in the API's modules");
}

#[tokio::test]
async fn a_follower_serves_reads_and_refuses_changes_with_an_audit_entry() {
    let dir = tempfile::tempdir().unwrap();
    let follower = control_leading(dir.path(), Arc::default());
    let router = router(follower.clone());
    let silence = r#"{"matcher":"down/node-1","duration_s":60,"comment":"x"}"#;
    let (status, answer) = call(&router, "POST", "/api/v1/silences", Some(TOKEN), silence).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("not_leader"))
    );
    let (status, _) = call(&router, "POST", "/api/v1/silences", None, silence).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(follower.state.silences(now_ms()).unwrap().is_empty());
    let audit = follower.state.audit_log(10).unwrap();
    assert_eq!(audit.len(), 1, "the operator's refused change only");
    assert_eq!(audit[0].outcome, "refused: not_leader");
    let (status, health) = call(&router, "GET", "/healthz", None, "").await;
    assert_eq!(
        (status, health["role"].as_str()),
        (StatusCode::OK, Some("follower"))
    );
    let (status, _) = call(&router, "GET", "/api/v1/incidents", Some(TOKEN), "").await;
    assert_eq!(status, StatusCode::OK);
    let response = router
        .clone()
        .oneshot(
            axum::http::Request::get("/metrics")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let text = axum::body::to_bytes(response.into_body(), 1 << 16)
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&text).contains("croupier_control_leader 0\n"));
}

#[tokio::test]
async fn a_new_leader_fails_the_rollout_its_predecessor_left_running() {
    let dir = tempfile::tempdir().unwrap();
    let control = control(dir.path());
    let orphan = control
        .state
        .start_rollout("/opt/croupier/next", 1, "operator", now_ms())
        .unwrap();
    control.tick().await;
    let rollouts = control.state.rollouts(5).unwrap();
    assert_eq!(
        (rollouts[0].id, rollouts[0].status.as_str()),
        (orphan, "failed")
    );
    assert_eq!(rollouts[0].steps.last().unwrap().step, "orphaned");
    let router = router(control);
    let plain = r#"{"binary":"/opt/croupier/next"}"#;
    let (status, answer) = call(&router, "POST", "/api/v1/rollouts", Some(TOKEN), plain).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
}

/// A round acts as the leader only if it still leads once its scrapes are in: the lease can go
/// while they run (up to their timeout), and a process that no longer leads must not take
/// over (fail the rollout it believes orphaned, send the alerts it believes unsent). Before:
/// the round read its leadership once, before scraping, and failed the new leader's rollout.
#[tokio::test]
async fn a_round_that_loses_the_lease_while_scraping_acts_on_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let leadership = crate::lease::Leadership::sole();
    let losing = leadership.clone();
    // The target's scrape is when the lease goes (another control plane takes it).
    let app = Router::new().route(
        "/metrics",
        axum::routing::get(move || async move {
            losing.set(false);
            "croupier_up 1\n"
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let node = croupier_monitor::engine::Target::new(
        "node-1",
        croupier_monitor::engine::Kind::Node,
        &base,
    );
    let control = control_of(dir.path(), leadership.clone(), vec![node]);
    let running = control
        .state
        .start_rollout("/opt/croupier/next", 1, "operator", now_ms())
        .unwrap();
    control.tick().await;
    assert!(!leadership.is_leader(), "the scrape did not run");
    let rollouts = control.state.rollouts(5).unwrap();
    assert_eq!(
        (rollouts[0].id, rollouts[0].status.as_str()),
        (running, "running")
    );
}

/// A node that keeps the notices it is asked to send its players; its base URL.
async fn node_keeping_notices(kept: Arc<parking_lot::Mutex<Vec<String>>>) -> String {
    let app = Router::new().route(
        "/ops/notices",
        axum::routing::post(move |body: String| async move {
            kept.lock().push(body);
            StatusCode::ACCEPTED
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}")
}

#[tokio::test]
async fn players_are_told_of_problems_on_their_components_only() {
    use croupier_monitor::engine::{Kind, Target};
    let dir = tempfile::tempdir().unwrap();
    let kept = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let node = Target::new(
        "node-1",
        Kind::Node,
        &node_keeping_notices(kept.clone()).await,
    );
    let control = control_of(dir.path(), crate::lease::Leadership::sole(), vec![node]);
    for component in ["security", "store", "dice"] {
        let group = crate::notify::Group {
            component: component.into(),
            firing: true,
            alerts: Vec::new(),
        };
        control.announce(&group, now_ms());
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while kept.lock().is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // An operator's update of the security incident is not theirs either.
    let security = control
        .state
        .open_incident(
            "blocks",
            "security",
            croupier_monitor::severity::Severity::Minor,
            None,
            "opened",
            now_ms(),
        )
        .unwrap();
    let router = router(control);
    let path = format!("/api/v1/incidents/{security}/updates");
    let update = r#"{"status":"monitoring","message":"an address is blocked"}"#;
    let (status, answer) = call(&router, "POST", &path, Some(TOKEN), update).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let kept = kept.lock().clone();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(kept[0].contains("a problem affecting Dice"), "{kept:?}");
}

/// Status-page subscriptions by webhook (plain HTTP allowed), without mail.
fn webhook_subscriptions() -> crate::subscriptions::Subscriptions {
    let config = crate::subscriptions::SubscriptionsConfig {
        smtp_url: None,
        from: "status@casino.test".into(),
        public_url: None,
        allow_http_webhooks: true,
    };
    crate::subscriptions::Subscriptions::new(&config, "a key", "http://status.test").unwrap()
}

/// A subscription request from `peer`, as `croupier_web::serve` hands it to the router: its
/// status.
async fn subscribe_from(router: &Router, peer: &str, n: usize) -> StatusCode {
    let peer: std::net::SocketAddr = peer.parse().unwrap();
    let request = axum::http::Request::builder()
        .method("POST")
        .uri("/api/v1/subscriptions")
        .extension(axum::extract::ConnectInfo(peer));
    let body = format!(r#"{{"webhook": "http://127.0.0.1:9/hook-{n}"}}"#);
    answer(router, request, &body).await.0
}

/// One caller's flood is refused without shutting anyone else out: the limit is per requester
/// (an IPv6 /64 counts as one), and a refused request spends nothing of everyone's share.
/// (Before: 20 a minute from everyone together, so one caller took every subscriber's.)
#[tokio::test]
async fn one_callers_flood_of_subscriptions_shuts_no_one_else_out() {
    let dir = tempfile::tempdir().unwrap();
    let control = control_subscribed(
        dir.path(),
        crate::lease::Leadership::sole(),
        Vec::new(),
        Some(webhook_subscriptions()),
    );
    let router = crate::api::router(control);
    let mut flood = Vec::new();
    for n in 0..40 {
        flood.push(subscribe_from(&router, "203.0.113.7:40000", n).await);
    }
    let admitted = flood.iter().filter(|s| **s == StatusCode::ACCEPTED).count();
    assert!((1..=5).contains(&admitted), "{flood:?}");
    assert!(
        flood[admitted..]
            .iter()
            .all(|s| *s == StatusCode::TOO_MANY_REQUESTS)
    );
    for (n, other) in [
        "198.51.100.1:5000",
        "198.51.100.2:5000",
        "[2001:db8::1]:5000",
    ]
    .into_iter()
    .enumerate()
    {
        let status = subscribe_from(&router, other, 100 + n).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{other} after the flood");
    }
    // Another address of the same IPv6 /64 is the same requester.
    for n in 0..10 {
        subscribe_from(&router, "[2001:db8::2]:5000", 200 + n).await;
    }
    let status = subscribe_from(&router, "[2001:db8::ffff]:5000", 300).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn status_subscribers_get_no_news_of_an_operators_incident() {
    let dir = tempfile::tempdir().unwrap();
    let control = control(dir.path());
    let subscriptions = webhook_subscriptions();
    let minor = croupier_monitor::severity::Severity::Minor;
    // The delivery cursor starts at the newest line: set it before the incidents.
    assert!(control.state.undelivered_lines().unwrap().is_empty());
    for component in ["security", "dice"] {
        control
            .state
            .open_incident(component, component, minor, None, "opened", now_ms())
            .unwrap();
    }
    let incidents = control.state.incidents(false).unwrap();
    let news: Vec<String> = control
        .state
        .undelivered_lines()
        .unwrap()
        .into_iter()
        .filter_map(|(line, id)| {
            let incident = incidents.iter().find(|i| i.id == id)?;
            Some(subscriptions.news_of(incident, line, &control)?.subject)
        })
        .collect();
    assert_eq!(news.len(), 1, "{news:?}");
    assert!(news[0].contains("dice"), "{news:?}");
}

/// A webhook receiver that answers every request's headers and then stalls, its socket kept
/// open: the body it promised never comes. Its URL.
async fn stalling_receiver() -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut socket, _)) = listener.accept().await {
            let _ = socket.read(&mut [0u8; 4096]).await;
            let _ = socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n")
                .await;
            held.push(socket);
        }
    });
    format!("http://{address}/hook")
}

#[tokio::test]
async fn a_stalling_subscriber_delays_no_one_elses_news() {
    let dir = tempfile::tempdir().unwrap();
    let control = control(dir.path());
    let subscriptions = webhook_subscriptions();
    let kept = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let good = format!("{}/ops/notices", node_keeping_notices(kept.clone()).await);
    // The stalling one first: subscribers are told in the order they subscribed.
    for url in [stalling_receiver().await, good] {
        let dice = ["dice".to_owned()];
        let added = control
            .state
            .add_subscriber("webhook", &url, &dice, now_ms(), 0);
        let id = added.unwrap().unwrap().id;
        assert!(control.state.confirm_subscriber(id, now_ms()).unwrap());
    }
    let news = crate::subscriptions::News {
        components: vec!["dice".into()],
        subject: "[Croupier status] Dice (investigating)".into(),
        text: "We are looking into it.".into(),
    };
    let telling = tokio::spawn({
        let control = control.clone();
        async move {
            let subscriptions = subscriptions;
            subscriptions.tell(&control, &news).await
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while kept.lock().is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        kept.lock().len(),
        1,
        "the good subscriber got no news in 5 s"
    );
    assert!(kept.lock()[0].contains("We are looking into it."));
    // And the stalled one costs its tries, not the sender forever.
    let told = tokio::time::timeout(std::time::Duration::from_secs(30), telling).await;
    assert!(told.is_ok(), "telling never ended");
}

#[tokio::test]
async fn a_rollout_that_panics_is_failed_and_the_next_one_starts() {
    let dir = tempfile::tempdir().unwrap();
    let control = control(dir.path());
    let id = control
        .state
        .start_rollout("/opt/croupier/next", 1, "operator", now_ms())
        .unwrap();
    let panics = async { panic!("injected panic in a rollout step") };
    crate::rollout::fail_if_panicked(control.clone(), id, "operator".into(), panics).await;
    let rollouts = control.state.rollouts(5).unwrap();
    assert_eq!(
        (rollouts[0].id, rollouts[0].status.as_str()),
        (id, "failed")
    );
    assert_eq!(rollouts[0].steps.last().unwrap().step, "panicked");
    let router = router(control);
    let plain = r#"{"binary":"/opt/croupier/next"}"#;
    let (status, answer) = call(&router, "POST", "/api/v1/rollouts", Some(TOKEN), plain).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
}

#[tokio::test]
async fn a_refused_rollout_records_nothing_and_the_next_one_starts() {
    let dir = tempfile::tempdir().unwrap();
    let router = router(control(dir.path()));
    let staged = r#"{"binary":"/opt/croupier/next","staging":true}"#;
    let (status, answer) = call(&router, "POST", "/api/v1/rollouts", Some(TOKEN), staged).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("no_backups"))
    );
    let (_, listed) = call(&router, "GET", "/api/v1/rollouts", Some(TOKEN), "").await;
    assert_eq!(listed["rollouts"].as_array().unwrap().len(), 0, "{listed}");
    let plain = r#"{"binary":"/opt/croupier/next"}"#;
    let (status, answer) = call(&router, "POST", "/api/v1/rollouts", Some(TOKEN), plain).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
}

#[tokio::test]
async fn drill_reports_are_kept_and_listed() {
    let dir = tempfile::tempdir().unwrap();
    let router = router(control(dir.path()));
    let (status, answer) = call(
        &router,
        "POST",
        "/api/v1/drills",
        Some(TOKEN),
        r#"{"drill":"kill-node"}"#,
    )
    .await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_body"))
    );
    let report = r#"{"drill":"kill-node","verdict":"pass","player_visible_errors":0}"#;
    let (status, _) = call(&router, "POST", "/api/v1/drills", Some(TOKEN), report).await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, listed) = call(&router, "GET", "/api/v1/drills", Some(TOKEN), "").await;
    let drills = listed["drills"].as_array().unwrap();
    assert_eq!(drills.len(), 1);
    assert_eq!(drills[0]["report"]["player_visible_errors"], 0);
}

#[tokio::test]
async fn bad_silences_are_refused_named_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    let router = router(control(dir.path()));
    for (body, code) in [
        (
            r#"{"matcher":"down/node-1","comment":"deploy","duration_s":0}"#,
            "invalid_duration",
        ),
        (
            r#"{"matcher":"component:casino","comment":"x","duration_s":60}"#,
            "invalid_matcher",
        ),
        (
            r#"{"matcher":"down/node-1","comment":" ","duration_s":60}"#,
            "invalid_body",
        ),
        (
            r#"{"matcher":"down/node-1","comment":"x","duration_s":60,"extra":1}"#,
            "invalid_body",
        ),
        // Serde reads a struct from an array of its fields too: this created a silence.
        (r#"["down/node-1", "x", 60]"#, "invalid_body"),
    ] {
        let (status, answer) = call(&router, "POST", "/api/v1/silences", Some(TOKEN), body).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some(code)),
            "{body}"
        );
    }
    let (_, listed) = call(&router, "GET", "/api/v1/silences", Some(TOKEN), "").await;
    assert_eq!(
        listed["silences"].as_array().unwrap().len(),
        0,
        "nothing was created"
    );
    let (status, created) = call(
        &router,
        "POST",
        "/api/v1/silences",
        Some(TOKEN),
        r#"{"matcher":"cpu_*","comment":"load test","duration_s":600}"#,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let id = created["id"].as_i64().unwrap();
    let (status, _) = call(
        &router,
        "DELETE",
        &format!("/api/v1/silences/{id}"),
        Some(TOKEN),
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call(&router, "DELETE", "/api/v1/silences/999", Some(TOKEN), "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, audit) = call(&router, "GET", "/api/v1/audit?limit=10", Some(TOKEN), "").await;
    let outcomes: Vec<(&str, &str)> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(outcomes.len(), 8, "{outcomes:?}");
    assert_eq!(outcomes[0], ("silence.expire", "refused: not_found"));
    assert_eq!(outcomes[1], ("silence.expire", "ok"));
    assert_eq!(outcomes[2], ("silence.add", "ok"));
    assert_eq!(outcomes[3], ("silence.add", "refused: invalid_body"));
    assert_eq!(outcomes[7], ("silence.add", "refused: invalid_duration"));
    let (status, answer) = call(&router, "GET", "/api/v1/audit?limit=x", Some(TOKEN), "").await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_query"))
    );
}

/// A request as a browser with the session `cookie` sends it: a Host, and for changes
/// the Origin it comes from and (when given) the CSRF token.
async fn browser(
    router: &Router,
    method: &str,
    path: &str,
    cookie: &str,
    origin: Option<&str>,
    csrf: Option<&str>,
    body: &str,
) -> (StatusCode, String) {
    let mut request = axum::http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "ops.example:8080")
        .header("cookie", cookie)
        .header("content-type", "text/plain");
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    if let Some(csrf) = csrf {
        request = request.header("x-csrf-token", csrf);
    }
    let (status, bytes) = answer(router, request, body).await;
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// Signs in on the form as alice: the session cookie and the dashboard's CSRF token.
async fn sign_in(router: &Router) -> (String, String) {
    let request = axum::http::Request::builder()
        .method("POST")
        .uri("/login")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(format!("token={TOKEN}&name=alice")))
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let set = response.headers()[header::SET_COOKIE].to_str().unwrap();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    let cookie = set.split(';').next().unwrap().to_owned();
    assert!(
        !cookie.contains(TOKEN),
        "the cookie holds no token: {cookie}"
    );
    let (status, page) = browser(router, "GET", "/dashboard", &cookie, None, None, "").await;
    assert_eq!(status, StatusCode::OK);
    let csrf = page
        .split("name=\"csrf-token\" content=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned();
    (cookie, csrf)
}

#[tokio::test]
async fn dashboard_sessions_refuse_cross_site_changes_and_end_at_sign_out() {
    let dir = tempfile::tempdir().unwrap();
    let control = control(dir.path());
    let router = router(control.clone());
    let (cookie, csrf) = sign_in(&router).await;
    let (status, _) = browser(&router, "GET", "/api/v1/alerts", &cookie, None, None, "").await;
    assert_eq!(status, StatusCode::OK);

    // A page elsewhere posting a text/plain silence with the cookie is refused.
    let silence = r#"{"matcher":"down/node-1","comment":"deploy","duration_s":60}"#;
    let evil = Some("https://evil.example");
    for (origin, token) in [
        (evil, Some(csrf.as_str())),
        (None, None),
        (None, Some("guess")),
    ] {
        let (status, body) = browser(
            &router,
            "POST",
            "/api/v1/silences",
            &cookie,
            origin,
            token,
            silence,
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert!(body.contains("\"csrf\""), "{body}");
    }
    let (_, listed) = call(&router, "GET", "/api/v1/silences", Some(TOKEN), "").await;
    assert_eq!(
        listed["silences"].as_array().map(Vec::len),
        Some(0),
        "{listed}"
    );

    // The dashboard itself: same origin, the session's token.
    let own = Some("http://ops.example:8080");
    let (status, body) = browser(
        &router,
        "POST",
        "/api/v1/silences",
        &cookie,
        own,
        Some(&csrf),
        silence,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, audit) = call(&router, "GET", "/api/v1/audit", Some(TOKEN), "").await;
    let entries = audit["entries"].as_array().unwrap();
    let by = |action: &str, outcome: &str| {
        entries.iter().any(|e| {
            e["actor"] == "session:alice"
                && e["action"] == action
                && e["outcome"].as_str().unwrap_or("").starts_with(outcome)
        })
    };
    assert!(by("sign_in", "ok") && by("silence.add", "ok"), "{audit}");
    assert!(by("change", "refused: csrf"), "{audit}");

    // Signing out ends the session on the server.
    let (status, _) = browser(&router, "POST", "/logout", &cookie, own, None, "").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, _) = browser(&router, "GET", "/api/v1/alerts", &cookie, None, None, "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_ops_token_is_no_cookie() {
    let dir = tempfile::tempdir().unwrap();
    let router = router(control(dir.path()));
    let cookie = format!("croupier_ops={TOKEN}");
    let (status, _) = browser(&router, "GET", "/api/v1/alerts", &cookie, None, None, "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// The `Operator` extractor runs before anything else of an operator route: a caller with
/// no credential, or a wrong one, gets 401 with the JSON error body, even where the path
/// itself is malformed (before, such a path answered a plain-text 400 to anyone), and the
/// audit log stays empty — anonymous refusals are counted by the lockout, which audits the
/// blocks, not written one by one where a stranger could fill the log.
#[tokio::test]
async fn the_operator_check_comes_first_and_answers_json() {
    let dir = tempfile::tempdir().unwrap();
    let control = control(dir.path());
    let router = router(control.clone());
    for (method, path) in [
        ("GET", "/api/v1/incidents/not-a-number/postmortem"),
        ("POST", "/api/v1/incidents/not-a-number/updates"),
        ("DELETE", "/api/v1/silences/not-a-number"),
        ("GET", "/api/v1/incidents"),
        ("PUT", "/api/v1/nodes/node-1"),
    ] {
        for token in [None, Some("not-the-ops-token-but-long-enough-0000000")] {
            let (status, body) = call(&router, method, path, token, "{}").await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
            assert_eq!(body["error"], "unauthorized", "{method} {path}: {body}");
            assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
        }
    }
    assert!(control.state.audit_log(10).unwrap().is_empty());
    let (status, body) = call(
        &router,
        "DELETE",
        "/api/v1/silences/not-a-number",
        Some(TOKEN),
        "",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_path", "{body}");
    // Before: axum's text/plain 400s and an empty 405, on the public links too.
    for (method, path, wanted, code) in [
        ("GET", "/subscriptions/abc/confirm", 400, "invalid_path"),
        ("POST", "/pages/1e99/ack", 400, "invalid_path"),
        (
            "GET",
            "/api/v1/incidents/1/updates",
            405,
            "method_not_allowed",
        ),
        ("GET", "/api/v1/no-such-thing", 404, "not_found"),
    ] {
        let (status, body) = call(&router, method, path, Some(TOKEN), "").await;
        assert_eq!(status.as_u16(), wanted, "{method} {path}: {body}");
        assert_eq!(body["error"], code, "{method} {path}: {body}");
    }
}

/// What players will read is held to what a node delivers as a notice. Before, an incident
/// with a 2 001-byte message was stored (and shown on the status page) while every node
/// refused the notice, so players were never told; an update's message could be empty.
#[tokio::test]
async fn text_players_cannot_be_told_is_refused_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let control = control(dir.path());
    let router = router(control.clone());
    let incident = |title: &str, message: &str| {
        serde_json::to_string(&croupier_web::wire::control::NewIncident {
            title: title.into(),
            component: "dice".into(),
            severity: "minor".into(),
            message: message.into(),
        })
        .unwrap()
    };
    let long_title = "t".repeat(201);
    let long_message = "m".repeat(2_001);
    for body in [
        incident("Dice", &long_message),
        incident(&long_title, "slow"),
    ] {
        let (status, answer) = call(&router, "POST", "/api/v1/incidents", Some(TOKEN), &body).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_body"))
        );
    }
    assert!(control.state.incidents(false).unwrap().is_empty());
    let good = incident("Dice", &"m".repeat(2_000));
    let (status, created) = call(&router, "POST", "/api/v1/incidents", Some(TOKEN), &good).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let path = format!("/api/v1/incidents/{}/updates", created["id"]);
    for message in ["", " ", long_message.as_str()] {
        let update =
            serde_json::json!({"status": "identified", "message": message, "eta_ms": null});
        let (status, answer) = call(&router, "POST", &path, Some(TOKEN), &update.to_string()).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_body"))
        );
    }
    let window = serde_json::json!({"title": long_title, "scope": "component:dice",
        "starts_ms": now_ms() + 3_600_000, "duration_s": 600});
    let (status, answer) = call(
        &router,
        "POST",
        "/api/v1/maintenance",
        Some(TOKEN),
        &window.to_string(),
    )
    .await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_body"))
    );
    assert!(control.state.windows().unwrap().is_empty());
}

/// Before: a one-off window that ended decades ago was stored (201, `next_start_ms: null`),
/// and an audit limit of 0 or a billion was quietly clamped.
#[tokio::test]
async fn a_window_already_over_and_an_audit_limit_out_of_range_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let control = control(dir.path());
    let router = router(control.clone());
    let past = serde_json::json!({"title": "Old", "scope": "component:dice", "starts_ms": 0, "duration_s": 600});
    let (status, answer) = call(
        &router,
        "POST",
        "/api/v1/maintenance",
        Some(TOKEN),
        &past.to_string(),
    )
    .await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_window")),
        "{answer}"
    );
    assert!(control.state.windows().unwrap().is_empty());
    let running = serde_json::json!({"title": "Now", "scope": "component:dice",
        "starts_ms": now_ms() - 60_000, "duration_s": 600});
    let (status, answer) = call(
        &router,
        "POST",
        "/api/v1/maintenance",
        Some(TOKEN),
        &running.to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    for limit in ["0", "-5", "1001", "1000000000"] {
        let path = format!("/api/v1/audit?limit={limit}");
        let (status, answer) = call(&router, "GET", &path, Some(TOKEN), "").await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_query")),
            "{limit}"
        );
    }
    let (status, _) = call(&router, "GET", "/api/v1/audit?limit=1000", Some(TOKEN), "").await;
    assert_eq!(status, StatusCode::OK);
}
