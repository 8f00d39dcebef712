//! A ledger on a PostgreSQL server reached over TLS, as a store on a machine of its own is:
//! a real cluster (initdb) that accepts only TLS connections presenting a client certificate
//! signed by its CA (`hostssl … clientcert=verify-ca`, plain TCP rejected), with a server
//! certificate for 127.0.0.1 alone. A node given libpq's URL (`sslmode=verify-full`,
//! `sslrootcert`, `sslcert`, `sslkey`) serves bets, and every one of its connections to the
//! server is encrypted; a URL that leaves TLS out, trusts the wrong roots, names a host the
//! certificate is not for, or brings no client certificate, opens no store. A node that is
//! running follows a renewal of the certificates in place (a new CA) without a restart.
//!
//! The cluster is the test's own whatever `CROUPIER_TEST_STORE` says, so it runs in the
//! SQLite pass of the suite only (the PostgreSQL pass would repeat it unchanged).

mod common;

use std::path::Path;
use std::process::Command;

use std::time::{Duration, Instant};

use common::{Node, dice_bet, free_port, played, post, sign_in};
use croupier_ledger::pg::Server;
use croupier_ledger::{StoreLocation, test_store};
use croupier_loadtest::pgcluster::{DATABASE, PgCluster, SUPERUSER};
use croupier_web::tls::RELOAD_CHECK_EVERY;
use croupier_web::tls::local_ca::{LocalCa, LocalFiles};

/// A cluster serving TLS only, with its CA's files (the certificate is for 127.0.0.1 and
/// good for both ends: the server presents it, the client presents it too).
fn tls_only_cluster(dir: &Path) -> (PgCluster, LocalFiles) {
    let cluster = PgCluster::create(&dir.join("pg"), free_port()).unwrap();
    let files = LocalCa::write(&dir.join("tls"), &["127.0.0.1".to_owned()]).unwrap();
    if is_root() {
        // The server runs as `postgres` and reads its key; the key stays 0600.
        let chown = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir.join("tls"))
            .status()
            .unwrap();
        assert!(chown.success());
    }
    cluster
        .append_settings(&format!(
            "ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\nssl_ca_file = '{}'\n",
            files.cert.display(),
            files.key.display(),
            files.ca.display()
        ))
        .unwrap();
    std::fs::write(
        cluster.data_dir().join("pg_hba.conf"),
        "local all all trust\n\
         hostssl all all 127.0.0.1/32 trust clientcert=verify-ca\n\
         host all all 127.0.0.1/32 reject\n",
    )
    .unwrap();
    cluster.restart().unwrap();
    (cluster, files)
}

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// The cluster's `croupier` database on `host`, with libpq's TLS parameters `tls`.
fn url(cluster: &PgCluster, host: &str, tls: &str) -> String {
    format!(
        "postgres://{SUPERUSER}@{host}:{}/{DATABASE}?{tls}",
        cluster.port()
    )
}

/// Everything libpq needs for this cluster: verify it by its CA, present the client pair.
fn full_tls(files: &LocalFiles) -> String {
    format!(
        "sslmode=verify-full&sslrootcert={}&sslcert={}&sslkey={}",
        files.ca.display(),
        files.cert.display(),
        files.key.display()
    )
}

/// Why a store on `url` does not open (it must not).
fn refusal(url: &str) -> String {
    match StoreLocation::Postgres(url.to_owned()).open("EUR") {
        Ok(_) => panic!("a store opened on {url}"),
        Err(e) => e.to_string(),
    }
}

/// A node on a TLS-only cluster, with everything libpq needs in its store URL, and a player
/// signed in there.
struct NodeOverTls {
    cluster: PgCluster,
    files: LocalFiles,
    store: String,
    node: Node,
    token: String,
}

fn node_over_tls(dir: &Path) -> NodeOverTls {
    let (cluster, files) = tls_only_cluster(dir);
    let store = url(&cluster, "127.0.0.1", &full_tls(&files));
    let data = dir.join("node");
    std::fs::create_dir(&data).unwrap();
    let node = Node::start_on(&data, "node-1", &store, &["--demo"]);
    let token = sign_in(&node, "alice");
    NodeOverTls {
        cluster,
        files,
        store,
        node,
        token,
    }
}

#[test]
fn a_node_reaches_its_ledger_over_verified_tls_only() {
    if test_store::postgres() {
        eprintln!("runs on its own cluster: the SQLite pass of the suite covers it");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // The cluster is kept alive to the test's end (it stops when dropped).
    let NodeOverTls {
        cluster: _cluster,
        store,
        node,
        token,
        ..
    } = node_over_tls(dir.path());
    for key in ["b1", "b2", "b3"] {
        played(&node, &token, key, 100);
    }
    common::integrity(&node);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (encrypted, plain) = runtime.block_on(async {
        let server = Server::from_url(&store).unwrap();
        let (client, connection) = server.connect().await.unwrap();
        tokio::spawn(connection);
        let row = client
            .query_one(
                "SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl)
                 FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
                 WHERE a.datname = current_database() AND a.application_name LIKE 'croupier%'",
                &[],
            )
            .await
            .unwrap();
        (row.get::<_, i64>(0), row.get::<_, i64>(1))
    });
    assert!(
        encrypted >= 2,
        "the node's readers and writers: {encrypted}"
    );
    assert_eq!(plain, 0, "a connection of the node without TLS");
    drop(node);

    // The same integrity through the operator's command, over TLS too.
    let integrity = common::croupier()
        .args(["integrity", "--store", &store])
        .output()
        .unwrap();
    assert!(
        integrity.status.success(),
        "{}",
        String::from_utf8_lossy(&integrity.stderr)
    );
}

#[test]
fn a_url_that_would_not_verify_the_server_opens_no_store() {
    if test_store::postgres() {
        eprintln!("runs on its own cluster: the SQLite pass of the suite covers it");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (cluster, files) = tls_only_cluster(dir.path());
    let client_pair = format!(
        "sslcert={}&sslkey={}",
        files.cert.display(),
        files.key.display()
    );

    // No TLS asked for: the server turns the plain connection away.
    let plain = refusal(&url(&cluster, "127.0.0.1", "application_name=x"));
    assert!(plain.contains("no encryption"), "{plain}");
    // The system's roots do not know the cluster's CA (as a stranger's server would be).
    let system = refusal(&url(
        &cluster,
        "127.0.0.1",
        &format!("sslmode=require&{client_pair}"),
    ));
    assert!(system.contains("certificate"), "{system}");
    // The right CA, but a host name the certificate is not for.
    let other_name = refusal(&url(
        &cluster,
        "localhost",
        &format!(
            "sslmode=verify-full&sslrootcert={}&{client_pair}",
            files.ca.display()
        ),
    ));
    assert!(other_name.contains("certificate"), "{other_name}");
    // Verified, but without the client certificate the server asks for.
    let anonymous = refusal(&url(
        &cluster,
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={}", files.ca.display()),
    ));
    assert!(anonymous.contains("certificate"), "{anonymous}");
    // A wrong parameter is named.
    let typo = refusal(&url(&cluster, "127.0.0.1", "sslmode=verify-fulll"));
    assert!(typo.contains("sslmode=verify-fulll"), "{typo}");
}

#[test]
fn a_running_node_follows_a_renewal_of_its_ledger_servers_certificates() {
    if test_store::postgres() {
        eprintln!("runs on its own cluster: the SQLite pass of the suite covers it");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let NodeOverTls {
        cluster,
        files,
        node,
        token,
        ..
    } = node_over_tls(dir.path());
    played(&node, &token, "before", 100);

    // A new CA, renewed in place: the server's certificate and the CA it takes clients' from,
    // and the node's CA file and client certificate, all at the paths in use.
    let renewed = LocalCa::write(&dir.path().join("renewed"), &["127.0.0.1".to_owned()]).unwrap();
    std::thread::sleep(RELOAD_CHECK_EVERY + Duration::from_millis(100));
    for (from, to) in [
        (&renewed.ca, &files.ca),
        (&renewed.cert, &files.cert),
        (&renewed.key, &files.key),
    ] {
        std::fs::copy(from, to).unwrap();
    }
    cluster.sql("SELECT pg_reload_conf()").unwrap();
    // Every connection of the node is cut, as a failover or the server's restart would: the
    // node connects again, to a server that presents only the new CA's certificate and
    // accepts only its clients'.
    cluster
        .sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE 'croupier%'")
        .unwrap();

    let deadline = Instant::now() + Duration::from_secs(20);
    let answer = loop {
        let answer = post(
            &node.url("/api/v1/rounds"),
            Some(&token),
            Some("after"),
            &dice_bet(100),
        );
        match answer {
            Ok((201, _)) => break answer,
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(250)),
            _ => break answer,
        }
    };
    assert!(
        matches!(answer, Ok((201, _))),
        "no bet after the renewal (the node kept the old CA and certificate?): {answer:?}"
    );
    common::integrity(&node);
}
