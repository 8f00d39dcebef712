//! S3 for tests: moto's server (PyPI `moto[server]`) on a loopback port, and, for clients
//! that speak HTTPS only (pgBackRest), socat terminating TLS in front of it with a
//! self-signed certificate made by openssl, which the client trusts as its CA file (no
//! verification turned off).
//!
//! moto's own `--ssl` is not used: its development server (werkzeug) ends a TLS connection
//! without close_notify after a `Connection: close` response with an empty body (every PUT),
//! which pgBackRest 2.45 on OpenSSL 3 reads as "TLS error [1:167772454] unexpected eof while
//! reading" and retries until it gives up. socat closes TLS properly.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{agent, free_port, get};

/// A moto S3 server on a free local port (plain HTTP), stopped when dropped.
pub struct Moto {
    child: Child,
    pub port: u16,
    pub endpoint: String,
}

impl Moto {
    pub fn start(log: &Path) -> Moto {
        let port = free_port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("moto_server (pip install 'moto[server]') is needed for the S3 tests: {e}")
            });
        let moto = Moto {
            child,
            port,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while get(&format!("{}/", moto.endpoint), None).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }

    /// Creates `bucket` (moto takes any credentials).
    pub fn create_bucket(&self, bucket: &str) {
        let response = agent()
            .put(&format!("{}/{bucket}", self.endpoint))
            .send("")
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "bucket {bucket} created");
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// socat serving TLS on a free loopback port and forwarding each connection to
/// `127.0.0.1:<backend>`; its certificate (CN 127.0.0.1, self-signed) is `ca_file`, readable
/// by everyone, its key only by this process's user. Stopped when dropped.
pub struct TlsFront {
    child: Child,
    pub port: u16,
    pub ca_file: PathBuf,
}

impl TlsFront {
    pub fn start(dir: &Path, backend: u16) -> TlsFront {
        std::fs::create_dir_all(dir).unwrap();
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let made = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=127.0.0.1", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stderr(Stdio::null())
            .status()
            .expect("openssl is needed to make the test's certificate");
        assert!(made.success(), "openssl req failed");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::set_permissions(&cert, std::fs::Permissions::from_mode(0o644)).unwrap();
        let port = free_port();
        let listen = format!(
            "OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,verify=0,cert={},key={}",
            cert.display(),
            key.display()
        );
        let child = Command::new("socat")
            .arg(listen)
            .arg(format!("TCP:127.0.0.1:{backend}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("socat.log")).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("socat (apt install socat) is needed: {e}"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "socat did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        TlsFront {
            child,
            port,
            ca_file: cert,
        }
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
