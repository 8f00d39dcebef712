//! The disk-full drill's pieces: a small filesystem mounted on the stack's data folder (a
//! tmpfs with a size, so the drill fills 64 MiB rather than a real disk), a ballast file that
//! fills it under load and holds it full, then is deleted; and the checks only this drill
//! has: the players' errors while full are 503s (a probe sign-in shows the body they get),
//! none after space returns, play resumes within `RESUME_WITHIN`, and the control plane has
//! an incident that names the folder.
// libc calls for signals, process groups or descriptors; each block says why it is sound.
#![allow(unsafe_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::error::LoadError;
use crate::http::{Call, HttpClient};
use crate::stack::Stack;
use crate::stats::Incident;

/// Size of the filesystem the drill mounts.
pub const FILESYSTEM: &str = "64m";
/// Play must be back this soon after the ballast is deleted.
pub const RESUME_WITHIN: Duration = Duration::from_secs(5);
/// The shortest time the disk stays full: long enough for two scrapes to fire the alert.
pub const MIN_HOLD: Duration = Duration::from_secs(8);
const BALLAST: &str = "ballast.drill";
/// How often the probe signs in while the disk is full.
const PROBE_EVERY: Duration = Duration::from_millis(250);

/// A tmpfs mounted on the data folder, unmounted when dropped.
pub struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Mounts a `FILESYSTEM` tmpfs on `folder` (created, and empty); a clear error when this
/// process may not mount (not root).
pub fn mount(folder: &Path) -> Result<Mounted, LoadError> {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(LoadError::Stack(
            "the disk-full drill mounts a small tmpfs for the data folder and needs root; skipped"
                .into(),
        ));
    }
    std::fs::create_dir_all(folder).map_err(|e| LoadError::io("creating the data folder", e))?;
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={FILESYSTEM}"), "tmpfs"])
        .arg(folder)
        .status()
        .map_err(|e| LoadError::io("running mount", e))?;
    if !status.success() {
        return Err(LoadError::Stack(format!(
            "cannot mount a tmpfs on {} ({status}); skipped",
            folder.display()
        )));
    }
    Ok(Mounted(folder.to_path_buf()))
}

/// Writes to the ballast until the filesystem refuses; bytes written.
fn top_up(file: &mut std::fs::File, chunk: &[u8]) -> u64 {
    let mut written = 0;
    while file.write_all(chunk).is_ok() {
        written += chunk.len() as u64;
    }
    let _ = file.flush();
    written
}

/// Fills `folder`'s filesystem and keeps it full for `hold` (topping up what anything else
/// frees), probing the players' API once full; then deletes the ballast. Returns what was done.
pub async fn fill_and_free(stack: &Stack, hold: Duration) -> Result<String, LoadError> {
    let folder = stack.layout().data.clone();
    let path = folder.join(BALLAST);
    let filling = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || -> Result<u64, LoadError> {
            let mut file = std::fs::File::create(&path)
                .map_err(|e| LoadError::io("creating the ballast", e))?;
            let mut total = top_up(&mut file, &vec![0x5a; 1 << 20]);
            let small = vec![0x5a; 4096];
            total += top_up(&mut file, &small);
            let until = Instant::now() + hold;
            while Instant::now() < until {
                std::thread::sleep(Duration::from_millis(50));
                total += top_up(&mut file, &small);
            }
            Ok(total)
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let probe = probe_sign_ins(stack, hold.saturating_sub(Duration::from_secs(2))).await;
    let written = filling
        .await
        .map_err(|e| LoadError::Stack(format!("the ballast task failed: {e}")))??;
    std::fs::remove_file(&path).map_err(|e| LoadError::io("deleting the ballast", e))?;
    Ok(format!(
        "filled {} ({FILESYSTEM} tmpfs) with a {} MiB ballast, held it full {} s, then deleted it; \
         sign-ins while full: {probe}",
        folder.display(),
        written >> 20,
        hold.as_secs()
    ))
}

/// What a player signing in while the disk is full gets: status and body of the first sign-in
/// that was refused, after how many went through. A ledger whose own files still have room
/// (SQLite reuses its write-ahead log in place) may accept sign-ins for a while; the probe
/// signs in as a new player every `PROBE_EVERY` for up to `within` until one is refused.
async fn probe_sign_ins(stack: &Stack, within: Duration) -> String {
    let http = match HttpClient::new(1, Duration::from_secs(15)) {
        Ok(http) => http,
        Err(e) => return format!("got no client ({e})"),
    };
    let until = Instant::now() + within;
    let mut accepted = 0;
    loop {
        let call = Call::post(
            format!("{}/api/v1/sessions", stack.gateway()),
            &serde_json::json!({"player": format!("disk-full-probe-{accepted}")}),
        );
        let answer = match http.send(0, call).await {
            Ok(answer) => answer,
            Err(e) => return format!("got no answer ({e}) after {accepted} accepted"),
        };
        if !(200..300).contains(&answer.status) {
            return format!(
                "got {} {} after {accepted} accepted",
                answer.status,
                answer.json()
            );
        }
        accepted += 1;
        if Instant::now() >= until {
            return format!("{accepted} accepted and none refused");
        }
        tokio::time::sleep(PROBE_EVERY).await;
    }
}

/// The reasons the disk-full drill fails, given the failed requests after the fault began and
/// the instant space came back.
pub fn check_errors(incidents: &[&Incident], space_back: Instant) -> Vec<String> {
    let mut reasons = Vec::new();
    let not_503: Vec<&str> = incidents
        .iter()
        .filter(|i| i.failed && !i.what.ends_with(" 503"))
        .map(|i| i.what.as_str())
        .collect();
    if let Some(first) = not_503.first() {
        reasons.push(format!(
            "{} player-visible errors were not 503 (first: {first})",
            not_503.len()
        ));
    }
    let late = incidents
        .iter()
        .filter(|i| i.failed && i.at > space_back + RESUME_WITHIN)
        .count();
    if late > 0 {
        reasons.push(format!(
            "{late} requests failed more than {} s after space returned",
            RESUME_WITHIN.as_secs()
        ));
    }
    reasons
}

/// Whether the control plane opened an incident naming `folder`; the reason when not.
pub async fn check_incident(stack: &Stack) -> Option<String> {
    let folder = stack.layout().data.display().to_string();
    let http = match HttpClient::new(1, Duration::from_secs(10)) {
        Ok(http) => http,
        Err(e) => return Some(format!("cannot ask the control plane: {e}")),
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let call =
            Call::get(format!("{}/api/v1/incidents", stack.control())).token(&stack.ops_token);
        if let Ok(answer) = http.send(0, call).await
            && answer
                .bytes
                .windows(folder.len())
                .any(|w| w == folder.as_bytes())
        {
            return None;
        }
        if Instant::now() > deadline {
            return Some(format!("no incident names the data folder {folder}"));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
