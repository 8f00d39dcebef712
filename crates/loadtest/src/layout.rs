//! The layout of a `croupier up` stack, in one place: from the base ports, the node count and
//! the data folder, every name (`node-1`…), port (the gateway's admin port next to the
//! players' one, the supervisor's next to the control plane's), address, file in the data
//! folder and the core of each child's command line. `up` builds its children from it; the
//! drills' `stack`, `croupier drill` and the whole-process tests find the parts through it,
//! so none of them repeats the arithmetic.

use std::path::PathBuf;

use croupier_ledger::StoreLocation;

/// The operators' token in the data folder (ops APIs, admin API, control API, supervisor).
pub const OPS_TOKEN_FILE: &str = "ops-token";
/// The SQLite ledger in the data folder, when no other store is given.
pub const LEDGER_FILE: &str = "ledger.db";
/// The variable `croupier node` and `croupier up` read their `--store` from.
pub const STORE_ENV: &str = "CROUPIER_STORE";
/// The key sealing the backups of a SQLite ledger, made by `up` on its first run.
pub const BACKUP_KEY_FILE: &str = "backup-key";
/// The children's rotated logs, one `<name>.log` each.
pub const LOGS_DIR: &str = "logs";
/// `up --tls`'s local CA, certificate and key.
pub const TLS_DIR: &str = "tls";
/// The gateway child's name.
pub const GATEWAY: &str = "gateway";
/// The control plane child's name.
pub const CONTROL: &str = "control";
/// Every part of the stack listens on this address.
pub const HOST: &str = "127.0.0.1";

/// Where each part of one `croupier up` stack listens and keeps its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The data folder: the ledger (SQLite), the tokens, the keys and the logs.
    pub data: PathBuf,
    /// How many game nodes.
    pub nodes: u16,
    /// Port of node 0 (`node-1`); node `i` listens on `first_node_port + i`.
    pub first_node_port: u16,
    /// The players' port; the gateway's admin port is the next one.
    pub gateway_port: u16,
    /// The control plane's port; the supervisor's API is the next one.
    pub control_port: u16,
    /// The ledger every node shares; `None`: the SQLite file in the data folder.
    pub store: Option<StoreLocation>,
    /// Whether the components serve HTTPS (`up --tls`).
    pub tls: bool,
    /// The gateway's `--balance` (`leastconn` or `first`); `None`: `first`.
    pub balance: Option<String>,
}

/// `127.0.0.1:port`.
fn listen(port: u16) -> String {
    format!("{HOST}:{port}")
}

impl Layout {
    /// `up`'s defaults: three nodes from 7001, the gateway on 8000, control on 8080.
    pub fn new(data: PathBuf) -> Layout {
        Layout {
            data,
            nodes: 3,
            first_node_port: 7001,
            gateway_port: 8000,
            control_port: 8080,
            store: None,
            tls: false,
            balance: None,
        }
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }

    /// `scheme://127.0.0.1:port`.
    fn url(&self, port: u16) -> String {
        format!("{}://{}", self.scheme(), listen(port))
    }

    /// The name of node `index` (from 0): `node-1`, `node-2`…
    pub fn node_name(&self, index: u16) -> String {
        format!("node-{}", index + 1)
    }

    pub fn node_names(&self) -> Vec<String> {
        (0..self.nodes).map(|i| self.node_name(i)).collect()
    }

    pub fn node_port(&self, index: u16) -> u16 {
        self.first_node_port + index
    }

    pub fn node_listen(&self, index: u16) -> String {
        listen(self.node_port(index))
    }

    pub fn node_url(&self, index: u16) -> String {
        self.url(self.node_port(index))
    }

    pub fn players_listen(&self) -> String {
        listen(self.gateway_port)
    }

    /// The players' address: the gateway.
    pub fn players_url(&self) -> String {
        self.url(self.gateway_port)
    }

    pub fn admin_port(&self) -> u16 {
        self.gateway_port + 1
    }

    pub fn admin_listen(&self) -> String {
        listen(self.admin_port())
    }

    /// The gateway's admin API (nodes, blocks, metrics).
    pub fn admin_url(&self) -> String {
        self.url(self.admin_port())
    }

    pub fn control_listen(&self) -> String {
        listen(self.control_port)
    }

    pub fn control_url(&self) -> String {
        self.url(self.control_port)
    }

    pub fn supervisor_port(&self) -> u16 {
        self.control_port + 1
    }

    pub fn supervisor_listen(&self) -> String {
        listen(self.supervisor_port())
    }

    /// The supervisor's API: plain HTTP on loopback, even with `--tls`.
    pub fn supervisor_url(&self) -> String {
        format!("http://{}", self.supervisor_listen())
    }

    pub fn ops_token_file(&self) -> PathBuf {
        self.data.join(OPS_TOKEN_FILE)
    }

    pub fn ledger_file(&self) -> PathBuf {
        self.data.join(LEDGER_FILE)
    }

    /// The ledger the nodes share: the one given, else the SQLite file in the data folder.
    pub fn store(&self) -> StoreLocation {
        self.store
            .clone()
            .unwrap_or_else(|| StoreLocation::Sqlite(self.ledger_file()))
    }

    pub fn backup_key_file(&self) -> PathBuf {
        self.data.join(BACKUP_KEY_FILE)
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.data.join(LOGS_DIR)
    }

    /// The rotated log of the child called `name`.
    pub fn log_file(&self, name: &str) -> PathBuf {
        self.logs_dir().join(format!("{name}.log"))
    }

    pub fn tls_dir(&self) -> PathBuf {
        self.data.join(TLS_DIR)
    }

    fn data_arg(&self) -> String {
        self.data.display().to_string()
    }

    /// How the gateway spreads the players' work (`croupier gateway --balance`). Every node
    /// of `up` runs on this one machine: spreading the work over them only splits the same
    /// commits into smaller batches on the same cores (a SQLite file's writers take turns; a
    /// PostgreSQL server pays a fixed cost per batch). So the first node takes it while it
    /// has room and is eligible, and the others are its spares, on either store. `balance`
    /// overrides the choice.
    fn balance(&self) -> String {
        self.balance.clone().unwrap_or_else(|| "first".to_owned())
    }

    /// `--node name=url` for every node (the gateway's and the control plane's targets).
    fn node_targets(&self) -> Vec<String> {
        (0..self.nodes)
            .flat_map(|i| {
                let target = format!("{}={}", self.node_name(i), self.node_url(i));
                ["--node".to_owned(), target]
            })
            .collect()
    }

    /// Node `index`'s command line (after the binary): where it listens, its name and the data
    /// folder (the ledger is in its `environment`).
    pub fn node_command(&self, index: u16) -> Vec<String> {
        vec![
            "node".to_owned(),
            "--listen".to_owned(),
            self.node_listen(index),
            "--node-id".to_owned(),
            self.node_name(index),
            "--data".to_owned(),
            self.data_arg(),
        ]
    }

    /// What a node, or `croupier up`, of this stack is started with besides its command
    /// line: the ledger, in `CROUPIER_STORE`. A command line is every local user's to read
    /// (`ps`, `/proc/PID/cmdline`), and a `postgres://` URL may carry the database's password;
    /// a process's environment is its owner's alone.
    pub fn environment(&self) -> Vec<(&'static str, String)> {
        vec![(STORE_ENV, self.store().as_arg())]
    }

    /// The gateway's command line: its two ports, the data folder, how it spreads the work
    /// and every node.
    pub fn gateway_command(&self) -> Vec<String> {
        let mut command = vec![
            GATEWAY.to_owned(),
            "--listen".to_owned(),
            self.players_listen(),
            "--admin-listen".to_owned(),
            self.admin_listen(),
            "--data".to_owned(),
            self.data_arg(),
            "--balance".to_owned(),
            self.balance(),
        ];
        command.extend(self.node_targets());
        command
    }

    /// The control plane's command line: its port, the data folder, the gateway it drives,
    /// the players' address its checks use, the supervisor and every node.
    pub fn control_command(&self) -> Vec<String> {
        let mut command = vec![
            CONTROL.to_owned(),
            "--listen".to_owned(),
            self.control_listen(),
            "--data".to_owned(),
            self.data_arg(),
            "--gateway".to_owned(),
            format!("{GATEWAY}={}", self.admin_url()),
            "--check-url".to_owned(),
            self.players_url(),
            "--supervisor".to_owned(),
            self.supervisor_url(),
        ];
        command.extend(self.node_targets());
        command
    }

    /// The options naming this stack, spelled the same for `croupier up` and `croupier
    /// drill`: the data folder, the node count, the base ports and the ledger when given.
    pub fn stack_args(&self) -> Vec<String> {
        let mut args = self.folder_and_ports();
        if let Some(store) = &self.store {
            args.extend(["--store".to_owned(), store.as_arg()]);
        }
        args
    }

    fn folder_and_ports(&self) -> Vec<String> {
        vec![
            "--data".to_owned(),
            self.data_arg(),
            "--nodes".to_owned(),
            self.nodes.to_string(),
            "--first-node-port".to_owned(),
            self.first_node_port.to_string(),
            "--gateway-port".to_owned(),
            self.gateway_port.to_string(),
            "--control-port".to_owned(),
            self.control_port.to_string(),
        ]
    }

    /// `croupier up`'s own command line (after the binary) for this layout; the ledger is in
    /// its `environment`.
    pub fn up_command(&self) -> Vec<String> {
        let mut command = vec!["up".to_owned()];
        command.extend(self.folder_and_ports());
        if self.tls {
            command.push("--tls".to_owned());
        }
        command
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        Layout {
            nodes: 2,
            first_node_port: 7101,
            gateway_port: 8100,
            control_port: 8180,
            ..Layout::new(PathBuf::from("/srv/data"))
        }
    }

    #[test]
    fn addresses_follow_the_base_ports() {
        let layout = layout();
        assert_eq!(layout.node_names(), ["node-1", "node-2"]);
        assert_eq!(layout.node_url(1), "http://127.0.0.1:7102");
        assert_eq!(layout.players_url(), "http://127.0.0.1:8100");
        assert_eq!(layout.admin_url(), "http://127.0.0.1:8101");
        assert_eq!(layout.control_url(), "http://127.0.0.1:8180");
        assert_eq!(layout.supervisor_url(), "http://127.0.0.1:8181");
        let tls = Layout {
            tls: true,
            ..layout
        };
        assert_eq!(tls.admin_url(), "https://127.0.0.1:8101");
        assert_eq!(tls.supervisor_url(), "http://127.0.0.1:8181");
    }

    #[test]
    fn files_are_in_the_data_folder() {
        let layout = layout();
        assert_eq!(
            layout.store(),
            StoreLocation::Sqlite(PathBuf::from("/srv/data/ledger.db"))
        );
        assert_eq!(
            layout.log_file("node-2"),
            PathBuf::from("/srv/data/logs/node-2.log")
        );
        assert_eq!(
            layout.ops_token_file(),
            PathBuf::from("/srv/data/ops-token")
        );
    }

    #[test]
    fn the_ledger_goes_to_the_environment_never_to_a_command_line() {
        let secret = "postgres://app:s3cret@db/casino?password=s3cret";
        let on_postgres = Layout {
            store: Some(StoreLocation::Postgres(secret.into())),
            ..layout()
        };
        assert_eq!(on_postgres.environment(), [(STORE_ENV, secret.to_owned())]);
        for command in [on_postgres.node_command(0), on_postgres.up_command()] {
            assert!(!command.join(" ").contains("s3cret"), "{command:?}");
        }
        let default = layout().environment();
        assert_eq!(default, [(STORE_ENV, "/srv/data/ledger.db".to_owned())]);
    }

    #[test]
    fn children_name_every_node() {
        let layout = layout();
        let gateway = layout.gateway_command().join(" ");
        assert!(
            gateway.starts_with("gateway --listen 127.0.0.1:8100 --admin-listen 127.0.0.1:8101"),
            "{gateway}"
        );
        assert!(gateway.contains(" --balance first "), "{gateway}");
        let on_postgres = Layout {
            store: Some(StoreLocation::Postgres(
                "postgres://root@127.0.0.1/x".into(),
            )),
            ..layout.clone()
        };
        let gateway_on_postgres = on_postgres.gateway_command().join(" ");
        assert!(gateway_on_postgres.contains(" --balance first "));
        let chosen = Layout {
            balance: Some("leastconn".into()),
            ..layout.clone()
        };
        assert!(
            chosen
                .gateway_command()
                .join(" ")
                .contains(" --balance leastconn ")
        );
        assert!(
            gateway.ends_with(
                "--node node-1=http://127.0.0.1:7101 --node node-2=http://127.0.0.1:7102"
            )
        );
        let node = layout.node_command(1).join(" ");
        assert_eq!(
            node,
            "node --listen 127.0.0.1:7102 --node-id node-2 --data /srv/data"
        );
        let control = layout.control_command().join(" ");
        assert!(control.contains("--gateway gateway=http://127.0.0.1:8101 --check-url http://127.0.0.1:8100 --supervisor http://127.0.0.1:8181"), "{control}");
    }
}
