//! `pgbackrest info --output=json` read into types: what the dashboard shows of a PostgreSQL
//! ledger's backups and what the schedule decides from (the newest full and differential).
//! Only the fields Croupier reads are typed; the rest of pgBackRest's answer is ignored.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StanzaInfo {
    pub name: String,
    pub status: Status,
    #[serde(default)]
    pub backup: Vec<BackupSet>,
    #[serde(default)]
    pub archive: Vec<ArchiveRange>,
}

/// `code` 0 is `ok`; anything else is pgBackRest's reason (missing stanza, no valid backups…).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub code: i64,
    pub message: String,
}

/// One backup in the repository.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupSet {
    pub label: String,
    /// `full`, `diff` or `incr`.
    #[serde(rename = "type")]
    pub kind: String,
    pub timestamp: Span,
    #[serde(default)]
    pub info: Option<Sizes>,
    /// The WAL segments a restore of this backup needs.
    #[serde(default)]
    pub archive: Option<WalRange>,
    /// The full backup a differential one depends on.
    #[serde(default)]
    pub prior: Option<String>,
    /// Whether pgBackRest found damaged pages while copying (2.36+).
    #[serde(default)]
    pub error: Option<bool>,
}

impl BackupSet {
    pub fn stop_ms(&self) -> i64 {
        self.timestamp.stop * 1000
    }
}

/// Unix seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Span {
    pub start: i64,
    pub stop: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sizes {
    /// The cluster's size.
    pub size: u64,
    /// What this backup copied.
    pub delta: u64,
    pub repository: RepoSizes,
}

/// What the backup takes in the repository (compressed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepoSizes {
    pub size: u64,
    pub delta: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WalRange {
    pub start: Option<String>,
    pub stop: Option<String>,
}

/// The archived WAL of one database version and system id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArchiveRange {
    pub id: String,
    pub min: Option<String>,
    pub max: Option<String>,
}

impl StanzaInfo {
    /// The newest backup of `kind` (`full`, `diff`), or of any kind.
    pub fn newest(&self, kind: Option<&str>) -> Option<&BackupSet> {
        self.backup
            .iter()
            .filter(|b| kind.is_none_or(|k| b.kind == k))
            .max_by_key(|b| b.timestamp.stop)
    }
}

pub fn parse_info(json: &str) -> Result<Vec<StanzaInfo>, serde_json::Error> {
    serde_json::from_str(json)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `pgbackrest info --output=json` of pgBackRest 2.45 after a full and a differential.
    const INFO: &str = r#"[{"archive":[{"database":{"id":1,"repo-key":1},"id":"15-1","max":"000000010000000000000006","min":"000000010000000000000003"}],"backup":[{"archive":{"start":"000000010000000000000004","stop":"000000010000000000000004"},"backrest":{"format":5,"version":"2.45"},"database":{"id":1,"repo-key":1},"error":false,"info":{"delta":23222121,"repository":{"delta":2827937,"size":2827937},"size":23222121},"label":"20261201-163904F","lsn":{"start":"0/4000028","stop":"0/4000100"},"prior":null,"reference":null,"timestamp":{"start":1796143144,"stop":1796143150},"type":"full"},{"archive":{"start":"000000010000000000000006","stop":"000000010000000000000006"},"backrest":{"format":5,"version":"2.45"},"database":{"id":1,"repo-key":1},"error":false,"info":{"delta":8192,"repository":{"delta":512,"size":2827937},"size":23222121},"label":"20261201-163904F_20261201-170000D","lsn":{"start":"0/6000028","stop":"0/6000100"},"prior":"20261201-163904F","reference":["20261201-163904F"],"timestamp":{"start":1796144400,"stop":1796144402},"type":"diff"}],"cipher":"none","db":[{"id":1,"repo-key":1,"system-id":7714375853746373813,"version":"15"}],"name":"croupier","repo":[{"cipher":"none","key":1,"status":{"code":0,"message":"ok"}}],"status":{"code":0,"lock":{"backup":{"held":false}},"message":"ok"}}]"#;

    #[test]
    fn reads_pgbackrests_own_answer() {
        let stanzas = parse_info(INFO).unwrap();
        let stanza = &stanzas[0];
        assert_eq!((stanza.name.as_str(), stanza.status.code), ("croupier", 0));
        let full = stanza.newest(Some("full")).unwrap();
        assert_eq!(full.label, "20261201-163904F");
        assert_eq!(full.info.as_ref().unwrap().repository.size, 2_827_937);
        let newest = stanza.newest(None).unwrap();
        assert_eq!(
            (newest.kind.as_str(), newest.prior.as_deref()),
            ("diff", Some(full.label.as_str()))
        );
        assert_eq!(newest.stop_ms(), 1_796_144_402_000);
    }

    #[test]
    fn a_missing_stanza_is_a_status_not_a_crash() {
        let json = r#"[{"archive":[],"backup":[],"cipher":"none","db":[],"name":"croupier","repo":[{"cipher":"none","key":1,"status":{"code":1,"message":"missing stanza path"}}],"status":{"code":1,"lock":{"backup":{"held":false}},"message":"missing stanza path"}}]"#;
        let stanza = &parse_info(json).unwrap()[0];
        assert_eq!(stanza.status.code, 1);
        assert!(stanza.newest(None).is_none());
    }
}
