//! Starting a container's VM: the writable disk, and the `vmm` command line.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

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

/// The VMM command for `container`, its serial console going to `console`, its
/// network device (if any) to the passt socket `net`, and, with `fs`, one virtio-fs
/// device per `(tag, virtiofsd socket)` (helper VMs get none; where to mount them is
/// sent to the agent, never put on the kernel command line). The caller sets stdio
/// and spawns it.
pub fn vmm_command(
    assets: &Assets,
    initramfs: &Path,
    container: &Container,
    console: &Path,
    net: Option<&Path>,
    fs: Option<&[(String, PathBuf)]>,
) -> Command {
    let c = &container.config;
    let mut cmd = Command::new(&assets.vmm);
    cmd.arg("--kernel")
        .arg(&assets.kernel)
        .arg("--initramfs")
        .arg(initramfs)
        .args(["--memory", &c.memory_mib.to_string()])
        .args(["--vcpus", &c.vcpus.to_string()])
        // Only hull's own words: the hostname and mounts reach the agent over its
        // control connection, never the kernel command line.
        .arg("--append")
        .arg(format!(
            "quiet hull.upper={}",
            if c.tmpfs_upper { "tmpfs" } else { "disk" }
        ))
        .arg("--disk")
        .arg(disk_arg(&c.rootfs, true));
    if let Some(socket) = net {
        cmd.arg("--net-socket")
            .arg(socket)
            .args(network::vmm_egress_args(
                &c.ports,
                network::reaches_host(&c.extra_hosts),
            ))
            .arg("--append")
            .arg(network::kernel_args());
    }
    if !c.tmpfs_upper {
        cmd.arg("--disk").arg(disk_arg(&container.upper_path(), false));
    }
    if let Some(devices) = fs {
        for (tag, socket) in devices {
            let mut arg = std::ffi::OsString::from(format!("{tag}="));
            arg.push(socket);
            cmd.arg("--fs").arg(arg);
        }
    }
    cmd.arg("--vsock-uds")
        .arg(container.vsock_path())
        .arg("--console")
        .arg(console)
        .args(["--console-limit", &(1u32 << 20).to_string()])
        // The boot phases and the agent's boot mark, as one line in vmm.log.
        .arg("--timings");
    cmd
}

fn disk_arg(path: &Path, read_only: bool) -> std::ffi::OsString {
    let mut s = path.as_os_str().to_owned();
    s.push(if read_only { ",ro" } else { ",rw" });
    s
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
            },
            state: ContainerState::created(),
        }
    }

    fn args(cmd: &Command) -> Vec<String> {
        cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect()
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
