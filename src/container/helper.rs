//! Reaching a container's agent for file operations (`cp`, `diff`, `commit`,
//! `export`): the running VM's agent, or, for a container that is not running, a
//! short-lived helper VM booted on the container's own disks that runs no process
//! and powers off when done. The writable disk is never mounted on the host.
//!
//! The helper holds the container's monitor lock for its whole life, so `start`
//! cannot boot a second VM on the same writable disk meanwhile.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use guest_agent::protocol::HostMessage;

use crate::image::store::fs::flock;

use super::agent::Session;
use super::assets::{self, Assets};
use super::monitor::{boot_timeout, MonitorError};
use super::{vm, Container, Status};

/// How long the helper VM gets to power off before it is killed.
const POWER_OFF_GRACE: Duration = Duration::from_secs(10);

/// A control session with a container's agent; powers a helper VM off when dropped.
pub struct AgentAccess {
    pub session: Session,
    helper: Option<HelperVm>,
}

struct HelperVm {
    child: Child,
    run_dir: PathBuf,
    _lock: File,
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> MonitorError {
    let what = what.into();
    move |source| MonitorError::Io { what, source }
}

impl AgentAccess {
    /// Connects to `c`'s agent, booting a helper VM when `c` is not running.
    pub fn open(store_root: &Path, c: &Container) -> Result<AgentAccess, MonitorError> {
        if c.state.status == Status::Running {
            return Self::running(c);
        }
        let lock_path = c.dir.join("monitor.lock");
        let lock = File::create(&lock_path).map_err(io(format!("create {}", lock_path.display())))?;
        if let Err(e) = flock(&lock, libc::LOCK_EX | libc::LOCK_NB) {
            if e.kind() != std::io::ErrorKind::WouldBlock {
                return Err(io(format!("lock {}", lock_path.display()))(e));
            }
            // Started meanwhile: use the running VM once it is up.
            let mut c = c.clone();
            c.reload()?;
            return match c.state.status {
                Status::Running => Self::running(&c),
                _ => Err(MonitorError::Io {
                    what: format!("container {}", &c.config.id[..12]),
                    source: std::io::Error::other("it is starting or in use by another command"),
                }),
            };
        }
        let run_dir = super::create_run_dir(&c.config.id).map_err(io("runtime directory"))?;
        let uds = run_dir.join(super::VSOCK_SOCKET);
        let _ = fs::remove_file(&uds);
        let assets = Assets::locate()?;
        let initramfs = assets::initramfs(&store_root.join("initramfs"), &assets.agent)?;
        let vmm_log = File::create(c.dir.join("helper-vmm.log")).map_err(io("helper vmm log"))?;
        // The helper's console must not replace the container's own console log.
        let console = c.dir.join("helper-console.log");
        let mut config = vm::vm_config(&assets, &initramfs, c, &console, None, None);
        // Its own runtime directory: the container's belongs to its monitor.
        config.vsock = Some(vmm_config::VsockConfig {
            uds: uds.clone(),
            cid: vmm_config::MIN_GUEST_CID,
        });
        let child = vm::vmm_command(&assets, &config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(vmm_log)
            .spawn()
            .map_err(io(format!("start {}", assets.vmm.display())))?;
        let mut helper = HelperVm {
            child,
            run_dir,
            _lock: lock,
        };
        let timeout = boot_timeout();
        let session = Session::open(&uds, timeout, || matches!(helper.child.try_wait(), Ok(None)));
        match session {
            Ok(session) => Ok(AgentAccess {
                session,
                helper: Some(helper),
            }),
            Err(e) => {
                helper.stop();
                Err(MonitorError::Io {
                    what: format!("helper VM of container {}", &c.config.id[..12]),
                    source: std::io::Error::other(format!(
                        "did not come up: {} (see {})",
                        crate::error::error_chain(&e),
                        c.dir.join("helper-console.log").display()
                    )),
                })
            }
        }
    }

    fn running(c: &Container) -> Result<AgentAccess, MonitorError> {
        let session =
            Session::open(&c.vsock_path(), Duration::from_secs(10), || true).map_err(|e| MonitorError::Io {
                what: format!("container {}", &c.config.id[..12]),
                source: std::io::Error::other(e.to_string()),
            })?;
        Ok(AgentAccess { session, helper: None })
    }
}

impl Drop for AgentAccess {
    fn drop(&mut self) {
        if let Some(mut helper) = self.helper.take() {
            let _ = self.session.send(&HostMessage::Shutdown);
            helper.stop();
        }
    }
}

impl HelperVm {
    /// Waits for the VM to power off, kills it after a grace period, cleans up.
    fn stop(&mut self) {
        let deadline = Instant::now() + POWER_OFF_GRACE;
        while matches!(self.child.try_wait(), Ok(None)) {
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = fs::remove_dir_all(&self.run_dir);
    }
}
