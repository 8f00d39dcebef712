//! A ledger on PostgreSQL, backed up by pgBackRest and watched by the control plane, on real
//! clusters (initdb, pg_basebackup) and the real `pgbackrest`, `croupier node`, `croupier
//! backup` and `croupier control` processes:
//! - the backup daemon takes a full backup and proves it by a restore test (integrity ok, an
//!   RPO figure); a point-in-time restore reaches exactly the bets placed before the instant;
//! - the same to an S3 repository (moto behind TLS): backup, archived WAL, restore, every
//!   invariant, with the keys only in the environment;
//! - `croupier up` on a PostgreSQL ledger with `--pg-data` runs those backups and restore
//!   tests from its control plane;
//! - a pgBackRest that cannot write its repository raises `backup_failed` on the control plane;
//! - a standby whose replay is paused while writes go on raises `replication_lag`, and a
//!   promotion of the standby is a failover on the incident timeline.
//!
//! The clusters are the tests' own whatever `CROUPIER_TEST_STORE` says, so they run in the
//! SQLite pass of the suite only (the PostgreSQL pass would repeat them unchanged).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{
    Moto, Node, OPS_TOKEN, TlsFront, Up, control_with_config, croupier, dice_bet, free_layout,
    free_port, get, post, sign_in, sqlite_only, wait_for, within,
};
use croupier_ledger::StoreLocation;
use croupier_loadtest::layout::Layout;
use croupier_loadtest::pgcluster::{PgCluster, Replication};
use serde_json::Value;

const WHY: &str = "the clusters are the test's own; the PostgreSQL pass would repeat it";

/// The `--pg-*` arguments naming `cluster`, its stanza's file in `dir` and the repository.
fn pg_args(cluster: &PgCluster, dir: &Path, repo: &Path) -> Vec<String> {
    vec![
        "--pg-data".into(),
        cluster.data_dir().display().to_string(),
        "--pg-port".into(),
        cluster.port().to_string(),
        "--pg-socket".into(),
        cluster.socket_dir().display().to_string(),
        "--pgbackrest-conf".into(),
        dir.join("pgbackrest/croupier.conf").display().to_string(),
        "--backup-target".into(),
        repo.display().to_string(),
    ]
}

/// `croupier backup <command> <pg> <extra>` (`--backup-target` is `--target` there).
fn backup(command: &str, pg: &[String], extra: &[&str]) -> Output {
    backup_with_env(command, pg, extra, &[])
}

/// `backup` with `env` added to the command's environment.
fn backup_with_env(command: &str, pg: &[String], extra: &[&str], env: &[(&str, &str)]) -> Output {
    let pg = pg.iter().map(|a| {
        if a == "--backup-target" {
            "--target"
        } else {
            a.as_str()
        }
    });
    croupier()
        .args(["backup", command])
        .args(pg)
        .args(extra)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn ok_json(output: Output) -> Value {
    assert!(
        output.status.success(),
        "croupier backup failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A cluster whose WAL is archived into `repo` through the stanza `croupier backup pg-setup`
/// wrote (the lines it prints, appended to postgresql.conf, and a restart).
fn archived_cluster(dir: &Path, repo: &Path) -> (PgCluster, Vec<String>) {
    let cluster = PgCluster::create(&dir.join("pg"), free_port()).unwrap();
    let pg = pg_args(&cluster, dir, repo);
    let setup = ok_json(backup("pg-setup", &pg, &["--archive-timeout-s", "60"]));
    let lines = setup["postgresql_conf"].as_str().unwrap();
    assert!(lines.contains("archive-push %p"), "{setup}");
    cluster.append_settings(lines).unwrap();
    cluster.restart().unwrap();
    (cluster, pg)
}

/// A demo node on the ledger at `url` (the cluster's, whatever `CROUPIER_TEST_STORE` says).
fn node_on(data: &Path, url: &str) -> Node {
    let port = free_port();
    let log = std::fs::File::create(data.join("node.log")).unwrap();
    let child = croupier()
        .args(["node", "--demo", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--node-id", "n1", "--store", url])
        .arg("--data")
        .arg(data)
        .env("CROUPIER_OPS_TOKEN", OPS_TOKEN)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let node = Node {
        child,
        base: format!("http://127.0.0.1:{port}"),
        id: "n1".into(),
    };
    node.wait_ready();
    node
}

/// Waits like `wait_for`, and shows the control plane's log in `data` when it times out.
fn wait_control(data: &Path, what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !ready() {
        if std::time::Instant::now() > deadline {
            let log = std::fs::read_to_string(data.join("control.log")).unwrap_or_default();
            panic!("{what} did not happen in time; the control plane's log:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `count` dice bets of `player` through the node, keys `<prefix><n>`.
fn bets(node: &Node, token: &str, prefix: &str, count: usize) {
    for n in 0..count {
        let key = format!("{prefix}{n}");
        let (status, body) = post(
            &node.url("/api/v1/rounds"),
            Some(token),
            Some(&key),
            &dice_bet(10),
        )
        .unwrap();
        assert_eq!(status, 201, "{body}");
    }
}

fn journal_count(cluster: &PgCluster) -> i64 {
    cluster
        .sql("SELECT count(*) FROM journal")
        .unwrap()
        .parse()
        .unwrap()
}

/// Switches to a new WAL segment and waits until the last one is in the repository, so a
/// restore reaches every commit made so far.
fn archive_now(cluster: &PgCluster) {
    let segment = cluster
        .sql("SELECT pg_walfile_name(pg_switch_wal())")
        .unwrap();
    wait_for("the WAL segment archived", || {
        cluster
            .sql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
            .is_ok_and(|last| last >= segment)
    });
}

#[test]
fn pgbackrest_backs_up_a_postgres_ledger_and_restores_it_now_and_at_an_instant() {
    if sqlite_only(WHY) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let (cluster, pg) = archived_cluster(dir.path(), &repo);
    let data = dir.path().join("node");
    std::fs::create_dir(&data).unwrap();
    let node = node_on(&data, &cluster.url());
    let token = sign_in(&node, "ada");
    bets(&node, &token, "a", 5);

    // The daemon: the stanza, a full backup, a restore test into a scratch cluster.
    let scratch = dir.path().join("scratch");
    let scratch_arg = scratch.to_str().unwrap();
    let health = ok_json(backup(
        "run",
        &pg,
        &["--scratch", scratch_arg, "--seconds", "1"],
    ));
    assert_eq!(health["status"], "ok", "{health:#}");
    let verify = &health["last_verify"];
    assert_eq!(verify["ok"], true, "{verify:#}");
    assert_eq!(
        verify["state"]["counts"]["journal"],
        journal_count(&cluster)
    );
    let rpo = verify["rpo_seconds"].as_f64().unwrap();
    assert!((0.0..120.0).contains(&rpo), "RPO {rpo} s");
    println!("restore test: RTO {} ms, RPO {rpo} s", verify["rto_ms"]);
    let listed = ok_json(backup("list", &pg, &[]));
    assert_eq!(listed["status"]["code"], 0, "{listed:#}");
    assert_eq!(listed["backup"][0]["type"], "full", "{listed:#}");

    // Point in time: the bets before the instant, none after.
    let before = journal_count(&cluster);
    std::thread::sleep(Duration::from_millis(1100));
    let instant = now_ms();
    std::thread::sleep(Duration::from_millis(1100));
    bets(&node, &token, "b", 5);
    archive_now(&cluster);
    let at = instant.to_string();
    let then = ok_json(backup(
        "verify",
        &pg,
        &["--scratch", scratch_arg, "--at", &at],
    ));
    assert_eq!(then["ok"], true, "{then:#}");
    assert_eq!(then["state"]["counts"]["journal"], before, "{then:#}");
    let newest = ok_json(backup("verify", &pg, &["--scratch", scratch_arg]));
    assert_eq!(
        newest["state"]["counts"]["journal"],
        journal_count(&cluster)
    );
    assert!(before < journal_count(&cluster));

    // A restore never writes over a folder that holds something.
    let refused = backup("restore", &pg, &["--into", repo.to_str().unwrap()]);
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("already exists"), "{message}");
    common::integrity(&node);
    assert!(
        std::fs::read_dir(&scratch).unwrap().next().is_none(),
        "scratch clusters left"
    );
}

/// The keys of the S3 test's repository: moto takes any, the test checks none leaks.
const S3_KEY: &str = "croupier-test-key-id";
const S3_SECRET: &str = "croupier-test-secret-0123456789";

#[test]
fn pgbackrest_backs_up_to_s3_over_tls_and_a_restore_from_it_passes_every_invariant() {
    if sqlite_only(WHY) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let moto = Moto::start(&dir.path().join("moto.log"));
    moto.create_bucket("croupier-pg");
    let tls = TlsFront::start(&dir.path().join("tls"), moto.port);
    let endpoint = format!("https://127.0.0.1:{}", tls.port);
    let ca_file = tls.ca_file.display().to_string();
    // The keys and the CA reach pgBackRest through the environment only: Croupier's (backup,
    // restore and the restored cluster's archive-get) and the server's (archive-push).
    let keys = [
        ("PGBACKREST_REPO1_S3_KEY", S3_KEY),
        ("PGBACKREST_REPO1_S3_KEY_SECRET", S3_SECRET),
        ("PGBACKREST_REPO1_STORAGE_CA_FILE", ca_file.as_str()),
    ];
    let mut env = vec![("AWS_ENDPOINT", endpoint.as_str())];
    env.extend(keys);

    let cluster = PgCluster::create(&dir.path().join("pg"), free_port()).unwrap();
    let pg = pg_args(&cluster, dir.path(), Path::new("s3://croupier-pg/ledger"));
    let started = std::time::Instant::now();
    let setup = ok_json(backup_with_env("pg-setup", &pg, &[], &env));
    cluster
        .append_settings(setup["postgresql_conf"].as_str().unwrap())
        .unwrap();
    cluster.restart_with_env(&keys).unwrap();
    let data = dir.path().join("node");
    std::fs::create_dir(&data).unwrap();
    let node = node_on(&data, &cluster.url());
    let token = sign_in(&node, "ada");
    bets(&node, &token, "a", 5);

    let snapshot = backup_with_env("snapshot", &pg, &[], &env);
    let shown = format!("{snapshot:?}");
    let taken = ok_json(snapshot);
    assert_eq!(taken["backup"]["type"], "full", "{taken:#}");
    println!("S3: stanza and full backup after {:?}", started.elapsed());
    bets(&node, &token, "b", 5);
    archive_now(&cluster);
    let scratch = dir.path().join("scratch");
    let verify = backup_with_env(
        "verify",
        &pg,
        &["--scratch", scratch.to_str().unwrap()],
        &env,
    );
    let shown = format!("{shown}{verify:?}");
    let report = ok_json(verify);
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(
        report["state"]["counts"]["journal"],
        journal_count(&cluster)
    );
    println!("S3: restore test after {:?}", started.elapsed());

    // The repository is in the bucket; no key in any output or in the stanza's file (0600).
    let requests = std::fs::read_to_string(dir.path().join("moto.log")).unwrap();
    for written in [
        "archive/croupier/archive.info",
        "backup/croupier/backup.info",
    ] {
        let put = format!("\"PUT /croupier-pg/ledger/{written} HTTP/1.1\" 200");
        assert!(requests.contains(&put), "no {put} in moto's log");
    }
    let conf = dir.path().join("pgbackrest/croupier.conf");
    let text = std::fs::read_to_string(&conf).unwrap();
    assert!(
        text.contains(&format!("repo1-storage-port={}", tls.port)),
        "{text}"
    );
    let mode = std::fs::metadata(&conf).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    for secret in [S3_KEY, S3_SECRET] {
        assert!(
            !text.contains(secret) && !shown.contains(secret),
            "{secret} leaked"
        );
    }
    common::integrity(&node);
}

#[test]
fn croupier_up_on_a_postgres_ledger_hands_pgbackrest_to_its_control_plane() {
    if sqlite_only(WHY) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // --pg-data with a SQLite ledger is refused before anything starts.
    let refused = croupier()
        .args(["up", "--data"])
        .arg(dir.path().join("sqlite"))
        .args(["--pg-data", "/var/lib/postgresql/15/main"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("give --store postgres://"), "{message}");

    let repo = dir.path().join("repo");
    let (cluster, pg) = archived_cluster(dir.path(), &repo);
    let data = dir.path().join("stack");
    std::fs::create_dir(&data).unwrap();
    let layout = Layout {
        nodes: 1,
        store: Some(StoreLocation::Postgres(cluster.url())),
        ..free_layout(&data)
    };
    let log = std::fs::File::create(dir.path().join("up.log")).unwrap();
    let _up = Up(croupier()
        .args(layout.up_command())
        .envs(layout.environment())
        .arg("--demo")
        .args(&pg)
        .env("CROUPIER_OPS_TOKEN", OPS_TOKEN)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap());
    // The control plane's first scheduled backup, then its restore test (every invariant).
    let backups = format!("{}/api/v1/backups", layout.control_url());
    let proven = within(Duration::from_secs(120), || {
        get(&backups, Some(OPS_TOKEN)).is_ok_and(|(_, b)| {
            b["status"]["backend"] == "postgres"
                && b["status"]["health"]["last_verify"]["ok"] == true
        })
    });
    let (_, last) = get(&backups, Some(OPS_TOKEN)).unwrap_or_default();
    let log = std::fs::read_to_string(dir.path().join("up.log")).unwrap_or_default();
    assert!(
        proven,
        "no passing restore test: {last:#}\nup's log:\n{log}"
    );

    // The control plane watches the ledger's server itself (`up` hands it the store): its
    // connections on the dashboard's series and, under postgres_exporter's names, /metrics.
    let metrics = format!("{}/metrics", layout.control_url());
    let connections = |text: &str| {
        text.lines()
            .find(|l| l.starts_with("pg_stat_database_numbackends{store=\"ledger\""))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
    };
    let watched = within(Duration::from_secs(30), || {
        get(&metrics, None).is_ok_and(|(_, b)| b.as_str().and_then(connections) >= Some(1.0))
    });
    let (_, text) = get(&metrics, None).unwrap_or_default();
    assert!(watched, "no connections of the ledger on /metrics:\n{text}");
    let series = control_get(&layout.control_url(), "/api/v1/series");
    let ledger = series["targets"]
        .as_array()
        .and_then(|targets| targets.iter().find(|t| t["kind"] == "store"))
        .and_then(|t| t["points"].as_array()?.last().cloned())
        .unwrap_or_default();
    assert!(
        ledger["store_connections"].as_f64() >= Some(1.0),
        "{ledger}"
    );
    assert!(
        ledger["store_connections_max"].as_f64() > Some(1.0),
        "{ledger}"
    );

    // A rolling update rehearsed first on a staging node that runs on pgBackRest's newest
    // state, restored into a scratch cluster of its own (one node here: none need stay up).
    let run = croupier()
        .args([
            "maintenance",
            "--url",
            &layout.control_url(),
            "--as",
            "release-bot",
        ])
        .args([
            "run",
            "--drain-deadline",
            "3s",
            "--min-eligible",
            "0",
            "--staging",
        ])
        .arg("--binary")
        .arg(env!("CARGO_BIN_EXE_croupier"))
        .env("CROUPIER_OPS_TOKEN", OPS_TOKEN)
        .output()
        .unwrap();
    let (out, err) = (
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr),
    );
    assert!(run.status.success(), "{out}{err}");
    assert!(
        out.contains("restored the newest pgBackRest state"),
        "{out}"
    );
    assert!(
        out.contains("staging  rehearsal   lobby, test bet and integrity passed"),
        "{out}"
    );
}

/// GETs a control plane route with the ops token.
fn control_get(base: &str, path: &str) -> Value {
    let (status, body) = get(&format!("{base}{path}"), Some(OPS_TOKEN)).unwrap();
    assert_eq!(status, 200, "{path}: {body}");
    body
}

#[test]
fn a_pgbackrest_that_cannot_write_its_repository_raises_backup_failed() {
    if sqlite_only(WHY) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cluster = PgCluster::create(&dir.path().join("pg"), free_port()).unwrap();
    // The repository is in a folder only root may enter: pgBackRest runs as the cluster's
    // owner and cannot write it.
    let locked = dir.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o700)).unwrap();
    let pg = pg_args(&cluster, dir.path(), &locked.join("repo"));
    let data = dir.path().join("control");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("deploy.toml"), "").unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let extra: Vec<&str> = pg.iter().map(String::as_str).collect();
    let _control = control_with_config(&data, port, &extra);
    wait_control(&data, "backup_failed on the backups", || {
        get(&format!("{base}/api/v1/backups"), Some(OPS_TOKEN))
            .is_ok_and(|(_, b)| b["status"]["health"]["status"] == "backup_failed")
    });
    let backups = control_get(&base, "/api/v1/backups");
    assert_eq!(backups["status"]["backend"], "postgres", "{backups:#}");
    let reason = backups["status"]["health"]["reason"].as_str().unwrap();
    assert!(reason.contains("pgbackrest"), "{reason}");
    wait_control(&data, "the backup_failed incident", || {
        get(&format!("{base}/api/v1/incidents"), Some(OPS_TOKEN)).is_ok_and(|(_, b)| {
            b["incidents"]
                .as_array()
                .unwrap()
                .iter()
                .any(|i| i["component"] == "backups" && i["alert_key"] == "backup_failed/backups")
        })
    });
}

#[test]
fn a_standby_behind_raises_replication_lag_and_a_promotion_is_a_failover_on_the_timeline() {
    if sqlite_only(WHY) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (primary, standby) =
        PgCluster::primary_and_standby(dir.path(), free_port(), free_port(), Replication::Async)
            .unwrap();
    // With a password, which the control plane must never show.
    let url = PgCluster::read_write_url(&[&standby, &primary]).replacen(
        "postgres@",
        "postgres:secret@",
        1,
    );
    let data = dir.path().join("control");
    std::fs::create_dir(&data).unwrap();
    let deploy =
        format!("replication_lag_alert_s = 2.0\n[[store]]\nname = \"ledger\"\nurl = \"{url}\"\n");
    std::fs::write(data.join("deploy.toml"), deploy).unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let _control = control_with_config(&data, port, &[]);
    let primary_addr = format!("127.0.0.1:{}", primary.port());
    wait_control(&data, "the primary and its standby seen", || {
        get(&format!("{base}/api/v1/replication"), Some(OPS_TOKEN)).is_ok_and(|(_, b)| {
            b["stores"]["ledger"]["primary"] == primary_addr.as_str()
                && b["stores"]["ledger"]["standbys"]
                    .as_array()
                    .is_some_and(|s| s.len() == 1)
        })
    });
    let targets = control_get(&base, "/api/v1/targets").to_string();
    assert!(
        targets.contains("postgres:***@") && !targets.contains("secret"),
        "{targets}"
    );

    // Replay paused on the standby while the primary takes writes: its replay lag grows.
    standby.sql("SELECT pg_wal_replay_pause()").unwrap();
    primary.sql("CREATE TABLE writes (n int)").unwrap();
    let firing =
        |base: &str| {
            get(&format!("{base}/api/v1/alerts"), Some(OPS_TOKEN)).is_ok_and(|(_, b)| {
                b["alerts"].as_array().unwrap().iter().any(|a| {
                    a["key"] == "replication_lag/ledger" && a["state"]["state"] == "firing"
                })
            })
        };
    let mut n = 0;
    wait_control(&data, "replication_lag firing", || {
        n += 1;
        primary
            .sql(&format!("INSERT INTO writes VALUES ({n})"))
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        firing(&base)
    });
    let lag = control_get(&base, "/api/v1/replication");
    let replay = lag["stores"]["ledger"]["standbys"][0]["replay_lag_s"]
        .as_f64()
        .unwrap();
    assert!(replay > 2.0, "{lag:#}");
    standby.sql("SELECT pg_wal_replay_resume()").unwrap();
    wait_control(&data, "replication_lag resolved", || {
        primary.sql("INSERT INTO writes VALUES (0)").unwrap();
        std::thread::sleep(Duration::from_millis(200));
        !firing(&base)
    });

    // The primary is lost and the standby promoted: a failover on the timeline.
    primary.kill().unwrap();
    standby.promote().unwrap();
    let moved = format!(
        "the primary moved from {primary_addr} to 127.0.0.1:{}",
        standby.port()
    );
    wait_control(&data, "the failover on the timeline", || {
        get(&format!("{base}/api/v1/incidents"), Some(OPS_TOKEN)).is_ok_and(|(_, b)| {
            b["incidents"].as_array().unwrap().iter().any(|i| {
                i["timeline"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|u| u["message"].as_str().is_some_and(|m| m.contains(&moved)))
            })
        })
    });
}
