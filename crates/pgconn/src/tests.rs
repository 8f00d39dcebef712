use croupier_web::tls::local_ca::LocalCa;
use tokio_postgres::config::{SslMode, TargetSessionAttrs};

use super::{PgUrlError, Server};

const BASE: &str = "postgres://croupier@db.example:5432/ledger";

/// A folder with a CA certificate, and a certificate and key it signed.
fn files() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    LocalCa::write(dir.path(), &["db.example".to_owned()]).unwrap();
    dir
}

/// Why no server is made of `url` (empty when one is).
fn refusal(url: &str) -> String {
    Server::from_url(url)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default()
}

#[test]
fn a_url_without_sslmode_connects_without_tls() {
    for url in [
        BASE.to_owned(),
        format!("{BASE}?application_name=x"),
        format!("{BASE}?sslmode=prefer"),
        format!("{BASE}?sslmode=allow"),
        format!("{BASE}?sslmode=disable"),
        "host=db.example user=croupier dbname=ledger".to_owned(),
    ] {
        let server = Server::from_url(&url).unwrap();
        assert!(!server.encrypted(), "{url}");
        assert_eq!(server.config.get_ssl_mode(), SslMode::Disable, "{url}");
    }
}

#[test]
fn libpq_tls_parameters_are_taken_out_and_the_rest_kept() {
    let dir = files();
    let root = dir.path().join("ca.pem");
    let url = format!(
        "{BASE}?target_session_attrs=read-write&sslmode=verify-full&sslrootcert={}&application_name=node-1",
        root.display()
    );
    let server = Server::from_url(&url).unwrap();
    assert!(server.encrypted());
    assert_eq!(
        server.config.get_target_session_attrs(),
        TargetSessionAttrs::ReadWrite
    );
    assert_eq!(server.config.get_application_name(), Some("node-1"));
    assert_eq!(server.config.get_dbname(), Some("ledger"));
}

#[test]
fn every_mode_that_asks_for_tls_gets_it() {
    let dir = files();
    let root = dir.path().join("ca.pem");
    for mode in ["require", "verify-ca", "verify-full"] {
        let url = format!("{BASE}?sslmode={mode}&sslrootcert={}", root.display());
        assert!(Server::from_url(&url).unwrap().encrypted(), "{mode}");
    }
    // The system's roots, by name or by default.
    for url in [
        format!("{BASE}?sslmode=verify-full&sslrootcert=system"),
        format!("{BASE}?sslmode=require"),
        "host=db.example user=croupier sslmode=require".to_owned(),
    ] {
        assert!(Server::from_url(&url).unwrap().encrypted(), "{url}");
    }
}

#[test]
fn a_percent_encoded_path_is_decoded() {
    let dir = files();
    let root = dir.path().join("ca.pem").display().to_string();
    let encoded = root.replace('/', "%2F");
    let url = format!("{BASE}?sslmode=verify-full&sslrootcert={encoded}");
    assert!(Server::from_url(&url).unwrap().encrypted());
}

#[test]
fn a_client_certificate_needs_its_key() {
    let dir = files();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let both = format!(
        "{BASE}?sslmode=verify-full&sslrootcert={}&sslcert={}&sslkey={}",
        dir.path().join("ca.pem").display(),
        cert.display(),
        key.display()
    );
    assert!(Server::from_url(&both).unwrap().encrypted());
    let alone = format!("{BASE}?sslmode=require&sslcert={}", cert.display());
    assert!(matches!(
        Server::from_url(&alone),
        Err(PgUrlError::Unpaired("sslcert", "sslkey"))
    ));
}

#[test]
fn a_client_key_others_may_read_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = files();
    let key = dir.path().join("key.pem");
    let url = format!(
        "{BASE}?sslmode=verify-full&sslrootcert={}&sslcert={}&sslkey={}",
        dir.path().join("ca.pem").display(),
        dir.path().join("cert.pem").display(),
        key.display()
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let refused = Server::from_url(&url).err().unwrap().to_string();
    assert!(
        refused.contains(&format!(
            "private key {}: others may read it",
            key.display()
        )),
        "a key readable by everyone: {refused}"
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(Server::from_url(&url).unwrap().encrypted());
}

#[test]
fn a_wrong_tls_parameter_is_a_clear_error() {
    let unknown = Server::from_url(&format!("{BASE}?sslmode=sometimes")).err();
    assert!(
        matches!(&unknown, Some(PgUrlError::SslMode(mode)) if mode == "sometimes"),
        "{unknown:?}"
    );
    let missing = refusal(&format!(
        "{BASE}?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem"
    ));
    assert!(missing.contains("/nonexistent/ca.pem"), "{missing}");
    let not_a_certificate = tempfile::NamedTempFile::new().unwrap();
    let empty = refusal(&format!(
        "{BASE}?sslmode=verify-full&sslrootcert={}",
        not_a_certificate.path().display()
    ));
    assert!(empty.contains("no certificate"), "{empty}");
    // What tokio-postgres refuses is refused as before, saying what it is.
    let unknown_option = Server::from_url(&format!("{BASE}?no_such_option=1")).err();
    assert!(
        matches!(&unknown_option, Some(PgUrlError::Invalid(why)) if why.contains("no_such_option")),
        "{unknown_option:?}"
    );
}

#[test]
fn clear_text_is_told_apart_from_this_machine() {
    let dir = files();
    let verified = format!(
        "?sslmode=verify-full&sslrootcert={}",
        dir.path().join("ca.pem").display()
    );
    for (url, in_clear) in [
        ("postgres://u@127.0.0.1:5432/d".to_owned(), false),
        ("postgres://u@localhost/d".to_owned(), false),
        ("postgres://u@[::1]:5432/d".to_owned(), false),
        ("postgres://u@%2Frun%2Fpostgresql/d".to_owned(), false),
        ("postgres://u@db.example/d".to_owned(), true),
        (
            "postgres://u@127.0.0.1:5432,10.0.0.2:5432/d".to_owned(),
            true,
        ),
        (format!("postgres://u@db.example/d{verified}"), false),
    ] {
        let server = Server::from_url(&url).unwrap();
        assert_eq!(server.in_clear_across_a_network(), in_clear, "{url}");
    }
}

#[test]
fn a_revocation_list_is_read_with_the_url_and_a_missing_one_refused() {
    let dir = files();
    let verified = format!(
        "{BASE}?sslmode=verify-full&sslrootcert={}",
        dir.path().join("ca.pem").display()
    );
    let missing = dir.path().join("crl.pem");
    let refused = refusal(&format!("{verified}&sslcrl={}", missing.display()));
    assert!(
        refused.contains(&format!(
            "certificate revocation lists {}",
            missing.display()
        )),
        "{refused}"
    );
    std::fs::write(&missing, "").unwrap();
    let empty = refusal(&format!("{verified}&sslcrl={}", missing.display()));
    assert!(empty.contains("no certificate revocation list"), "{empty}");
    // libpq's encrypted client keys are not taken: said, not ignored.
    let password = Server::from_url(&format!("{verified}&sslpassword=secret")).err();
    assert!(
        matches!(&password, Some(PgUrlError::Invalid(why)) if why.contains("sslpassword")),
        "{}",
        password.map(|e| e.to_string()).unwrap_or_default()
    );
}

#[test]
fn passfile_is_taken_out_and_gives_the_password() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pgpass");
    std::fs::write(&file, "db.example:5432:ledger:croupier:from-the-file\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let url = format!("{BASE}?passfile={}&application_name=x", file.display());
    let server = Server::from_url(&url).unwrap();
    assert_eq!(server.config.get_password(), Some(&b"from-the-file"[..]));
    assert_eq!(server.config.get_application_name(), Some("x"));
}

/// What a test's log subscriber writes into.
#[derive(Clone, Default)]
struct CapturedLog(std::sync::Arc<parking_lot::Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLog {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_connection_the_server_ends_is_logged_with_why() {
    let url = std::env::var("CROUPIER_TEST_PG")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/postgres".to_owned());
    let mut victim_server = Server::from_url(&url).unwrap();
    victim_server.config.application_name("the test's victim");
    let server = Server::from_url(&url).unwrap();
    let log = CapturedLog::default();
    let writer = {
        let log = log.clone();
        move || log.clone()
    };
    let subscriber = tracing_subscriber::fmt()
        .with_writer(writer)
        .with_ansi(false)
        .finish();
    // One thread, so the driver's task logs through this thread's subscriber.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tracing::subscriber::with_default(subscriber, || {
        runtime.block_on(async {
            let (victim, driver) = victim_server.connect_driven().await.unwrap();
            let pid: i32 = victim
                .query_one("SELECT pg_backend_pid()", &[])
                .await
                .unwrap()
                .get(0);
            let (killer, connection) = server.connect().await.unwrap();
            tokio::spawn(connection);
            killer
                .execute("SELECT pg_terminate_backend($1)", &[&pid])
                .await
                .unwrap();
            driver.await.unwrap();
            drop(victim);
        })
    });
    let log = String::from_utf8(log.0.lock().clone()).unwrap();
    assert!(log.contains("the test's victim"), "{log}");
    assert!(
        log.contains("terminating connection due to administrator command"),
        "{log}"
    );
}

/// A URL naming no user, or an empty one (`postgres://@host/db`, what `postgres://$USER@…`
/// becomes in a shell without `$USER`), logs in as libpq would: as `PGUSER`, else as the
/// operating system's user. An empty user name was sent as it was, and the server refused
/// the connection ("no PostgreSQL user name specified in startup packet").
#[test]
fn a_url_without_a_user_logs_in_as_libpq_would() {
    let os_user = whoami::username().unwrap();
    let expected = super::default_user(std::env::var("PGUSER").ok().as_deref()).unwrap();
    for url in [
        "postgres://@db.example:5432/ledger",
        "postgres://db.example:5432/ledger",
        "postgres://@db.example:5432/ledger?sslmode=disable",
        "host=db.example dbname=ledger user=''",
    ] {
        let server = Server::from_url(url).unwrap();
        assert_eq!(server.config.get_user(), Some(expected.as_str()), "{url}");
    }
    assert_eq!(
        super::default_user(Some("croupier")).as_deref(),
        Some("croupier"),
        "PGUSER names the user"
    );
    assert_eq!(
        super::default_user(Some("")).as_deref(),
        Some(os_user.as_str())
    );
    assert_eq!(
        Server::from_url(BASE).unwrap().config.get_user(),
        Some("croupier"),
        "a URL's own user is kept"
    );
}
