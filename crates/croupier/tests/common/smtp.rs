//! A real SMTP server for tests: aiosmtpd (PyPI) on a loopback port, filing every message in
//! a Maildir the test reads back (status-page subscriptions, e-mailed pages).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{free_port, wait_for};

/// aiosmtpd on a free loopback port, filing messages in `maildir`; killed when dropped.
pub struct SmtpSink {
    child: std::process::Child,
    pub port: u16,
    maildir: PathBuf,
}

impl SmtpSink {
    pub fn start(dir: &Path) -> SmtpSink {
        let probe = Command::new("python3")
            .args(["-c", "import aiosmtpd"])
            .status()
            .unwrap();
        assert!(
            probe.success(),
            "aiosmtpd is missing: run scripts/test.sh (pip install aiosmtpd)"
        );
        let port = free_port();
        let maildir = dir.join("maildir");
        let child = Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for("the SMTP sink", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        SmtpSink {
            child,
            port,
            maildir,
        }
    }

    /// Every message filed so far: (recipient, whole text, quoted-printable decoded).
    pub fn messages(&self) -> Vec<(String, String)> {
        let Ok(entries) = std::fs::read_dir(self.maildir.join("new")) else {
            return Vec::new();
        };
        let mut messages: Vec<(std::time::SystemTime, String, String)> = entries
            .flatten()
            .filter_map(|e| {
                let text = quoted_printable(&std::fs::read_to_string(e.path()).ok()?);
                let to = text
                    .lines()
                    .find_map(|l| l.strip_prefix("X-RcptTo: "))?
                    .to_owned();
                Some((e.metadata().ok()?.modified().ok()?, to, text))
            })
            .collect();
        messages.sort();
        messages
            .into_iter()
            .map(|(_, to, text)| (to, text))
            .collect()
    }

    pub fn to(&self, address: &str) -> Vec<String> {
        self.messages()
            .into_iter()
            .filter(|(to, _)| to == address)
            .map(|(_, t)| t)
            .collect()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Text as written before quoted-printable encoding (RFC 2045: `=` + CRLF is a soft line
/// break, `=XX` a byte); lettre encodes long lines, such as those with links, that way.
fn quoted_printable(text: &str) -> String {
    let joined = text.replace("=\r\n", "").replace("=\n", "");
    let mut bytes = Vec::with_capacity(joined.len());
    let raw = joined.as_bytes();
    let mut i = 0;
    while i < raw.len() {
        let hex = raw
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (raw[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'=', Some(byte)) => {
                bytes.push(byte);
                i += 3;
            }
            (byte, _) => {
                bytes.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}
