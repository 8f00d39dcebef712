//! A ledger on a PostgreSQL server that asks for a password (`scram-sha-256` on TCP, a cluster
//! of the test's own): `croupier up` is given the URL with the password in
//! `CROUPIER_STORE`, its nodes open the ledger and serve bets, and the password is on no
//! process's command line (`ps` is every local user's to read) and in no log, where the URL
//! is shown with `***` for it. Without the password the ledger does not open. A URL without
//! one takes it from libpq's password file (`PGPASSFILE`, `passfile=`), which only its owner
//! may read.
//!
//! The cluster is the test's own whatever `CROUPIER_TEST_STORE` says, so it runs in the
//! SQLite pass of the suite only (the PostgreSQL pass would repeat it unchanged).

mod common;

use std::path::Path;
use std::process::Stdio;

use common::*;
use croupier_ledger::{StoreLocation, test_store};
use croupier_loadtest::layout::Layout;
use croupier_loadtest::pgcluster::{DATABASE, PgCluster, SUPERUSER};

const PASSWORD: &str = "pw-7c1e0a93d5b24f68";

/// A cluster whose TCP connections must give the superuser's password, and the URL of its
/// database without the password.
fn password_cluster(dir: &Path) -> (PgCluster, String) {
    let cluster = PgCluster::create(&dir.join("pg"), free_port()).unwrap();
    cluster
        .sql(&format!("ALTER ROLE {SUPERUSER} PASSWORD '{PASSWORD}'"))
        .unwrap();
    std::fs::write(
        cluster.data_dir().join("pg_hba.conf"),
        "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n",
    )
    .unwrap();
    cluster.restart().unwrap();
    let url = format!(
        "postgres://{SUPERUSER}@127.0.0.1:{}/{DATABASE}",
        cluster.port()
    );
    (cluster, url)
}

/// Every file under `dir` (logs, state) whose bytes hold `needle`.
fn files_holding(dir: &Path, needle: &str) -> Vec<String> {
    paths_under(dir)
        .into_iter()
        .filter(|path| {
            let bytes = std::fs::read(path).unwrap_or_default();
            String::from_utf8_lossy(&bytes).contains(needle)
        })
        .map(|path| path.display().to_string())
        .collect()
}

/// `croupier integrity` with `args`, and `environment` added to its own.
fn integrity(args: &[&str], environment: &[(&str, &str)]) -> std::process::Output {
    let mut command = croupier();
    command.arg("integrity").args(args);
    command.envs(environment.iter().copied());
    command.output().unwrap()
}

#[test]
fn a_database_password_is_on_no_command_line_and_in_no_log() {
    if test_store::postgres() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_cluster, url) = password_cluster(dir.path());
    let without = format!("{url}?application_name=croupier");
    let store = format!("{without}&password={PASSWORD}");
    let refused = integrity(&["--store", &without], &[]);
    assert!(
        !refused.status.success(),
        "a ledger opened without its password"
    );

    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let layout = Layout {
        store: Some(StoreLocation::Postgres(store.clone())),
        ..free_layout(&data)
    };
    let up_log = dir.path().join("up.log");
    let _up = Up(croupier()
        .args(layout.up_command())
        .envs(layout.environment())
        .arg("--demo")
        .env("CROUPIER_OPS_TOKEN", OPS_TOKEN)
        .stdout(Stdio::from(std::fs::File::create(&up_log).unwrap()))
        .stderr(Stdio::null())
        .spawn()
        .unwrap());
    for i in 0..layout.nodes {
        let ready = format!("{}/readyz", layout.node_url(i));
        wait_for("a node on the password's ledger", || {
            get(&ready, None).map(|r| r.0) == Ok(200)
        });
    }
    let node = layout.node_url(0);
    let token = sign_in_at(&node, "alice");
    let (status, body) = post(
        &format!("{node}/api/v1/rounds"),
        Some(&token),
        Some("k-1"),
        &dice_bet(100),
    )
    .unwrap();
    assert_eq!(status, 201, "{body}");

    let stack = find_processes(&[&data.display().to_string()]);
    assert!(stack.len() > usize::from(layout.nodes), "{stack:?}");
    assert_eq!(
        find_processes(&[PASSWORD]),
        Vec::<u32>::new(),
        "ps shows the password"
    );
    let mut leaked = files_holding(dir.path(), PASSWORD);
    leaked.retain(|f| !f.starts_with(&dir.path().join("pg").display().to_string()));
    assert_eq!(
        leaked,
        Vec::<String>::new(),
        "the password is written in these"
    );
    // `up` prints its addresses once every part is ready, the control plane last: after the
    // nodes this test waited for, on a loaded machine well after.
    let printed = || std::fs::read_to_string(&up_log).unwrap_or_default();
    wait_for("up's addresses", || {
        printed().contains("Ctrl-C stops everything.")
    });
    let shown = printed();
    assert!(shown.contains("password=***"), "{shown}");

    let checked = integrity(&[], &[("CROUPIER_STORE", &store)]);
    assert!(
        checked.status.success(),
        "integrity through CROUPIER_STORE: {}",
        String::from_utf8_lossy(&checked.stderr)
    );
}

#[test]
fn a_url_without_its_password_takes_it_from_the_password_file() {
    use std::os::unix::fs::PermissionsExt;
    if test_store::postgres() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (cluster, without) = password_cluster(dir.path());
    let passfile = dir.path().join("pgpass");
    let in_environment = [("PGPASSFILE", passfile.to_str().unwrap())];
    std::fs::write(
        &passfile,
        format!(
            "# the ledger\n127.0.0.1:{}:*:{SUPERUSER}:{PASSWORD}\n",
            cluster.port()
        ),
    )
    .unwrap();
    let with_mode = |mode: u32| {
        std::fs::set_permissions(&passfile, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    let stderr =
        |output: &std::process::Output| String::from_utf8_lossy(&output.stderr).into_owned();
    // A ledger to check (`integrity` refuses a database that holds none): opening creates it.
    let with_password = without.replacen('@', &format!(":{PASSWORD}@"), 1);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    drop(
        runtime
            .block_on(async { StoreLocation::Postgres(with_password).open("EUR") })
            .unwrap(),
    );

    with_mode(0o600);
    let checked = integrity(&["--store", &without], &in_environment);
    assert!(checked.status.success(), "PGPASSFILE: {}", stderr(&checked));
    let named = format!("{without}?passfile={}", passfile.display());
    let checked = integrity(&["--store", &named], &[]);
    assert!(checked.status.success(), "passfile=: {}", stderr(&checked));
    assert!(!stderr(&checked).contains(PASSWORD), "{}", stderr(&checked));

    with_mode(0o644);
    let refused = integrity(&["--store", &without], &in_environment);
    assert!(!refused.status.success(), "a file others may read was used");
    assert!(
        stderr(&refused).contains("chmod 600"),
        "{}",
        stderr(&refused)
    );
    let missing = dir.path().join("absent");
    let refused = integrity(
        &["--store", &without],
        &[("PGPASSFILE", missing.to_str().unwrap())],
    );
    assert!(
        !refused.status.success(),
        "a missing password file was passed over"
    );
    assert!(
        stderr(&refused).contains("cannot be read"),
        "{}",
        stderr(&refused)
    );
}
