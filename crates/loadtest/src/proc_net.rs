//! A process's TCP connections, read from `/proc`: the freeze-node drill finds node-1's
//! sessions on the database by their client ports, and whether bytes the node sent before it
//! stopped are still on their way (unacknowledged, or waiting unread on a server of this
//! machine), when the server's view of those sessions does not show them yet.

use std::collections::HashSet;
use std::io;

/// One established connection of the process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub local_port: u16,
    /// Bytes sent and not yet acknowledged, plus those the peer's socket holds unread when
    /// the peer is on this machine.
    pub in_flight: u64,
}

/// A socket as `/proc/<pid>/net/tcp` and `tcp6` list it. Addresses stay as the kernel
/// writes them: a connection's two ends are found by swapping them.
#[derive(Debug)]
struct Socket {
    local: String,
    remote: String,
    established: bool,
    tx_queue: u64,
    rx_queue: u64,
    inode: u64,
}

/// The established TCP connections of process `pid` (IPv4 and IPv6).
pub fn connections_of(pid: i32) -> io::Result<Vec<Connection>> {
    let own = socket_inodes(pid)?;
    let mut table = Vec::new();
    for family in ["tcp", "tcp6"] {
        match std::fs::read_to_string(format!("/proc/{pid}/net/{family}")) {
            Ok(text) => table.extend(text.lines().skip(1).filter_map(parse_socket)),
            // A kernel without IPv6 has no tcp6 table.
            Err(e) if e.kind() == io::ErrorKind::NotFound && family == "tcp6" => {}
            Err(e) => return Err(e),
        }
    }
    Ok(connections(&table, &own))
}

/// The process's connections in the network namespace's `table`, each with what is still
/// on its way to the peer.
fn connections(table: &[Socket], own: &HashSet<u64>) -> Vec<Connection> {
    table
        .iter()
        .filter(|socket| socket.established && own.contains(&socket.inode))
        .map(|socket| {
            let unread_by_peer = table
                .iter()
                .find(|peer| peer.local == socket.remote && peer.remote == socket.local)
                .map_or(0, |peer| peer.rx_queue);
            Connection {
                local_port: port(&socket.local).unwrap_or(0),
                in_flight: socket.tx_queue + unread_by_peer,
            }
        })
        .collect()
}

/// The inodes of the sockets among the open descriptors of `pid` (`socket:[inode]`).
fn socket_inodes(pid: i32) -> io::Result<HashSet<u64>> {
    let mut inodes = HashSet::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        // A descriptor closed while the folder is read is simply gone.
        let Ok(target) = std::fs::read_link(entry?.path()) else {
            continue;
        };
        let target = target.to_string_lossy();
        if let Some(inode) = target
            .strip_prefix("socket:[")
            .and_then(|rest| rest.strip_suffix(']'))
            .and_then(|inode| inode.parse().ok())
        {
            inodes.insert(inode);
        }
    }
    Ok(inodes)
}

/// One line of a `/proc/net/tcp` table:
/// `sl local rem st tx_queue:rx_queue tr:when retrnsmt uid timeout inode …`.
fn parse_socket(line: &str) -> Option<Socket> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (tx, rx) = fields.get(4)?.split_once(':')?;
    Some(Socket {
        local: (*fields.get(1)?).to_owned(),
        remote: (*fields.get(2)?).to_owned(),
        established: *fields.get(3)? == "01",
        tx_queue: u64::from_str_radix(tx, 16).ok()?,
        rx_queue: u64::from_str_radix(rx, 16).ok()?,
        inode: fields.get(9)?.parse().ok()?,
    })
}

/// The port of an `address:port` as the kernel writes it (both in hexadecimal).
fn port(address: &str) -> Option<u16> {
    u16::from_str_radix(address.rsplit_once(':')?.1, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    /// Two lines of a real table: a listener and one end of a loopback connection.
    #[test]
    fn a_table_line_is_read_field_by_field() {
        let listener = parse_socket(
            "   0: 0100007F:1538 00000000:0000 0A 00000000:00000000 00:00000000 00000000   \
             111        0 25014 1 0000000000000000 100 0 0 10 0",
        )
        .unwrap();
        assert!(!listener.established);
        assert_eq!(port(&listener.local), Some(5432));
        assert_eq!(listener.inode, 25014);
        let end = parse_socket(
            "   3: 0100007F:D3A4 0100007F:1538 01 0000001C:00000010 00:00000000 00000000     \
             0        0 91822 1 0000000000000000 20 4 30 10 -1",
        )
        .unwrap();
        assert!(end.established);
        assert_eq!((end.tx_queue, end.rx_queue, end.inode), (28, 16, 91822));
        assert!(parse_socket("  sl  local_address rem_address   st tx_queue").is_none());
    }

    /// This process's own connection: found by its port, and the bytes it wrote sit unread
    /// in the peer's socket until the peer reads them.
    #[test]
    fn a_connection_shows_what_its_peer_has_not_read_yet() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let client_port = client.local_addr().unwrap().port();
        let ours = |pid| {
            connections_of(pid)
                .unwrap()
                .into_iter()
                .find(|c| c.local_port == client_port)
                .expect("the client's connection is listed")
        };
        let pid = std::process::id() as i32;
        assert_eq!(ours(pid).in_flight, 0);
        client.write_all(b"SELECT 1").unwrap();
        assert_eq!(ours(pid).in_flight, 8);
        let mut read = [0u8; 8];
        server.read_exact(&mut read).unwrap();
        assert_eq!(ours(pid).in_flight, 0);
    }
}
