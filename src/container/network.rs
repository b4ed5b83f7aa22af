//! Container networking, rootless: every container with a network gets its own
//! `passt` (Debian's package), started by its monitor. The VMM's virtio-net device
//! hands the guest's Ethernet frames to passt over a Unix stream socket, and passt
//! turns them into ordinary sockets of the user running hull: outbound TCP, UDP and
//! ICMP, DNS forwarded to the host's resolver, and published ports (`-p`) as
//! listening sockets on the host. No root, no tap device, no bridge.
//!
//! Inside the guest: eth0 is 10.0.2.15/24, the gateway 10.0.2.2, DNS 10.0.2.3
//! (forwarded by passt). `--network none` leaves loopback only.
//!
//! The host's private services stay private: by default passt runs with
//! `--no-map-gw` (the gateway is not the host's loopback), and the VMM's egress
//! filter drops every frame to 127.0.0.0/8, 169.254.0.0/16 (cloud metadata),
//! 0.0.0.0/8 and the gateway, except the container's answers on its published TCP
//! ports (passt shows a client on the host's loopback as the gateway). The filter
//! runs in the VMM, on frames the guest cannot route around. `--add-host
//! NAME:host-gateway` is the opt-in, as in Docker: passt then maps the gateway to
//! the host's loopback, the filter lets it through, and NAME resolves to it in the
//! guest's `/etc/hosts`. `--add-host NAME:IP` only adds the `/etc/hosts` line.

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
pub const GATEWAY_ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
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
    #[error("invalid argument {spec:?} for --add-host: {reason}")]
    AddHost { spec: String, reason: &'static str },
    #[error("conflicting options: --add-host {spec} and --network none (there is no host gateway)")]
    HostGatewayWithoutNetwork { spec: String },
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

/// Docker's word for the address that reaches the host.
pub const HOST_GATEWAY: &str = "host-gateway";

/// Where an `--add-host` name points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostTarget {
    /// `host-gateway`: the gateway, mapped to the host's loopback.
    Gateway,
    /// A literal address: only the `/etc/hosts` line.
    Address(Ipv4Addr),
}

/// One `--add-host NAME:host-gateway` or `--add-host NAME:IP`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtraHost {
    pub name: String,
    pub target: HostTarget,
}

impl ExtraHost {
    /// Parses an `--add-host` value (IPv4 only, as the network is).
    pub fn parse(spec: &str) -> Result<ExtraHost, NetworkError> {
        let bad = |reason| NetworkError::AddHost {
            spec: spec.to_owned(),
            reason,
        };
        let (name, target) = spec
            .split_once(':')
            .ok_or_else(|| bad("expected NAME:IP or NAME:host-gateway"))?;
        if !guest_agent::protocol::valid_host_name(name) {
            return Err(bad("the name must be 1 to 253 letters, digits, '-', '.' or '_'"));
        }
        let target = match target {
            HOST_GATEWAY => HostTarget::Gateway,
            ip => HostTarget::Address(
                ip.parse()
                    .map_err(|_| bad("the address must be IPv4 or host-gateway"))?,
            ),
        };
        Ok(ExtraHost {
            name: name.to_owned(),
            target,
        })
    }

    /// The `/etc/hosts` line the agent writes.
    pub fn entry(&self) -> guest_agent::protocol::HostEntry {
        let address = match self.target {
            HostTarget::Gateway => GATEWAY_ADDRESS,
            HostTarget::Address(ip) => ip,
        };
        guest_agent::protocol::HostEntry {
            name: self.name.clone(),
            address,
        }
    }
}

impl fmt::Display for ExtraHost {
    /// As Docker records it: `NAME:host-gateway`, `NAME:IP`.
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self.target {
            HostTarget::Gateway => write!(f, "{}:{HOST_GATEWAY}", self.name),
            HostTarget::Address(ip) => write!(f, "{}:{ip}", self.name),
        }
    }
}

/// Whether any entry asks for the host: the container may then reach it.
pub fn reaches_host(extra_hosts: &[ExtraHost]) -> bool {
    extra_hosts.iter().any(|h| h.target == HostTarget::Gateway)
}

fn free_port(ip: Option<Ipv4Addr>, protocol: Protocol) -> std::io::Result<u16> {
    let addr = (ip.unwrap_or(Ipv4Addr::UNSPECIFIED), 0);
    Ok(match protocol {
        Protocol::Tcp => std::net::TcpListener::bind(addr)?.local_addr()?.port(),
        Protocol::Udp => std::net::UdpSocket::bind(addr)?.local_addr()?.port(),
    })
}

/// Checks a container's network flags together.
pub fn check(mode: NetworkMode, ports: &[PortMapping], extra_hosts: &[ExtraHost]) -> Result<(), NetworkError> {
    if mode == NetworkMode::None && !ports.is_empty() {
        return Err(NetworkError::PublishWithoutNetwork);
    }
    if let Some(h) = extra_hosts.iter().find(|h| h.target == HostTarget::Gateway) {
        if mode == NetworkMode::None {
            return Err(NetworkError::HostGatewayWithoutNetwork { spec: h.to_string() });
        }
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

/// The VMM's egress policy for a container: the gateway, its published TCP ports
/// (the container answers clients through them), and whether it may reach the host.
pub fn egress_policy(ports: &[PortMapping], reach_host: bool) -> vmm_config::EgressPolicy {
    vmm_config::EgressPolicy {
        gateway: GATEWAY_ADDRESS,
        allow_gateway: reach_host,
        published_tcp: ports
            .iter()
            .filter(|p| p.protocol == Protocol::Tcp)
            .map(|p| p.container_port)
            .collect(),
    }
}

/// The passt command for one container: its socket, addresses and published ports;
/// the gateway is mapped to the host's loopback only with `reach_host`.
pub fn passt_command(passt: &Path, socket: &Path, ports: &[PortMapping], reach_host: bool) -> Command {
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
    if !reach_host {
        cmd.arg("--no-map-gw");
    }
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
pub fn start_passt(socket: &Path, ports: &[PortMapping], reach_host: bool, log: &Path) -> Result<Child, NetworkError> {
    let passt = find_passt()?;
    let _ = std::fs::remove_file(socket);
    let log_file = File::create(log).map_err(|e| NetworkError::Passt(format!("{}: {e}", log.display())))?;
    let mut child = passt_command(&passt, socket, ports, reach_host)
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
            check(NetworkMode::None, &[p], &[]),
            Err(NetworkError::PublishWithoutNetwork)
        ));
        let gateway = ExtraHost::parse("host.docker.internal:host-gateway").unwrap();
        let err = check(NetworkMode::None, &[], &[gateway]).unwrap_err();
        assert!(err.to_string().contains("host.docker.internal:host-gateway"), "{err}");
        // A literal address is only an /etc/hosts line: fine without a network.
        let literal = ExtraHost::parse("db:192.168.1.9").unwrap();
        assert!(check(NetworkMode::None, &[], &[literal]).is_ok());
    }

    #[test]
    fn add_host_values_parse_like_docker() {
        let h = ExtraHost::parse("host.docker.internal:host-gateway").unwrap();
        assert_eq!(h.target, HostTarget::Gateway);
        assert_eq!(h.to_string(), "host.docker.internal:host-gateway");
        assert_eq!(h.entry().address, GATEWAY_ADDRESS);
        let h = ExtraHost::parse("db_1:192.168.1.9").unwrap();
        assert_eq!(h.target, HostTarget::Address(Ipv4Addr::new(192, 168, 1, 9)));
        assert_eq!(h.to_string(), "db_1:192.168.1.9");
        assert_eq!(h.entry().name, "db_1");
        assert!(reaches_host(&[
            ExtraHost::parse("a:1.2.3.4").unwrap(),
            ExtraHost::parse("b:host-gateway").unwrap()
        ]));
        assert!(!reaches_host(&[ExtraHost::parse("a:1.2.3.4").unwrap()]));
        for bad in [
            "foo",
            ":1.2.3.4",
            "a:notanip",
            "a b:1.2.3.4",
            "a\0b:1.2.3.4",
            "-a:1.2.3.4",
            "a:",
            "a:::1",
            "a:1.2.3",
            "a:HOST-GATEWAY",
            &format!("{}:1.2.3.4", "n".repeat(254)),
        ] {
            let err = ExtraHost::parse(bad).unwrap_err();
            assert!(err.to_string().starts_with("invalid argument"), "{bad:?}: {err}");
            assert!(!err.to_string().contains('\n'), "{bad:?}: one line");
        }
    }

    fn args(cmd: &Command) -> Vec<String> {
        cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn passt_maps_the_gateway_to_the_host_only_on_request() {
        let p = PortMapping::parse("127.0.0.1:8080:80").unwrap();
        let closed = args(&passt_command(
            Path::new("/usr/bin/passt"),
            Path::new("/s"),
            &[p],
            false,
        ));
        assert!(closed.iter().any(|a| a == "--no-map-gw"), "{closed:?}");
        assert!(closed.windows(2).any(|w| w == ["--dns-forward", DNS]), "{closed:?}");
        assert!(
            closed.windows(2).any(|w| w == ["--tcp-ports", "127.0.0.1/8080:80"]),
            "{closed:?}"
        );
        let open = args(&passt_command(Path::new("/usr/bin/passt"), Path::new("/s"), &[p], true));
        assert!(!open.iter().any(|a| a == "--no-map-gw"), "{open:?}");
        assert_eq!(closed.len(), open.len() + 1);
    }

    #[test]
    fn the_vmm_learns_the_gateway_and_the_published_tcp_ports() {
        let tcp = PortMapping::parse("127.0.0.1:8080:80").unwrap();
        let udp = PortMapping::parse("127.0.0.1:5353:53/udp").unwrap();
        let policy = egress_policy(&[tcp, udp], false);
        assert_eq!(policy.gateway.to_string(), GATEWAY);
        assert_eq!((policy.allow_gateway, policy.published_tcp), (false, vec![80]));
        let policy = egress_policy(&[], true);
        assert_eq!((policy.allow_gateway, policy.published_tcp), (true, vec![]));
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
        let err = start_passt(&dir.path().join("s"), &[p], false, &dir.path().join("log")).unwrap_err();
        assert!(err.to_string().contains(&port.to_string()), "{err}");
    }
}
