//! Starting a container's VM: the writable disk, and the `vmm` command: a typed
//! [`VmConfig`] (shared with the VMM, in `vmm-config`) written as its command line.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use vmm_config::{Console, DiskConfig, FsConfig, NetConfig, VmConfig, VsockConfig};

use super::assets::Assets;
use super::Container;
use super::{network, programs};

/// Size of a container's sparse writable disk (only written blocks use space).
pub const UPPER_DISK_BYTES: u64 = 16 << 30;

/// Creates an empty, sparse ext4 file system in `path` with `mke2fs`; no root needed.
pub fn create_upper_disk(path: &Path, bytes: u64) -> io::Result<()> {
    // Debian keeps mke2fs in /usr/sbin, outside an ordinary user's PATH.
    let mke2fs = programs::find_in_path("mke2fs", &["/usr/sbin/mke2fs", "/sbin/mke2fs"]).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            "mke2fs not found: install the Debian package e2fsprogs",
        )
    })?;
    File::create(path)?.set_len(bytes)?;
    let out = Command::new(mke2fs)
        .args(["-q", "-F", "-t", "ext4", "-m", "0", "-E"])
        .arg("lazy_itable_init=1,lazy_journal_init=1,root_owner=0:0")
        .arg(path)
        .stdin(Stdio::null())
        .output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "mke2fs failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// The VMM's configuration for `container`, its serial console going to `console`,
/// its network device (if any) to the passt socket `net`, and, with `fs`, one virtio-fs
/// device per `(tag, virtiofsd socket)` (helper VMs get none; where to mount them is
/// sent to the agent, never put on the kernel command line).
pub fn vm_config(
    assets: &Assets,
    initramfs: &Path,
    container: &Container,
    console: &Path,
    net: Option<&Path>,
    fs: Option<&[(String, PathBuf)]>,
) -> VmConfig {
    let c = &container.config;
    // Only hull's own words: the hostname and mounts reach the agent over its control
    // connection, never the kernel command line.
    let mut cmdline = format!(
        "{} quiet hull.upper={}",
        vmm_config::DEFAULT_CMDLINE,
        if c.tmpfs_upper { "tmpfs" } else { "disk" }
    );
    let net = net.map(|socket| {
        cmdline.push(' ');
        cmdline.push_str(&network::kernel_args());
        NetConfig {
            socket: socket.to_owned(),
            mac: vmm_config::DEFAULT_MAC,
            egress: network::egress_policy(&c.ports, network::reaches_host(&c.extra_hosts)),
        }
    });
    let mut disks = vec![DiskConfig {
        path: c.rootfs.clone(),
        read_only: true,
    }];
    if !c.tmpfs_upper {
        disks.push(DiskConfig {
            path: container.upper_path(),
            read_only: false,
        });
    }
    let filesystems = fs
        .unwrap_or_default()
        .iter()
        .map(|(tag, socket)| FsConfig {
            tag: tag.clone(),
            socket: socket.clone(),
        })
        .collect();
    VmConfig {
        kernel: assets.kernel.clone(),
        initramfs: Some(initramfs.to_owned()),
        cmdline,
        mem_mib: u64::from(c.memory_mib),
        vcpus: c.vcpus,
        disks,
        vsock: Some(VsockConfig {
            uds: container.vsock_path(),
            cid: vmm_config::MIN_GUEST_CID,
        }),
        net,
        filesystems,
        console: Console::File(console.to_owned()),
        console_limit: 1 << 20,
        // The boot phases and the agent's boot mark, as one line in vmm.log.
        timings: true,
        seccomp: true,
        landlock: true,
    }
}

/// The VMM command for `config`; the caller sets stdio and spawns it.
pub fn vmm_command(assets: &Assets, config: &VmConfig) -> Command {
    let mut cmd = Command::new(&assets.vmm);
    cmd.args(config.to_args());
    cmd
}

#[cfg(test)]
mod tests {
    use super::super::mounts::{Mount, TmpfsOptions};
    use super::super::{ContainerConfig, ContainerState};
    use super::*;

    fn container(mounts: Vec<Mount>) -> Container {
        Container {
            dir: PathBuf::from("/store/containers/c1"),
            config: ContainerConfig {
                id: "c1".into(),
                name: "c1".into(),
                created: chrono::Utc::now(),
                image: "busybox".into(),
                image_id: "sha256:00".into(),
                image_manifest: None,
                rootfs: PathBuf::from("/store/rootfs/r.erofs"),
                process: Default::default(),
                hostname: "box".into(),
                memory_mib: 256,
                vcpus: 1,
                limits: Default::default(),
                nano_cpus: 0,
                auto_remove: true,
                tmpfs_upper: true,
                stop_signal: 15,
                stop_timeout: 10,
                log_max_bytes: 1 << 20,
                network: Default::default(),
                ports: vec![],
                extra_hosts: vec![],
                mounts,
                labels: Default::default(),
                read_only: false,
                sysctls: vec![],
            },
            state: ContainerState::created(),
        }
    }

    fn args(cmd: &Command) -> Vec<String> {
        cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect()
    }

    fn vmm_command(
        assets: &Assets,
        initramfs: &Path,
        c: &Container,
        console: &Path,
        net: Option<&Path>,
        fs: Option<&[(String, PathBuf)]>,
    ) -> Command {
        super::vmm_command(assets, &vm_config(assets, initramfs, c, console, net, fs))
    }

    #[test]
    fn the_network_device_gets_the_containers_egress_policy() {
        use super::super::network::{ExtraHost, PortMapping};
        let assets = Assets {
            vmm: "/bin/vmm".into(),
            kernel: "/k".into(),
            agent: "/a".into(),
        };
        let mut c = container(vec![]);
        c.config.ports = vec![PortMapping::parse("127.0.0.1:8080:80").unwrap()];
        let net = Some(Path::new("/run/c1/passt.sock"));
        let a = args(&vmm_command(&assets, Path::new("/i"), &c, Path::new("/con"), net, None));
        assert!(a.windows(2).any(|w| w == ["--net-gateway", "10.0.2.2"]), "{a:?}");
        assert!(a.windows(2).any(|w| w == ["--net-published-tcp", "80"]), "{a:?}");
        assert!(!a.iter().any(|x| x == "--net-allow-gateway"), "{a:?}");
        c.config.extra_hosts = vec![ExtraHost::parse("host.docker.internal:host-gateway").unwrap()];
        let a = args(&vmm_command(&assets, Path::new("/i"), &c, Path::new("/con"), net, None));
        assert!(a.iter().any(|x| x == "--net-allow-gateway"), "{a:?}");
        // A literal address is only an /etc/hosts line; no network, no policy.
        c.config.extra_hosts = vec![ExtraHost::parse("db:192.168.1.9").unwrap()];
        let a = args(&vmm_command(&assets, Path::new("/i"), &c, Path::new("/con"), net, None));
        assert!(!a.iter().any(|x| x == "--net-allow-gateway"), "{a:?}");
        let a = args(&vmm_command(
            &assets,
            Path::new("/i"),
            &c,
            Path::new("/con"),
            None,
            None,
        ));
        assert!(!a.iter().any(|x| x.starts_with("--net")), "{a:?}");
    }

    #[test]
    fn the_vmm_reads_the_command_as_the_configuration_hull_meant() {
        use super::super::network::PortMapping;
        let assets = Assets {
            vmm: "/bin/vmm".into(),
            kernel: "/k".into(),
            agent: "/a".into(),
        };
        let mut c = container(vec![]);
        c.config.tmpfs_upper = false;
        c.config.ports = vec![PortMapping::parse("8080:80").unwrap()];
        let fs = vec![("hullfs0".to_owned(), PathBuf::from("/run/c1/fs0.sock"))];
        let net = Some(Path::new("/run/c1/passt.sock"));
        let config = vm_config(&assets, Path::new("/i"), &c, Path::new("/con"), net, Some(&fs));
        let cmd = super::vmm_command(&assets, &config);
        assert_eq!(cmd.get_program(), "/bin/vmm");
        let back = VmConfig::from_args(cmd.get_args()).unwrap();
        assert_eq!(back, config);
        assert_eq!(back.disks.len(), 2, "the image's disk and the writable one");
        assert!(back.disks[0].read_only && !back.disks[1].read_only);
        assert!(
            back.cmdline.starts_with(vmm_config::DEFAULT_CMDLINE),
            "{}",
            back.cmdline
        );
        assert!(back.cmdline.contains("hull.upper=disk hull.net="), "{}", back.cmdline);
        assert_eq!(back.net.unwrap().egress.published_tcp, [80]);
        assert_eq!((back.mem_mib, back.vcpus), (256, 1));
    }

    #[test]
    fn mounts_become_fs_devices_and_kernel_words() {
        let assets = Assets {
            vmm: "/bin/vmm".into(),
            kernel: "/k".into(),
            agent: "/a".into(),
        };
        let c = container(vec![
            Mount::Bind {
                source: "/srv".into(),
                target: "/data".into(),
                read_only: true,
            },
            Mount::Tmpfs {
                target: "/t".into(),
                options: TmpfsOptions::default(),
            },
        ]);
        let fs = vec![("hullfs0".to_owned(), PathBuf::from("/run/c1/fs0.sock"))];
        let a = args(&vmm_command(
            &assets,
            Path::new("/i"),
            &c,
            Path::new("/con"),
            None,
            Some(&fs),
        ));
        let fs_at = a.iter().position(|x| x == "--fs").unwrap();
        assert_eq!(a[fs_at + 1], "hullfs0=/run/c1/fs0.sock");
        assert!(
            !a.iter()
                .any(|x| x.contains("/data") || x.contains("hull.fs") || x.contains("box")),
            "no mount point and no hostname on the kernel command line: {a:?}"
        );
        // A helper VM gets neither the devices nor the mounts.
        let a = args(&vmm_command(
            &assets,
            Path::new("/i"),
            &c,
            Path::new("/con"),
            None,
            None,
        ));
        assert!(!a.iter().any(|x| x == "--fs" || x.contains("hull.fs")));
    }
}
