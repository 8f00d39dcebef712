//! libpq's password file, for a URL that carries no password.
//!
//! Operators of PostgreSQL keep passwords out of URLs, command lines and environments with a
//! password file: CloudNativePG's application secret holds one (`pgpass`), Patroni writes
//! one, and every libpq tool reads it. tokio-postgres does not. So a URL without a password
//! gets it here, as libpq would: from the file `passfile=` in the URL names, else the one
//! `PGPASSFILE` names, else `~/.pgpass`; each line `host:port:database:user:password`, `*`
//! matching anything in the first four fields, `\:` and `\\` for a colon and a backslash, `#`
//! starting a comment; the first line matching the connection wins.
//!
//! Stricter than libpq in two ways, so a mistake is seen at the start rather than as a
//! refused login later: a file named by `passfile=` or `PGPASSFILE` that cannot be read is an
//! error (libpq goes on without it), and so is a file that its group or others may read
//! (libpq warns and ignores it). A URL listing several hosts (a primary and its standbys) is
//! given one password: the hosts' lines must agree on it.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use tokio_postgres::Config;
use tokio_postgres::config::Host;

use crate::PgUrlError;

/// The environment variable naming the password file, as for libpq.
const PASSFILE_ENV: &str = "PGPASSFILE";

/// Where libpq's default port is when a URL names none.
const DEFAULT_PORT: u16 = 5432;

/// Sets `config`'s password from the password file when it has none. `named` is the URL's
/// `passfile=`; without it, `PGPASSFILE`, then `~/.pgpass` (which may be absent).
pub fn fill_password(config: &mut Config, named: Option<PathBuf>) -> Result<(), PgUrlError> {
    if config.get_password().is_some() {
        return Ok(());
    }
    let named = named.or_else(|| std::env::var_os(PASSFILE_ENV).map(PathBuf::from));
    let (path, required) = match named {
        Some(path) => (path, true),
        None => match std::env::var_os("HOME") {
            Some(home) => (Path::new(&home).join(".pgpass"), false),
            None => return Ok(()),
        },
    };
    let Some(text) = read_private(&path, required)? else {
        return Ok(());
    };
    if let Some(password) = password_for(config, &text, &path)? {
        config.password(password);
    }
    Ok(())
}

/// The file's text, if it is there; an error if it is named and missing, or readable by
/// anyone but its owner.
fn read_private(path: &Path, required: bool) -> Result<Option<String>, PgUrlError> {
    let unreadable = |e: std::io::Error| {
        PgUrlError::PasswordFile(format!("{} cannot be read: {e}", path.display()))
    };
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(unreadable(e)),
    };
    let mode = metadata.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(PgUrlError::PasswordFile(format!(
            "{} may be read by others (mode {mode:o}); make it u=rw (chmod 600)",
            path.display()
        )));
    }
    std::fs::read_to_string(path).map(Some).map_err(unreadable)
}

/// The password the file's first matching line gives each of the connection's hosts; `None`
/// when no line matches any. The hosts' passwords must be the same.
fn password_for(config: &Config, text: &str, path: &Path) -> Result<Option<String>, PgUrlError> {
    let entries: Vec<Entry> = text.lines().filter_map(Entry::parse).collect();
    let user = user_of(config);
    let database = config.get_dbname().unwrap_or(&user).to_owned();
    let mut found: Option<String> = None;
    for (index, host) in config.get_hosts().iter().enumerate() {
        let wanted = Wanted {
            host: host_name(host),
            port: port_of(config, index).to_string(),
            database: &database,
            user: &user,
        };
        let Some(entry) = entries.iter().find(|entry| entry.matches(&wanted)) else {
            continue;
        };
        match &found {
            Some(password) if *password != entry.password => {
                return Err(PgUrlError::PasswordFile(format!(
                    "{} gives the URL's hosts different passwords; one store's hosts share one",
                    path.display()
                )));
            }
            _ => found = Some(entry.password.clone()),
        }
    }
    Ok(found)
}

/// The user a connection logs in as: the URL's, or the one `fill_user` chose for it (empty
/// only when the operating system could not name one).
fn user_of(config: &Config) -> String {
    config.get_user().unwrap_or_default().to_owned()
}

/// The name a host is looked up by: a Unix socket's is `localhost`, as for libpq.
fn host_name(host: &Host) -> &str {
    match host {
        Host::Tcp(name) => name,
        Host::Unix(_) => "localhost",
    }
}

/// The port of host `index`: its own, the one port given for all, or the default.
fn port_of(config: &Config, index: usize) -> u16 {
    let ports = config.get_ports();
    match ports.len() {
        0 => DEFAULT_PORT,
        1 => ports[0],
        _ => ports.get(index).copied().unwrap_or(DEFAULT_PORT),
    }
}

/// What a line must match.
struct Wanted<'a> {
    host: &'a str,
    port: String,
    database: &'a str,
    user: &'a str,
}

/// One line of the file: four patterns and the password.
struct Entry {
    patterns: [String; 4],
    password: String,
}

impl Entry {
    /// A line's fields, unescaped; `None` for a comment, a blank line or one with fewer than
    /// five fields (libpq skips those too). Colons after the fourth belong to the password.
    fn parse(line: &str) -> Option<Entry> {
        if line.starts_with('#') || line.trim().is_empty() {
            return None;
        }
        let mut fields = vec![String::new()];
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => fields.last_mut()?.push(chars.next().unwrap_or('\\')),
                ':' if fields.len() < 5 => fields.push(String::new()),
                c => fields.last_mut()?.push(c),
            }
        }
        let password = fields.pop().filter(|_| fields.len() == 4)?;
        let patterns: [String; 4] = fields.try_into().ok()?;
        Some(Entry { patterns, password })
    }

    fn matches(&self, wanted: &Wanted<'_>) -> bool {
        let values = [
            wanted.host,
            wanted.port.as_str(),
            wanted.database,
            wanted.user,
        ];
        self.patterns
            .iter()
            .zip(values)
            .all(|(pattern, value)| pattern == "*" || pattern == value)
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn config(url: &str) -> Config {
        Config::from_str(url).unwrap()
    }

    fn looked_up(url: &str, text: &str) -> Result<Option<String>, String> {
        password_for(&config(url), text, Path::new("pgpass")).map_err(|e| e.to_string())
    }

    #[test]
    fn the_first_matching_line_gives_the_password() {
        let text = "# the ledger\n\
                    db.example:5432:other:croupier:wrong-database\n\
                    db.example:5433:ledger:croupier:wrong-port\n\
                    db.example:*:ledger:croupier:right\n\
                    *:*:*:*:too-late\n";
        let url = "postgres://croupier@db.example:5432/ledger";
        assert_eq!(looked_up(url, text), Ok(Some("right".to_owned())));
        let elsewhere = "postgres://croupier@db2.example:5432/ledger";
        assert_eq!(looked_up(elsewhere, text), Ok(Some("too-late".to_owned())));
        assert_eq!(looked_up(elsewhere, "db.example:*:*:*:x\n"), Ok(None));
    }

    #[test]
    fn escaped_colons_and_backslashes_and_colons_in_the_password() {
        let text = "db.example:5432:led\\:ger:crou\\\\pier:pa:ss\\:word\n";
        let url = "host=db.example dbname='led:ger' user='crou\\\\pier'";
        assert_eq!(looked_up(url, text), Ok(Some("pa:ss:word".to_owned())));
    }

    #[test]
    fn defaults_match_as_libpq_fills_them_in() {
        // No port: 5432. No database: the user's name. A Unix socket: localhost.
        let text = "localhost:5432:croupier:croupier:by-socket\n";
        let url = "host=/run/postgresql user=croupier";
        assert_eq!(looked_up(url, text), Ok(Some("by-socket".to_owned())));
    }

    #[test]
    fn several_hosts_share_a_password_or_are_refused() {
        let url = "postgres://croupier@pg-1:5432,pg-2:5433/ledger";
        let same = "pg-1:5432:*:*:pw-1\npg-2:5433:*:*:pw-1\n";
        assert_eq!(looked_up(url, same), Ok(Some("pw-1".to_owned())));
        let only_one = "pg-2:5433:*:*:pw-2\n";
        assert_eq!(looked_up(url, only_one), Ok(Some("pw-2".to_owned())));
        let different = "pg-1:5432:*:*:pw-1\npg-2:5433:*:*:pw-2\n";
        let refused = looked_up(url, different).unwrap_err();
        assert!(refused.contains("different passwords"), "{refused}");
        assert!(!refused.contains("pw-"), "{refused}");
    }

    #[test]
    fn short_lines_and_comments_are_skipped() {
        for text in ["#*:*:*:*:x\n", "*:*:*:x\n", "\n  \n"] {
            assert_eq!(looked_up("postgres://u@h/d", text), Ok(None), "{text:?}");
        }
    }

    #[test]
    fn a_url_with_a_password_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pgpass");
        std::fs::write(&file, "*:*:*:*:from-file\n").unwrap();
        let mut config = config("postgres://u:from-url@h/d");
        fill_password(&mut config, Some(file)).unwrap();
        assert_eq!(config.get_password(), Some(&b"from-url"[..]));
    }

    #[test]
    fn a_file_others_may_read_or_a_named_file_missing_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pgpass");
        std::fs::write(&file, "*:*:*:*:secret\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
        let mut open = config("postgres://u@h/d");
        let refused = fill_password(&mut open, Some(file.clone())).unwrap_err();
        assert!(refused.to_string().contains("chmod 600"), "{refused}");
        assert_eq!(open.get_password(), None);
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        fill_password(&mut open, Some(file)).unwrap();
        assert_eq!(open.get_password(), Some(&b"secret"[..]));
        let missing = dir.path().join("absent");
        let refused = fill_password(&mut config("postgres://u@h/d"), Some(missing)).unwrap_err();
        assert!(refused.to_string().contains("cannot be read"), "{refused}");
    }
}
