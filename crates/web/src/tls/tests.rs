use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::{TcpListener, TcpStream};

use super::local_ca::{LocalCa, LocalFiles};
use super::*;
use crate::serve::{Hygiene, serve};

fn hosts() -> Vec<String> {
    vec!["localhost".into(), "127.0.0.1".into()]
}

/// A server on loopback with `files`, answering 200 "ok" on `/`.
async fn server(files: ServerFiles) -> SocketAddr {
    let acceptor = Acceptor::load(files).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = Router::new().route("/", get(|| async { "ok" }));
    tokio::spawn(serve(
        listener,
        router,
        std::future::pending(),
        Hygiene::operators(),
        Some(acceptor),
    ));
    addr
}

fn server_files(files: &LocalFiles, client_ca: bool) -> ServerFiles {
    ServerFiles {
        cert: files.cert.clone(),
        key: files.key.clone(),
        client_ca: client_ca.then(|| files.ca.clone()),
        crl: None,
    }
}

/// An open TLS connection: the server's certificate and a request sender.
struct Open {
    peer_cert: Vec<u8>,
    send: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
}

async fn open(addr: SocketAddr, config: ClientConfig) -> Result<Open, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from("localhost").unwrap();
    let tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let peer_cert = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    let (send, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    Ok(Open { peer_cert, send })
}

async fn status(open: &mut Open) -> Result<u16, String> {
    let request = hyper::Request::get("/")
        .header("host", "localhost")
        .body(Empty::new())
        .unwrap();
    let answer = open
        .send
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    Ok(answer.status().as_u16())
}

fn trusting(files: &LocalFiles, identity: bool) -> ClientConfig {
    client_config(&ClientFiles {
        ca: Some(files.ca.clone()),
        identity: identity.then(|| (files.cert.clone(), files.key.clone())),
        crl: None,
    })
    .unwrap()
}

fn local(folder: &Path) -> LocalFiles {
    LocalCa::write(folder, &hosts()).unwrap()
}

#[tokio::test]
async fn a_client_trusting_the_ca_is_served_and_others_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let files = local(dir.path());
    let addr = server(server_files(&files, false)).await;
    let mut open = open(addr, trusting(&files, false)).await.unwrap();
    assert_eq!(status(&mut open).await, Ok(200));
    let system = client_config(&ClientFiles::default()).unwrap();
    let refused = self::open(addr, system).await.err().unwrap();
    assert!(refused.contains("certificate"), "{refused}");
    let other = local(&dir.path().join("other"));
    assert!(self::open(addr, trusting(&other, false)).await.is_err());
}

#[tokio::test]
async fn plain_http_on_a_tls_port_gets_no_answer() {
    let dir = tempfile::tempdir().unwrap();
    let files = local(dir.path());
    let addr = server(server_files(&files, false)).await;
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut send, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = hyper::Request::get("/")
        .body(Empty::<Bytes>::new())
        .unwrap();
    assert!(send.send_request(request).await.is_err());
}

#[tokio::test]
async fn with_a_client_ca_only_clients_with_its_certificates_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let files = local(dir.path());
    let addr = server(server_files(&files, true)).await;
    let mut with = open(addr, trusting(&files, true)).await.unwrap();
    assert_eq!(status(&mut with).await, Ok(200));
    // TLS 1.3 reports a missing client certificate after the client's handshake ends: the
    // first request is where it shows.
    let refused = match open(addr, trusting(&files, false)).await {
        Err(e) => e,
        Ok(mut open) => status(&mut open).await.unwrap_err(),
    };
    assert!(!refused.is_empty());
}

#[tokio::test]
async fn a_renewed_certificate_serves_new_connections_and_open_ones_keep_going() {
    let dir = tempfile::tempdir().unwrap();
    let files = local(dir.path());
    let addr = server(server_files(&files, false)).await;
    let mut before = open(addr, trusting(&files, false)).await.unwrap();
    assert_eq!(status(&mut before).await, Ok(200));

    // The same folder gets a new CA and certificate (as `croupier tls init` would make).
    let renewed = local(&dir.path().join("renewed"));
    tokio::time::sleep(RELOAD_CHECK_EVERY + Duration::from_millis(100)).await;
    std::fs::copy(&renewed.cert, &files.cert).unwrap();
    std::fs::copy(&renewed.key, &files.key).unwrap();
    let mut after = None;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if let Ok(open) = open(addr, trusting(&renewed, false)).await {
            after = Some(open);
            break;
        }
    }
    let mut after = after.expect("the renewed certificate is served within seconds");
    assert_ne!(after.peer_cert, before.peer_cert);
    assert_eq!(status(&mut after).await, Ok(200));
    assert_eq!(
        status(&mut before).await,
        Ok(200),
        "the open connection kept going"
    );
}

#[tokio::test]
async fn a_broken_renewal_keeps_the_previous_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let files = local(dir.path());
    let addr = server(server_files(&files, false)).await;
    tokio::time::sleep(RELOAD_CHECK_EVERY + Duration::from_millis(100)).await;
    std::fs::write(&files.cert, "not a certificate").unwrap();
    tokio::time::sleep(RELOAD_CHECK_EVERY + Duration::from_millis(100)).await;
    let mut open = open(addr, trusting(&files, false)).await.unwrap();
    assert_eq!(status(&mut open).await, Ok(200));
}

#[test]
fn a_server_refuses_to_start_with_a_broken_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let files = local(dir.path());
    std::fs::write(&files.cert, "garbage").unwrap();
    let error = Acceptor::load(server_files(&files, false)).err().unwrap();
    assert!(error.to_string().contains("cert.pem"), "{error}");
}

/// As PostgreSQL refuses a server key and libpq a client key that others may read: a key
/// readable by anyone is refused, the server's and a client's alike, with the fix named; a
/// key owned by root may be read by its group.
#[test]
fn a_private_key_others_may_read_is_refused() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = tempfile::tempdir().unwrap();
    let files = local(dir.path());
    let client = ClientFiles {
        ca: Some(files.ca.clone()),
        identity: Some((files.cert.clone(), files.key.clone())),
        crl: None,
    };
    let chmod =
        |mode| std::fs::set_permissions(&files.key, std::fs::Permissions::from_mode(mode)).unwrap();
    let group_read = if std::fs::metadata(&files.key).unwrap().uid() == 0 {
        (vec![0o644, 0o604, 0o660], vec![0o600, 0o400, 0o640])
    } else {
        (vec![0o644, 0o604, 0o660, 0o640], vec![0o600, 0o400])
    };
    let (refused, accepted) = group_read;
    for open in refused {
        chmod(open);
        let server = Acceptor::load(server_files(&files, false)).err().unwrap();
        assert!(
            server.to_string().contains("others may read it")
                && server.to_string().contains("chmod 600"),
            "{open:o}: {server}"
        );
        let client = client_config(&client).err().unwrap();
        assert!(
            client.to_string().contains("key.pem: others may read it"),
            "{client}"
        );
    }
    for private in accepted {
        chmod(private);
        assert!(
            Acceptor::load(server_files(&files, false)).is_ok(),
            "{private:o}"
        );
        assert!(client_config(&client).is_ok(), "{private:o}");
    }
}

#[test]
fn the_key_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let files = local(dir.path());
    let mode = std::fs::metadata(&files.key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

/// Copies a renewal's files over the ones in use, as a renewal in place does, once the
/// files' last reading is old enough to be looked at again.
async fn renew_in_place(pairs: &[(&Path, &Path)]) {
    tokio::time::sleep(RELOAD_CHECK_EVERY + Duration::from_millis(100)).await;
    for (from, to) in pairs {
        std::fs::copy(from, to).unwrap();
    }
}

/// `open` with `config`, tried for a few seconds, each connection asked for one answer.
async fn answered_within_seconds(addr: SocketAddr, config: &ClientConfig) -> Result<Open, String> {
    let mut last = String::new();
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        match open(addr, config.clone()).await {
            Ok(mut open) => match status(&mut open).await {
                Ok(200) => return Ok(open),
                other => last = format!("{other:?}"),
            },
            Err(e) => last = e,
        }
    }
    Err(last)
}

#[tokio::test]
async fn a_running_client_trusts_a_renewed_ca_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let files = local(dir.path());
    let addr = server(server_files(&files, false)).await;
    let client = trusting(&files, false);
    let mut before = open(addr, client.clone()).await.unwrap();
    assert_eq!(status(&mut before).await, Ok(200));

    // A new CA and a certificate it signed, for the server and the client alike.
    let renewed = local(&dir.path().join("renewed"));
    renew_in_place(&[
        (&renewed.cert, &files.cert),
        (&renewed.key, &files.key),
        (&renewed.ca, &files.ca),
    ])
    .await;
    let after = answered_within_seconds(addr, &client)
        .await
        .expect("the client, as it was made, verifies the renewed server");
    assert_ne!(after.peer_cert, before.peer_cert);
}

#[tokio::test]
async fn a_running_client_presents_its_renewed_certificate_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server_side = local(&dir.path().join("server"));
    let client_side = local(&dir.path().join("client"));
    // The server accepts the certificates of the client's CA.
    let accepted = dir.path().join("clients-ca.pem");
    std::fs::copy(&client_side.ca, &accepted).unwrap();
    let addr = server(ServerFiles {
        cert: server_side.cert.clone(),
        key: server_side.key.clone(),
        client_ca: Some(accepted.clone()),
        crl: None,
    })
    .await;
    let client = client_config(&ClientFiles {
        ca: Some(server_side.ca.clone()),
        identity: Some((client_side.cert.clone(), client_side.key.clone())),
        crl: None,
    })
    .unwrap();
    let mut before = open(addr, client.clone()).await.unwrap();
    assert_eq!(status(&mut before).await, Ok(200));

    // The clients' CA is replaced: the server accepts only the new one's certificates, and
    // the client's files now hold one it signed.
    let renewed = local(&dir.path().join("renewed"));
    renew_in_place(&[
        (&renewed.ca, &accepted),
        (&renewed.cert, &client_side.cert),
        (&renewed.key, &client_side.key),
    ])
    .await;
    answered_within_seconds(addr, &client)
        .await
        .expect("the client, as it was made, presents its renewed certificate");
}

#[tokio::test]
async fn a_broken_client_file_keeps_the_previous_ones() {
    let dir = tempfile::tempdir().unwrap();
    let files = local(dir.path());
    let addr = server(server_files(&files, false)).await;
    let client = trusting(&files, false);
    tokio::time::sleep(RELOAD_CHECK_EVERY + Duration::from_millis(100)).await;
    std::fs::write(&files.ca, "not a certificate").unwrap();
    tokio::time::sleep(RELOAD_CHECK_EVERY + Duration::from_millis(100)).await;
    let mut open = open(addr, client).await.unwrap();
    assert_eq!(status(&mut open).await, Ok(200));
}

/// A CA's files as `LocalCa::write` makes them, its certificate for `hosts()` with serial
/// number 7, and its revocation lists in `folder`: `revoked.pem` lists serial 7,
/// `others.pem` lists serial 8 only.
fn revocable(folder: &Path) -> LocalFiles {
    use rcgen::{
        BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer,
        ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams,
        SerialNumber,
    };
    let now = time::OffsetDateTime::now_utc();
    let mut ca = CertificateParams::default();
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let mut leaf = CertificateParams::new(hosts()).unwrap();
    leaf.serial_number = Some(SerialNumber::from(7u64));
    leaf.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&key, &ca).unwrap();
    let list = |serial: u64| {
        CertificateRevocationListParams {
            this_update: now - time::Duration::hours(1),
            next_update: now + time::Duration::days(1),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: vec![RevokedCertParams {
                serial_number: SerialNumber::from(serial),
                revocation_time: now - time::Duration::minutes(5),
                reason_code: None,
                invalidity_date: None,
            }],
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&ca)
        .unwrap()
        .pem()
        .unwrap()
    };
    std::fs::create_dir_all(folder).unwrap();
    let files = LocalFiles::in_folder(folder);
    std::fs::write(&files.ca, ca.pem()).unwrap();
    std::fs::write(&files.cert, cert.pem()).unwrap();
    std::fs::write(&files.key, key.serialize_pem()).unwrap();
    std::fs::set_permissions(
        &files.key,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    std::fs::write(folder.join("revoked.pem"), list(7)).unwrap();
    std::fs::write(folder.join("others.pem"), list(8)).unwrap();
    files
}

fn checking(files: &LocalFiles, crl: &Path) -> Result<ClientConfig, TlsError> {
    client_config(&ClientFiles {
        ca: Some(files.ca.clone()),
        identity: None,
        crl: Some(crl.to_path_buf()),
    })
}

#[tokio::test]
async fn a_server_whose_certificate_is_revoked_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let files = revocable(dir.path());
    let addr = server(server_files(&files, false)).await;
    let mut served = open(
        addr,
        checking(&files, &dir.path().join("others.pem")).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(status(&mut served).await, Ok(200));
    let refused = open(
        addr,
        checking(&files, &dir.path().join("revoked.pem")).unwrap(),
    )
    .await
    .err()
    .unwrap();
    assert!(refused.to_lowercase().contains("revoked"), "{refused}");
    // A list from another CA says nothing of this server's certificate: refused too.
    let other = revocable(&dir.path().join("other"));
    let unknown = open(
        addr,
        checking(&files, &other.ca.with_file_name("others.pem")).unwrap(),
    )
    .await
    .err()
    .unwrap();
    assert!(unknown.to_lowercase().contains("revocation"), "{unknown}");
}

#[tokio::test]
async fn a_running_client_reads_a_new_revocation_list_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let files = revocable(dir.path());
    let addr = server(server_files(&files, false)).await;
    let in_use = dir.path().join("in-use.pem");
    std::fs::copy(dir.path().join("others.pem"), &in_use).unwrap();
    let client = checking(&files, &in_use).unwrap();
    let mut before = open(addr, client.clone()).await.unwrap();
    assert_eq!(status(&mut before).await, Ok(200));
    renew_in_place(&[(&dir.path().join("revoked.pem"), &in_use)]).await;
    let mut refused = None;
    for _ in 0..20 {
        if let Err(e) = open(addr, client.clone()).await {
            refused = Some(e);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let refused = refused.expect("the client, as it was made, reads the new list");
    assert!(refused.to_lowercase().contains("revoked"), "{refused}");
}

#[test]
fn a_missing_or_empty_revocation_list_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let files = local(dir.path());
    let missing = checking(&files, &dir.path().join("none.pem"))
        .err()
        .unwrap();
    assert!(missing.to_string().contains("none.pem"), "{missing}");
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let empty = checking(&files, &empty).err().unwrap().to_string();
    assert!(empty.contains("no certificate revocation list"), "{empty}");
}

/// A server asking for client certificates of `files`' CA, checked against the lists in
/// `crl`.
fn checking_clients(files: &LocalFiles, crl: &Path) -> ServerFiles {
    ServerFiles {
        crl: Some(crl.to_path_buf()),
        ..server_files(files, true)
    }
}

/// A client trusting `files`' CA and presenting its certificate (serial 7).
fn presenting(files: &LocalFiles) -> ClientConfig {
    client_config(&ClientFiles {
        ca: Some(files.ca.clone()),
        identity: Some((files.cert.clone(), files.key.clone())),
        crl: None,
    })
    .unwrap()
}

/// Whether a request over a new connection is answered: with TLS 1.3 a server refuses a
/// client's certificate after the client's side of the handshake is done, so the refusal
/// may come at the first request rather than at `open`.
async fn served(addr: SocketAddr, client: ClientConfig) -> Result<u16, String> {
    let mut open = open(addr, client).await?;
    status(&mut open).await
}

#[tokio::test]
async fn a_client_whose_certificate_is_revoked_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let files = revocable(dir.path());
    let listing_others = server(checking_clients(&files, &dir.path().join("others.pem"))).await;
    assert_eq!(served(listing_others, presenting(&files)).await, Ok(200));
    let listing_it = server(checking_clients(&files, &dir.path().join("revoked.pem"))).await;
    assert!(served(listing_it, presenting(&files)).await.is_err());
    // A list from another CA says nothing of the client's certificate: refused too.
    let other = revocable(&dir.path().join("other"));
    let unknown = server(checking_clients(
        &files,
        &other.ca.with_file_name("others.pem"),
    ))
    .await;
    assert!(served(unknown, presenting(&files)).await.is_err());
}

#[tokio::test]
async fn a_running_server_reads_a_new_revocation_list_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let files = revocable(dir.path());
    let in_use = dir.path().join("in-use.pem");
    std::fs::copy(dir.path().join("others.pem"), &in_use).unwrap();
    let addr = server(checking_clients(&files, &in_use)).await;
    assert_eq!(served(addr, presenting(&files)).await, Ok(200));
    renew_in_place(&[(&dir.path().join("revoked.pem"), &in_use)]).await;
    let mut refused = false;
    for _ in 0..20 {
        if served(addr, presenting(&files)).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(refused, "the server, as it was started, reads the new list");
}

#[test]
fn a_server_with_a_missing_revocation_list_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let files = local(dir.path());
    let missing = server_config(&checking_clients(&files, &dir.path().join("none.pem")))
        .err()
        .unwrap();
    assert!(missing.to_string().contains("none.pem"), "{missing}");
}

/// `GET https://localhost:<port>/` through a blocking agent (`blocking::agent`) that checks
/// the server against `crl`: the answer's body, or why there is none.
async fn blocking_get(addr: SocketAddr, files: &LocalFiles, crl: &Path) -> Result<String, String> {
    let files = ClientFiles {
        ca: Some(files.ca.clone()),
        identity: None,
        crl: Some(crl.to_path_buf()),
    };
    let url = format!("https://localhost:{}/", addr.port());
    tokio::task::spawn_blocking(move || {
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(5)))
            .build();
        let agent = super::blocking::agent(config, &files).map_err(|e| e.to_string())?;
        let mut answer = agent.get(&url).call().map_err(|e| e.to_string())?;
        answer
            .body_mut()
            .read_to_string()
            .map_err(|e| e.to_string())
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn the_operators_blocking_tools_refuse_a_revoked_server() {
    let dir = tempfile::tempdir().unwrap();
    let files = revocable(dir.path());
    let addr = server(server_files(&files, false)).await;
    let served = blocking_get(addr, &files, &dir.path().join("others.pem")).await;
    assert_eq!(served, Ok("ok".to_owned()));
    let refused = blocking_get(addr, &files, &dir.path().join("revoked.pem"))
        .await
        .unwrap_err();
    assert!(refused.to_lowercase().contains("revoked"), "{refused}");
    let unknown = revocable(&dir.path().join("other"));
    let refused = blocking_get(addr, &files, &unknown.ca.with_file_name("others.pem"))
        .await
        .unwrap_err();
    assert!(refused.to_lowercase().contains("revocation"), "{refused}");
}
