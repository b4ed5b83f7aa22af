//! Container networking, rootless: every container with a network gets its own
//! `passt` (Debian's package), started by its monitor. The VMM's virtio-net device
//! hands the guest's Ethernet frames to passt over a Unix stream socket, and passt
//! turns them into ordinary sockets of the user running hull: outbound TCP, UDP and
//! ICMP, DNS forwarded to the host's resolver, and published ports (`-p`) as
//! listening sockets on the host. No root, no tap device, no bridge.
//!
//! Inside the guest: eth0 is 10.0.2.15/24, the gateway 10.0.2.2 (which passt maps to
//! the host's loopback, so a server on the host's 127.0.0.1 answers there), DNS
//! 10.0.2.3 (forwarded by passt). `--network none` leaves loopback only.

use std::fmt;
use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The guest's address, prefix, gateway and DNS server.
pub const GUEST_ADDRESS: &str = "10.0.2.15";
pub const GUEST_PREFIX: u8 = 24;
pub const GATEWAY: &str = "10.0.2.2";
pub const DNS: &str = "10.0.2.3";
/// The guest's MTU: frames then fit the RX buffers of a virtio-net driver without
/// mergeable buffers.
pub const MTU: u32 = 1500;
/// How long passt gets to create its socket.
const PASST_START: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("network {0} not found (hull offers: none, and the default user-mode network)")]
    UnknownNetwork(String),
    #[error("invalid publish spec {spec:?}: {reason}")]
    Publish { spec: String, reason: String },
    #[error("conflicting options: port publishing and the container type network mode")]
    PublishWithoutNetwork,
    #[error("passt not found: install the Debian package passt (or run with --network none)")]
    PasstMissing,
    #[error("passt (the user-mode network of this container) failed: {0}")]
    Passt(String),
    #[error(
        "cannot publish port {port}: ports below {first_unprivileged} are privileged on this host \
         (net.ipv4.ip_unprivileged_port_start) and hull runs without privileges"
    )]
    PrivilegedPort { port: u16, first_unprivileged: u16 },
}

/// `--network`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkMode {
    /// Loopback only (and what records made before networking existed say).
    #[default]
    None,
    /// The user-mode network through passt.
    User,
}

impl NetworkMode {
    /// Docker's names: `none`; `bridge` and `default` are the user-mode network.
    pub fn parse(name: &str) -> Result<NetworkMode, NetworkError> {
        match name {
            "none" => Ok(NetworkMode::None),
            "bridge" | "default" | "user" | "passt" => Ok(NetworkMode::User),
            other => Err(NetworkError::UnknownNetwork(other.to_owned())),
        }
    }

    /// As `inspect` shows it.
    pub fn name(self) -> &'static str {
        match self {
            NetworkMode::None => "none",
            NetworkMode::User => "bridge",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// One `-p [IP:][HOST_PORT:]CONTAINER_PORT[/tcp|udp]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    /// The host address to listen on; all addresses when `None`.
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Protocol,
}

impl PortMapping {
    /// Parses a `-p` value. A missing host port is chosen now: a free port the
    /// kernel hands out.
    pub fn parse(spec: &str) -> Result<PortMapping, NetworkError> {
        let bad = |reason: &str| NetworkError::Publish {
            spec: spec.to_owned(),
            reason: reason.to_owned(),
        };
        let (ports, protocol) = match spec.rsplit_once('/') {
            Some((p, "tcp")) => (p, Protocol::Tcp),
            Some((p, "udp")) => (p, Protocol::Udp),
            Some(_) => return Err(bad("the protocol must be tcp or udp")),
            None => (spec, Protocol::Tcp),
        };
        let parts: Vec<&str> = ports.split(':').collect();
        let (ip, host, container) = match parts[..] {
            [c] => (None, None, c),
            [h, c] => (None, Some(h), c),
            [ip, h, c] => (Some(ip), Some(h).filter(|h| !h.is_empty()), c),
            _ => return Err(bad("expected [IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL]")),
        };
        let port = |p: &str| {
            if p.contains('-') {
                return Err(bad("port ranges are not supported"));
            }
            p.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| bad("ports are 1 to 65535"))
        };
        let host_ip = match ip {
            Some(ip) => Some(
                ip.parse::<Ipv4Addr>()
                    .map_err(|_| bad("the host address must be IPv4"))?,
            ),
            None => None,
        };
        let container_port = port(container)?;
        let host_port = match host {
            Some(h) => port(h)?,
            None => free_port(host_ip, protocol).map_err(|e| bad(&format!("no free host port: {e}")))?,
        };
        Ok(PortMapping {
            host_ip,
            host_port,
            container_port,
            protocol,
        })
    }

    /// passt's form: `[IP/]HOST:CONTAINER`.
    fn passt_spec(&self) -> String {
        match self.host_ip {
            Some(ip) => format!("{ip}/{}:{}", self.host_port, self.container_port),
            None => format!("{}:{}", self.host_port, self.container_port),
        }
    }
}

impl fmt::Display for PortMapping {
    /// As `docker ps` shows it: `127.0.0.1:8080->80/tcp`.
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let ip = self.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
        write!(f, "{ip}:{}->{}/{}", self.host_port, self.container_port, self.protocol)
    }
}

fn free_port(ip: Option<Ipv4Addr>, protocol: Protocol) -> std::io::Result<u16> {
    let addr = (ip.unwrap_or(Ipv4Addr::UNSPECIFIED), 0);
    Ok(match protocol {
        Protocol::Tcp => std::net::TcpListener::bind(addr)?.local_addr()?.port(),
        Protocol::Udp => std::net::UdpSocket::bind(addr)?.local_addr()?.port(),
    })
}

/// Checks a container's network flags together.
pub fn check(mode: NetworkMode, ports: &[PortMapping]) -> Result<(), NetworkError> {
    if mode == NetworkMode::None && !ports.is_empty() {
        return Err(NetworkError::PublishWithoutNetwork);
    }
    if mode == NetworkMode::User {
        find_passt()?;
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            check_unprivileged_ports(ports, first_unprivileged_port())?;
        }
    }
    Ok(())
}

/// The first port an unprivileged user may bind (1024 when the sysctl is unreadable).
fn first_unprivileged_port() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1024)
}

/// Refuses host ports below `first_unprivileged`: passt, running as the user, could
/// not bind them.
fn check_unprivileged_ports(ports: &[PortMapping], first_unprivileged: u16) -> Result<(), NetworkError> {
    match ports.iter().find(|p| p.host_port < first_unprivileged) {
        Some(p) => Err(NetworkError::PrivilegedPort {
            port: p.host_port,
            first_unprivileged,
        }),
        None => Ok(()),
    }
}

/// What the agent reads from the kernel command line.
pub fn kernel_args() -> String {
    format!("hull.net={GUEST_ADDRESS}/{GUEST_PREFIX},{GATEWAY} hull.mtu={MTU} hull.dns={DNS}")
}

fn find_passt() -> Result<PathBuf, NetworkError> {
    super::programs::find_in_path("passt", &["/usr/bin/passt"]).ok_or(NetworkError::PasstMissing)
}

/// The passt command for one container: its socket, addresses and published ports.
pub fn passt_command(passt: &Path, socket: &Path, ports: &[PortMapping]) -> Command {
    let mut cmd = Command::new(passt);
    // passt runs as whoever runs hull: left to itself, passt started by root drops to
    // `nobody`, which cannot reach the socket in root's private runtime directory.
    // SAFETY: geteuid and getegid have no preconditions.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    cmd.args(["--foreground", "--stderr", "--quiet", "--one-off", "--ipv4-only"])
        .arg("--runas")
        .arg(format!("{uid}:{gid}"))
        .arg("--socket")
        .arg(socket)
        .args(["--address", GUEST_ADDRESS, "--netmask", &GUEST_PREFIX.to_string()])
        .args(["--gateway", GATEWAY, "--mtu", &MTU.to_string(), "--dns-forward", DNS]);
    for p in ports {
        let flag = match p.protocol {
            Protocol::Tcp => "--tcp-ports",
            Protocol::Udp => "--udp-ports",
        };
        cmd.arg(flag).arg(p.passt_spec());
    }
    cmd
}

/// Starts passt and waits for its socket; its messages go to `log`.
pub fn start_passt(socket: &Path, ports: &[PortMapping], log: &Path) -> Result<Child, NetworkError> {
    let passt = find_passt()?;
    let _ = std::fs::remove_file(socket);
    let log_file = File::create(log).map_err(|e| NetworkError::Passt(format!("{}: {e}", log.display())))?;
    let mut child = passt_command(&passt, socket, ports)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .map_err(|e| NetworkError::Passt(format!("start {}: {e}", passt.display())))?;
    super::programs::wait_for_socket(&mut child, socket, PASST_START, || last_message(log))
        .map_err(NetworkError::Passt)?;
    Ok(child)
}

/// passt's last meaningful line (it also complains when no syslog is reachable).
fn last_message(log: &Path) -> String {
    let text = super::programs::log_tail(log);
    text.lines()
        .rev()
        .find(|l| !l.contains("syslog") && !l.trim().is_empty())
        .unwrap_or("exited")
        .chars()
        .take(300)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_specs_parse_like_docker() {
        let p = PortMapping::parse("127.0.0.1:8080:80/udp").unwrap();
        assert_eq!(p.host_ip, Some(Ipv4Addr::LOCALHOST));
        assert_eq!((p.host_port, p.container_port, p.protocol), (8080, 80, Protocol::Udp));
        assert_eq!(p.to_string(), "127.0.0.1:8080->80/udp");
        assert_eq!(p.passt_spec(), "127.0.0.1/8080:80");
        let p = PortMapping::parse("8080:80").unwrap();
        assert_eq!(p.to_string(), "0.0.0.0:8080->80/tcp");
        assert_eq!(p.passt_spec(), "8080:80");
        // No host port: one is chosen.
        let p = PortMapping::parse("127.0.0.1::80").unwrap();
        assert!(p.host_port > 0);
        for bad in [
            "",
            "80/sctp",
            "0:80",
            "8080:0",
            "1-5:1-5",
            "a:b:c:d",
            "host:80:80",
            "::1:80:80",
            "99999:80",
        ] {
            assert!(PortMapping::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn networks_and_conflicts() {
        assert_eq!(NetworkMode::parse("none").unwrap(), NetworkMode::None);
        assert_eq!(NetworkMode::parse("bridge").unwrap(), NetworkMode::User);
        assert!(NetworkMode::parse("host").is_err());
        let p = PortMapping::parse("8080:80").unwrap();
        assert!(matches!(
            check(NetworkMode::None, &[p]),
            Err(NetworkError::PublishWithoutNetwork)
        ));
    }

    #[test]
    fn privileged_host_ports_are_refused_up_front_for_an_unprivileged_user() {
        let p80 = PortMapping::parse("127.0.0.1:80:8080").unwrap();
        let p8080 = PortMapping::parse("8080:80").unwrap();
        let err = check_unprivileged_ports(&[p8080, p80], 1024).unwrap_err();
        assert!(err.to_string().contains("port 80:"), "{err}");
        assert!(err.to_string().contains("below 1024"), "{err}");
        assert!(check_unprivileged_ports(&[p8080], 1024).is_ok());
        // A host that lowered the sysctl lets port 80 through.
        assert!(check_unprivileged_ports(&[p80, p8080], 0).is_ok());
    }

    #[test]
    fn a_port_in_use_is_reported_with_passts_own_words() {
        find_passt().expect("passt is installed by scripts/setup.sh");
        let dir = tempfile::tempdir().unwrap();
        let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = busy.local_addr().unwrap().port();
        let p = PortMapping::parse(&format!("127.0.0.1:{port}:80")).unwrap();
        let err = start_passt(&dir.path().join("s"), &[p], &dir.path().join("log")).unwrap_err();
        assert!(err.to_string().contains(&port.to_string()), "{err}");
    }
}
