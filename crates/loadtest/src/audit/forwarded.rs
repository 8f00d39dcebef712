//! A blocked address naming another client in `X-Forwarded-For` must stay blocked: a server
//! that believes the header from any peer (or from one wrongly listed in `--trusted-proxies`)
//! turns every per-address limit and block into one header's worth of nothing. The checks
//! that get the audit blocked (scanning the players' port, guessing ops tokens) ask once more
//! with the header and read the verdict here.

use super::Status;

/// The client a blocked caller claims to forward for (TEST-NET-3, never a real peer).
pub(super) const SPOOFED_CLIENT: &str = "203.0.113.7";

/// The check's name in the report.
pub(super) const CHECK: &str = "forwarded_for_spoof";

/// The header a blocked caller adds.
pub(super) fn spoofed_header() -> (&'static str, String) {
    ("X-Forwarded-For", SPOOFED_CLIENT.to_owned())
}

/// The verdict on the answer (`status`, 0: none) to `who`, a blocked caller, asking again
/// with the spoofed header.
pub(super) fn verdict(who: &str, status: u16) -> (Status, String) {
    match status {
        429 => (
            Status::Pass,
            format!("{who}, naming {SPOOFED_CLIENT} in X-Forwarded-For, is still blocked"),
        ),
        0 => (
            Status::Fail,
            "could not be checked: the spoofed request got no answer".to_owned(),
        ),
        other => (
            Status::Fail,
            format!(
                "{who} named {SPOOFED_CLIENT} in X-Forwarded-For and was served ({other}): the server believes the header from it (is its address in --trusted-proxies?)"
            ),
        ),
    }
}
