//! The configuration of hull's VMM, one typed definition for both sides: hull builds a
//! [`VmConfig`] and passes [`VmConfig::to_args`] to the `vmm` it spawns; the VMM reads
//! it back with [`VmConfig::from_args`]. A property test checks that the two agree.
//!
//! ```text
//! vmm --kernel PATH [--initramfs PATH] [--cmdline STR] [--append STR] [--memory MIB] [--vcpus N]
//!     [--disk PATH[,ro]]... [--vsock-uds PATH] [--vsock-cid CID] [--net-socket PATH] [--mac MAC]
//!     [--net-gateway IP] [--net-allow-gateway] [--net-published-tcp PORT]...
//!     [--fs TAG=SOCKET]... [--console stdout|none|PATH] [--console-limit BYTES] [--timings]
//!     [--no-seccomp] [--no-landlock]
//! ```

use std::ffi::{OsStr, OsString};
use std::net::Ipv4Addr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use thiserror::Error;

/// Kernel command line used when none is given.
pub const DEFAULT_CMDLINE: &str =
    "console=ttyS0 reboot=k panic=1 pci=off nomodule i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd";
/// Default guest memory in MiB.
pub const DEFAULT_MEM_MIB: u64 = 256;
/// Default console log cap: 16 MiB.
pub const DEFAULT_CONSOLE_LIMIT: u64 = 16 << 20;
/// Lowest guest CID (0-2 are reserved).
pub const MIN_GUEST_CID: u64 = 3;

/// A virtio-blk disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskConfig {
    /// Image file.
    pub path: PathBuf,
    /// Open O_RDONLY and advertise read-only.
    pub read_only: bool,
}

/// The vsock device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VsockConfig {
    /// Unix socket the host connects to; guest-initiated connections go to `<uds>_<port>`.
    pub uds: PathBuf,
    /// Guest context id.
    pub cid: u64,
}

/// The network device: frames go through a stream socket (passt's framing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetConfig {
    /// The backend's Unix stream socket.
    pub socket: PathBuf,
    /// The guest's MAC address.
    pub mac: [u8; 6],
    /// What the guest may send (see `devices::virtio::net::filter`).
    pub egress: EgressPolicy,
}

/// The gateway passt shows the guest unless told otherwise (hull's network).
pub const DEFAULT_GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);

/// What one guest may send through its network device: the VMM's egress filter
/// enforces it on every frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EgressPolicy {
    /// The gateway address, which the backend can map to the host.
    pub gateway: Ipv4Addr,
    /// The container opted in to reaching the host through the gateway.
    pub allow_gateway: bool,
    /// Guest TCP ports published on the host: the guest's side of connections to
    /// them may go to the gateway.
    pub published_tcp: Vec<u16>,
}

impl Default for EgressPolicy {
    fn default() -> Self {
        EgressPolicy {
            gateway: DEFAULT_GATEWAY,
            allow_gateway: false,
            published_tcp: Vec::new(),
        }
    }
}

/// A virtio-fs device served by a vhost-user backend (virtiofsd).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FsConfig {
    /// The mount tag the guest names it by (1 to [`FS_TAG_MAX`] bytes of `[A-Za-z0-9_-]`).
    pub tag: String,
    /// The backend's vhost-user socket.
    pub socket: PathBuf,
}

/// Longest virtio-fs mount tag (the size of the tag field in the device's config space).
pub const FS_TAG_MAX: usize = 36;

/// The MAC address a guest gets unless told otherwise (locally administered).
pub const DEFAULT_MAC: [u8; 6] = [0x02, 0x68, 0x75, 0x6c, 0x6c, 0x01];

/// Where the serial console goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Console {
    /// The VMM's stdout.
    Stdout,
    /// Nowhere.
    Null,
    /// A log file (created or truncated).
    File(PathBuf),
}

/// Everything the VMM needs to boot a guest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmConfig {
    /// Uncompressed ELF vmlinux.
    pub kernel: PathBuf,
    /// Optional initramfs (cpio).
    pub initramfs: Option<PathBuf>,
    /// Kernel command line (virtio-mmio entries are appended).
    pub cmdline: String,
    /// Guest memory in MiB.
    pub mem_mib: u64,
    /// Number of vCPUs.
    pub vcpus: u8,
    /// Disks, in order (`/dev/vda`, `/dev/vdb`, ...).
    pub disks: Vec<DiskConfig>,
    /// vsock device, if any.
    pub vsock: Option<VsockConfig>,
    /// Network device, if any.
    pub net: Option<NetConfig>,
    /// virtio-fs devices, in order.
    pub filesystems: Vec<FsConfig>,
    /// Console destination.
    pub console: Console,
    /// Most console bytes kept.
    pub console_limit: u64,
    /// Print the timings line.
    pub timings: bool,
    /// Install seccomp filters.
    pub seccomp: bool,
    /// Apply Landlock where the kernel supports it.
    pub landlock: bool,
}

/// Errors in the command line.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    /// an option is not known
    #[error("unknown option {0}")]
    Unknown(String),
    /// an option lacks its value
    #[error("option {0} needs a value")]
    MissingValue(String),
    /// a value does not parse
    #[error("invalid value {value:?} for {option}")]
    Invalid {
        /// The option.
        option: String,
        /// Its value.
        value: String,
    },
    /// --kernel was not given
    #[error("--kernel is required")]
    NoKernel,
    /// help was asked for
    #[error("usage requested")]
    Help,
}

/// One-screen usage text.
pub const USAGE: &str = "usage: vmm --kernel PATH [--initramfs PATH] [--cmdline STR] [--append STR]
           [--memory MIB] [--vcpus N] [--disk PATH[,ro]]... [--vsock-uds PATH] [--vsock-cid CID]
           [--net-socket PATH] [--mac MAC] [--net-gateway IP] [--net-allow-gateway]
           [--net-published-tcp PORT]... [--fs TAG=SOCKET]... [--console stdout|none|PATH] [--console-limit BYTES] [--timings]
           [--no-seccomp] [--no-landlock]";

fn parse_num<T: std::str::FromStr>(option: &str, value: &str) -> Result<T, ConfigError> {
    value.parse().map_err(|_| ConfigError::Invalid {
        option: option.into(),
        value: value.into(),
    })
}

/// A TCP or UDP port, 1 to 65535.
fn parse_port(option: &str, value: &str) -> Result<u16, ConfigError> {
    match parse_num::<u16>(option, value)? {
        0 => Err(ConfigError::Invalid {
            option: option.into(),
            value: value.into(),
        }),
        port => Ok(port),
    }
}

fn invalid(option: &str, value: &OsStr) -> ConfigError {
    ConfigError::Invalid {
        option: option.into(),
        value: value.to_string_lossy().into_owned(),
    }
}

/// `PATH,ro` or `PATH,rw` (or a bare `PATH`, read-write).
fn parse_disk(value: &OsStr) -> Result<DiskConfig, ConfigError> {
    let bytes = value.as_bytes();
    let (path, read_only) = match bytes.strip_suffix(b",ro") {
        Some(path) => (path, true),
        None => (bytes.strip_suffix(b",rw").unwrap_or(bytes), false),
    };
    if path.is_empty() {
        return Err(invalid("--disk", value));
    }
    Ok(DiskConfig {
        path: OsStr::from_bytes(path).into(),
        read_only,
    })
}

/// `TAG=SOCKET`; the tag must fit the config space and be plain.
fn parse_fs(value: &OsStr) -> Result<FsConfig, ConfigError> {
    let bytes = value.as_bytes();
    let at = bytes
        .iter()
        .position(|&b| b == b'=')
        .ok_or_else(|| invalid("--fs", value))?;
    let (tag, socket) = (&bytes[..at], &bytes[at + 1..]);
    let plain = |b: &u8| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_';
    if tag.is_empty() || tag.len() > FS_TAG_MAX || !tag.iter().all(plain) || socket.is_empty() {
        return Err(invalid("--fs", value));
    }
    Ok(FsConfig {
        // Plain ASCII, checked above.
        tag: String::from_utf8_lossy(tag).into_owned(),
        socket: OsStr::from_bytes(socket).into(),
    })
}

impl VmConfig {
    /// Parses the arguments after the program name (paths need not be UTF-8).
    pub fn from_args<I, A>(args: I) -> Result<VmConfig, ConfigError>
    where
        I: IntoIterator<Item = A>,
        A: Into<OsString>,
    {
        let mut cfg = VmConfig {
            kernel: PathBuf::new(),
            initramfs: None,
            cmdline: DEFAULT_CMDLINE.into(),
            mem_mib: DEFAULT_MEM_MIB,
            vcpus: 1,
            disks: Vec::new(),
            vsock: None,
            net: None,
            filesystems: Vec::new(),
            console: Console::Stdout,
            console_limit: DEFAULT_CONSOLE_LIMIT,
            timings: false,
            seccomp: true,
            landlock: true,
        };
        let (mut uds, mut cid) = (None, MIN_GUEST_CID);
        let (mut net_socket, mut mac) = (None, DEFAULT_MAC);
        let mut egress = EgressPolicy::default();
        let mut args = args.into_iter().map(Into::into);
        while let Some(option) = args.next() {
            let option = option
                .into_string()
                .map_err(|o| ConfigError::Unknown(o.to_string_lossy().into_owned()))?;
            // A path is any bytes; every other value is text.
            let mut path = || args.next().ok_or_else(|| ConfigError::MissingValue(option.clone()));
            let text = |v: OsString| v.into_string().map_err(|v| invalid(&option, &v));
            let mut value = || path().and_then(text);
            match option.as_str() {
                "--kernel" => cfg.kernel = path()?.into(),
                "--initramfs" => cfg.initramfs = Some(path()?.into()),
                "--cmdline" => cfg.cmdline = value()?,
                "--append" => {
                    cfg.cmdline.push(' ');
                    cfg.cmdline.push_str(&value()?);
                }
                "--memory" => cfg.mem_mib = parse_num(&option, &value()?)?,
                "--vcpus" => cfg.vcpus = parse_num(&option, &value()?)?,
                "--disk" => cfg.disks.push(parse_disk(&path()?)?),
                "--vsock-uds" => uds = Some(PathBuf::from(path()?)),
                "--vsock-cid" => cid = parse_num(&option, &value()?)?,
                "--net-socket" => net_socket = Some(PathBuf::from(path()?)),
                "--mac" => {
                    let v = value()?;
                    mac = parse_mac(&v).ok_or(ConfigError::Invalid {
                        option: option.clone(),
                        value: v,
                    })?;
                }
                "--net-gateway" => egress.gateway = parse_num::<Ipv4Addr>(&option, &value()?)?,
                "--net-allow-gateway" => egress.allow_gateway = true,
                "--net-published-tcp" => egress.published_tcp.push(parse_port(&option, &value()?)?),
                "--fs" => cfg.filesystems.push(parse_fs(&path()?)?),
                "--console" => cfg.console = parse_console(path()?),
                "--console-limit" => cfg.console_limit = parse_num(&option, &value()?)?,
                "--timings" => cfg.timings = true,
                "--no-seccomp" => cfg.seccomp = false,
                "--no-landlock" => cfg.landlock = false,
                "-h" | "--help" => return Err(ConfigError::Help),
                _ => return Err(ConfigError::Unknown(option)),
            }
        }
        if cid < MIN_GUEST_CID || cid > u64::from(u32::MAX) {
            return Err(ConfigError::Invalid {
                option: "--vsock-cid".into(),
                value: cid.to_string(),
            });
        }
        cfg.vsock = uds.map(|uds| VsockConfig { uds, cid });
        cfg.net = net_socket.map(|socket| NetConfig { socket, mac, egress });
        if let Some(dup) = cfg
            .filesystems
            .iter()
            .enumerate()
            .find(|(i, f)| cfg.filesystems[..*i].iter().any(|g| g.tag == f.tag))
        {
            return Err(ConfigError::Invalid {
                option: "--fs".into(),
                value: format!("{} (tag used twice)", dup.1.tag),
            });
        }
        if cfg.kernel.as_os_str().is_empty() {
            return Err(ConfigError::NoKernel);
        }
        Ok(cfg)
    }

    /// The command line that [`VmConfig::from_args`] reads back as this configuration.
    /// A console file literally named `stdout`, `-` or `none` is written as `./NAME`.
    pub fn to_args(&self) -> Vec<OsString> {
        let mut args = Args::default();
        args.pair("--kernel", &self.kernel);
        if let Some(initramfs) = &self.initramfs {
            args.pair("--initramfs", initramfs);
        }
        args.pair("--cmdline", &self.cmdline);
        args.pair("--memory", self.mem_mib.to_string());
        args.pair("--vcpus", self.vcpus.to_string());
        for disk in &self.disks {
            let mut value = disk.path.as_os_str().to_owned();
            value.push(if disk.read_only { ",ro" } else { ",rw" });
            args.pair("--disk", value);
        }
        if let Some(vsock) = &self.vsock {
            args.pair("--vsock-uds", &vsock.uds);
            args.pair("--vsock-cid", vsock.cid.to_string());
        }
        if let Some(net) = &self.net {
            args.pair("--net-socket", &net.socket);
            let mac: Vec<String> = net.mac.iter().map(|b| format!("{b:02x}")).collect();
            args.pair("--mac", mac.join(":"));
            args.pair("--net-gateway", net.egress.gateway.to_string());
            args.flag("--net-allow-gateway", net.egress.allow_gateway);
            for port in &net.egress.published_tcp {
                args.pair("--net-published-tcp", port.to_string());
            }
        }
        for fs in &self.filesystems {
            let mut value = OsString::from(format!("{}=", fs.tag));
            value.push(&fs.socket);
            args.pair("--fs", value);
        }
        match &self.console {
            Console::Stdout => args.pair("--console", "stdout"),
            Console::Null => args.pair("--console", "none"),
            Console::File(path) if ["stdout", "-", "none"].iter().any(|k| path.as_os_str() == *k) => {
                args.pair("--console", PathBuf::from(".").join(path))
            }
            Console::File(path) => args.pair("--console", path),
        }
        args.pair("--console-limit", self.console_limit.to_string());
        args.flag("--timings", self.timings);
        args.flag("--no-seccomp", !self.seccomp);
        args.flag("--no-landlock", !self.landlock);
        args.0
    }

    /// Guest memory in bytes.
    pub fn mem_bytes(&self) -> u64 {
        self.mem_mib.saturating_mul(1 << 20)
    }
}

/// A command line being written.
#[derive(Default)]
struct Args(Vec<OsString>);

impl Args {
    fn pair(&mut self, option: &str, value: impl AsRef<OsStr>) {
        self.0.push(option.into());
        self.0.push(value.as_ref().to_owned());
    }

    fn flag(&mut self, option: &str, set: bool) {
        if set {
            self.0.push(option.into());
        }
    }
}

/// `02:68:75:6c:6c:01`; a multicast address is refused.
fn parse_mac(value: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = value.split(':');
    for byte in &mut mac {
        let part = parts.next()?;
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    (parts.next().is_none() && mac[0] & 1 == 0).then_some(mac)
}

fn parse_console(value: OsString) -> Console {
    match value.to_str() {
        Some("stdout" | "-") => Console::Stdout,
        Some("none") => Console::Null,
        _ => Console::File(value.into()),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn os_path() -> impl Strategy<Value = PathBuf> {
        // Any bytes but NUL (which no path holds), not only UTF-8.
        proptest::collection::vec(1u8..=255, 1..24)
            .prop_map(|b| PathBuf::from(OsStr::from_bytes(&[b"/".as_slice(), &b].concat())))
    }

    fn vm_config() -> impl Strategy<Value = VmConfig> {
        let disks = proptest::collection::vec((os_path(), any::<bool>()), 0..4).prop_map(|d| {
            d.into_iter()
                .map(|(path, read_only)| DiskConfig { path, read_only })
                .collect()
        });
        let vsock = proptest::option::of((os_path(), MIN_GUEST_CID..=u64::from(u32::MAX)))
            .prop_map(|v| v.map(|(uds, cid)| VsockConfig { uds, cid }));
        let egress = (
            any::<[u8; 4]>(),
            any::<bool>(),
            proptest::collection::vec(1u16..=65535, 0..4),
        )
            .prop_map(|(gateway, allow_gateway, published_tcp)| EgressPolicy {
                gateway: gateway.into(),
                allow_gateway,
                published_tcp,
            });
        let net = proptest::option::of((os_path(), any::<[u8; 6]>(), egress)).prop_map(|n| {
            n.map(|(socket, mut mac, egress)| {
                mac[0] &= !1;
                NetConfig { socket, mac, egress }
            })
        });
        let filesystems = proptest::collection::vec(os_path(), 0..3).prop_map(|sockets| {
            sockets
                .into_iter()
                .enumerate()
                .map(|(i, socket)| FsConfig {
                    tag: format!("hullfs{i}"),
                    socket,
                })
                .collect()
        });
        let console = prop_oneof![
            Just(Console::Stdout),
            Just(Console::Null),
            os_path().prop_map(Console::File)
        ];
        (
            (
                os_path(),
                proptest::option::of(os_path()),
                "[ -~]{0,80}",
                any::<u64>(),
                any::<u8>(),
            ),
            (disks, vsock, net, filesystems, console),
            (any::<u64>(), any::<bool>(), any::<bool>(), any::<bool>()),
        )
            .prop_map(
                |(
                    (kernel, initramfs, cmdline, mem_mib, vcpus),
                    (disks, vsock, net, filesystems, console),
                    (console_limit, timings, seccomp, landlock),
                )| VmConfig {
                    kernel,
                    initramfs,
                    cmdline,
                    mem_mib,
                    vcpus,
                    disks,
                    vsock,
                    net,
                    filesystems,
                    console,
                    console_limit,
                    timings,
                    seccomp,
                    landlock,
                },
            )
    }

    proptest! {
        #[test]
        fn the_vmm_reads_back_the_configuration_hull_writes(config in vm_config()) {
            prop_assert_eq!(VmConfig::from_args(config.to_args()), Ok(config));
        }
    }

    #[test]
    fn paths_need_not_be_utf8_and_options_must_be_text() {
        let odd = OsStr::from_bytes(b"/disk\xff,ro");
        let cfg = VmConfig::from_args([OsStr::new("--kernel"), OsStr::new("/k"), OsStr::new("--disk"), odd]).unwrap();
        assert_eq!(cfg.disks[0].path.as_os_str().as_bytes(), b"/disk\xff");
        assert!(cfg.disks[0].read_only);
        assert!(matches!(
            VmConfig::from_args([
                OsStr::new("--kernel"),
                OsStr::new("/k"),
                OsStr::new("--memory"),
                OsStr::from_bytes(b"\xff")
            ]),
            Err(ConfigError::Invalid { .. })
        ));
        assert!(matches!(
            VmConfig::from_args([OsStr::from_bytes(b"--\xff")]),
            Err(ConfigError::Unknown(_))
        ));
    }

    #[test]
    fn a_console_file_named_like_a_keyword_is_written_as_a_relative_path() {
        let mut cfg = parse("--kernel /k").unwrap();
        cfg.console = Console::File("none".into());
        let back = VmConfig::from_args(cfg.to_args()).unwrap();
        assert_eq!(back.console, Console::File("./none".into()));
    }

    fn parse(args: &str) -> Result<VmConfig, ConfigError> {
        VmConfig::from_args(args.split_whitespace().map(String::from))
    }

    #[test]
    fn filesystems_take_a_plain_tag_and_a_socket() {
        let cfg = parse("--kernel /k --fs hullfs0=/run/a.sock --fs data_1=/run/b.sock").unwrap();
        let tags: Vec<_> = cfg
            .filesystems
            .iter()
            .map(|f| (f.tag.as_str(), f.socket.clone()))
            .collect();
        assert_eq!(
            tags,
            vec![
                ("hullfs0", PathBuf::from("/run/a.sock")),
                ("data_1", PathBuf::from("/run/b.sock"))
            ]
        );
        let long = "t".repeat(FS_TAG_MAX + 1);
        for bad in [
            "x",
            "=/s",
            "t=",
            "a.b=/s",
            "t/x=/s",
            "t\u{e9}=/s",
            &format!("{long}=/s"),
        ] {
            assert!(
                matches!(
                    parse(&format!("--kernel /k --fs {bad}")),
                    Err(ConfigError::Invalid { .. })
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            parse("--kernel /k --fs t=/a --fs t=/b"),
            Err(ConfigError::Invalid { .. })
        ));
    }

    #[test]
    fn config_parses_a_full_command_line() {
        let cfg = parse("--kernel /k --initramfs /i --memory 512 --vcpus 2 --disk /a,ro --disk /b --vsock-uds /run/v.sock --vsock-cid 7 --console /log --timings --no-seccomp").unwrap();
        assert_eq!(cfg.kernel, PathBuf::from("/k"));
        assert_eq!(cfg.initramfs, Some(PathBuf::from("/i")));
        assert_eq!((cfg.mem_mib, cfg.vcpus), (512, 2));
        assert_eq!(
            cfg.disks,
            vec![
                DiskConfig {
                    path: "/a".into(),
                    read_only: true
                },
                DiskConfig {
                    path: "/b".into(),
                    read_only: false
                },
            ]
        );
        assert_eq!(
            cfg.vsock,
            Some(VsockConfig {
                uds: "/run/v.sock".into(),
                cid: 7
            })
        );
        assert_eq!(cfg.console, Console::File("/log".into()));
        assert!(cfg.timings && !cfg.seccomp && cfg.landlock);
    }

    #[test]
    fn config_defaults_apply() {
        let cfg = parse("--kernel /k").unwrap();
        assert_eq!(
            (cfg.mem_mib, cfg.vcpus, cfg.cmdline.as_str()),
            (DEFAULT_MEM_MIB, 1, DEFAULT_CMDLINE)
        );
        assert_eq!(cfg.console, Console::Stdout);
    }

    #[test]
    fn a_network_device_takes_a_socket_and_a_unicast_mac() {
        let cfg = parse("--kernel /k --net-socket /run/passt.sock --mac 02:00:00:00:00:07").unwrap();
        assert_eq!(
            cfg.net,
            Some(NetConfig {
                socket: "/run/passt.sock".into(),
                mac: [2, 0, 0, 0, 0, 7],
                egress: EgressPolicy::default(),
            })
        );
        assert_eq!(
            parse("--kernel /k --net-socket /s").unwrap().net.unwrap().mac,
            DEFAULT_MAC
        );
        for bad in [
            "01:00:00:00:00:01",
            "02:00:00:00:00",
            "02:00:00:00:00:00:00",
            "zz:00:00:00:00:00",
        ] {
            assert!(matches!(
                parse(&format!("--kernel /k --mac {bad}")),
                Err(ConfigError::Invalid { .. })
            ));
        }
    }

    #[test]
    fn the_egress_policy_denies_the_gateway_unless_told() {
        let net = parse("--kernel /k --net-socket /s").unwrap().net.unwrap();
        assert_eq!(net.egress.gateway, Ipv4Addr::new(10, 0, 2, 2));
        assert!(!net.egress.allow_gateway && net.egress.published_tcp.is_empty());
        let net = parse(
            "--kernel /k --net-socket /s --net-gateway 192.168.9.1 --net-allow-gateway \
             --net-published-tcp 80 --net-published-tcp 8080",
        )
        .unwrap()
        .net
        .unwrap();
        assert_eq!(
            net.egress,
            EgressPolicy {
                gateway: Ipv4Addr::new(192, 168, 9, 1),
                allow_gateway: true,
                published_tcp: vec![80, 8080],
            }
        );
        for bad in [
            "--net-gateway 10.0.2",
            "--net-gateway ::1",
            "--net-gateway host",
            "--net-published-tcp 0",
            "--net-published-tcp 65536",
            "--net-published-tcp http",
        ] {
            assert!(
                matches!(
                    parse(&format!("--kernel /k --net-socket /s {bad}")),
                    Err(ConfigError::Invalid { .. })
                ),
                "{bad}"
            );
        }
        assert_eq!(
            parse("--kernel /k --net-gateway"),
            Err(ConfigError::MissingValue("--net-gateway".into()))
        );
    }

    #[test]
    fn append_adds_to_the_default_command_line() {
        let cfg = parse("--kernel /k --append hull.upper=tmpfs --append quiet").unwrap();
        assert_eq!(cfg.cmdline, format!("{DEFAULT_CMDLINE} hull.upper=tmpfs quiet"));
    }

    #[test]
    fn config_rejects_bad_input() {
        assert_eq!(parse("--initramfs /i"), Err(ConfigError::NoKernel));
        assert_eq!(parse("--kernel"), Err(ConfigError::MissingValue("--kernel".into())));
        assert_eq!(
            parse("--kernel /k --frobnicate"),
            Err(ConfigError::Unknown("--frobnicate".into()))
        );
        assert!(matches!(
            parse("--kernel /k --vcpus 300"),
            Err(ConfigError::Invalid { .. })
        ));
        assert!(matches!(
            parse("--kernel /k --memory lots"),
            Err(ConfigError::Invalid { .. })
        ));
        assert!(matches!(
            parse("--kernel /k --vsock-uds /v --vsock-cid 2"),
            Err(ConfigError::Invalid { .. })
        ));
        assert!(matches!(
            parse("--kernel /k --disk ,ro"),
            Err(ConfigError::Invalid { .. })
        ));
    }
}
