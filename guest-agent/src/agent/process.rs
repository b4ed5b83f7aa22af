//! Starting a process inside the container root, with pipes or a pseudo-terminal.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use guest_agent::protocol::{ErrorKind, ProcessSpec, Ulimit};
use guest_agent::user::Identity;

use super::root;
use super::sys::{cstring, dup};

/// The host-side ends of a started process's stdio.
pub struct Started {
    pub pid: i32,
    /// For a tty: the master, both output and input.
    pub pty: Option<File>,
    pub stdin: Option<File>,
    pub stdout: Option<File>,
    pub stderr: Option<File>,
}

/// A start failure with the kind the host maps to an exit code.
pub struct SpawnError {
    pub kind: ErrorKind,
    pub message: String,
}

fn internal(what: &str, e: io::Error) -> SpawnError {
    SpawnError {
        kind: ErrorKind::Internal,
        message: format!("{what}: {e}"),
    }
}

/// Forks and execs `spec` as `identity` inside the container root. The caller holds
/// the spawn lock so the reaper cannot reap a failed child before std does.
pub fn spawn(spec: &ProcessSpec, identity: &Identity, env: Vec<(String, String)>) -> Result<Started, SpawnError> {
    let Some(program) = spec.args.first() else {
        return Err(SpawnError {
            kind: ErrorKind::Internal,
            message: "no command specified".into(),
        });
    };
    let root_fd = root::open_root().map_err(|e| internal("container root", e))?;
    let cwd = if spec.cwd.is_empty() { "/" } else { &spec.cwd };
    root::mkdir_all_in_root(&root_fd, cwd).map_err(|e| internal(&format!("working directory {cwd:?}"), e))?;
    let mut command = Command::new(program);
    command.args(&spec.args[1..]).env_clear().envs(env);
    let mut started = Started {
        pid: 0,
        pty: None,
        stdin: None,
        stdout: None,
        stderr: None,
    };
    if spec.detached {
        command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    } else if spec.tty {
        let (master, slave) = super::sys::open_pty().map_err(|e| internal("pseudo-terminal", e))?;
        let fd = |f: &File| dup(f).map(Stdio::from).map_err(|e| internal("pseudo-terminal", e));
        command.stdin(fd(&slave)?).stdout(fd(&slave)?).stderr(fd(&slave)?);
        started.pty = Some(master);
    } else {
        command
            .stdin(if spec.stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
    }
    let setup = ChildSetup::new(cwd, identity, spec.tty && !spec.detached, &spec.ulimits)
        .map_err(|e| internal("process setup", e))?;
    // SAFETY: the closure only makes async-signal-safe system calls on data prepared
    // before the fork; it allocates nothing.
    unsafe { command.pre_exec(move || setup.apply()) };
    let mut child = command.spawn().map_err(|e| exec_error(program, e))?;
    started.pid = child.id() as i32;
    started.stdin = child.stdin.take().map(|s| File::from(OwnedFd::from(s)));
    started.stdout = child.stdout.take().map(|s| File::from(OwnedFd::from(s)));
    started.stderr = child.stderr.take().map(|s| File::from(OwnedFd::from(s)));
    // `child` is dropped without waiting: the agent's reaper collects every exit.
    Ok(started)
}

/// Docker's messages and exit codes: 127 for a missing executable, 126 for one that
/// cannot run.
fn exec_error(program: &str, e: io::Error) -> SpawnError {
    let (kind, message) = match e.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ENOTDIR) => (
            ErrorKind::NotFound,
            format!("exec: {program:?}: executable file not found in $PATH"),
        ),
        Some(libc::EACCES) | Some(libc::ENOEXEC) | Some(libc::EISDIR) | Some(libc::EPERM) => (
            ErrorKind::NotExecutable,
            format!("exec: {program:?}: permission denied"),
        ),
        _ => (ErrorKind::Internal, format!("exec {program:?}: {e}")),
    };
    SpawnError { kind, message }
}

/// Everything the child does between fork and exec, prepared in the parent.
struct ChildSetup {
    root: CString,
    cwd: CString,
    uid: libc::uid_t,
    gid: libc::gid_t,
    groups: Vec<libc::gid_t>,
    tty: bool,
    /// `--ulimit`: (resource, soft, hard).
    rlimits: Vec<(u32, libc::rlimit)>,
    /// The container cgroup's `cgroup.procs`, joined first.
    cgroup: File,
}

impl ChildSetup {
    fn new(cwd: &str, identity: &Identity, tty: bool, ulimits: &[Ulimit]) -> io::Result<ChildSetup> {
        let mut rlimits = Vec::new();
        for u in ulimits {
            let resource = guest_agent::protocol::ulimit_resource(&u.name)
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("unknown ulimit {:?}", u.name)))?;
            let limit = libc::rlimit {
                rlim_cur: u.soft,
                rlim_max: u.hard,
            };
            rlimits.push((resource, limit));
        }
        Ok(ChildSetup {
            cgroup: super::cgroup::procs()?,
            root: cstring(root::ROOT)?,
            cwd: cstring(cwd)?,
            uid: identity.uid,
            gid: identity.gid,
            groups: identity.groups.clone(),
            tty,
            rlimits,
        })
    }

    fn apply(&self) -> io::Result<()> {
        let check = |rc: libc::c_int| {
            if rc < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(())
            }
        };
        // First into the container's cgroup (and a cgroup namespace rooted there).
        super::cgroup::join(&self.cgroup)?;
        // SAFETY: plain system calls on NUL-terminated strings and a slice owned by
        // `self`, all async-signal-safe.
        unsafe {
            check(libc::setsid())?;
            if self.tty {
                check(libc::ioctl(0, libc::TIOCSCTTY, 0))?;
            }
            check(libc::chroot(self.root.as_ptr()))?;
            check(libc::chdir(self.cwd.as_ptr()))?;
            for (resource, limit) in &self.rlimits {
                check(libc::setrlimit(*resource as _, limit))?;
            }
            check(libc::setgroups(self.groups.len(), self.groups.as_ptr()))?;
            check(libc::setgid(self.gid))?;
            check(libc::setuid(self.uid))?;
        }
        Ok(())
    }
}

/// The process environment: the host's list, with HOME from passwd when unset.
pub fn environment(spec: &ProcessSpec, identity: &Identity) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = Vec::with_capacity(spec.env.len() + 1);
    let mut index = std::collections::HashMap::new();
    for entry in &spec.env {
        if let Some((k, v)) = entry.split_once('=') {
            if !k.is_empty() && !k.contains('\0') && !v.contains('\0') {
                match index.get(k) {
                    Some(&i) => env[i] = (k.to_owned(), v.to_owned()),
                    None => {
                        index.insert(k, env.len());
                        env.push((k.to_owned(), v.to_owned()));
                    }
                }
            }
        }
    }
    if !env.iter().any(|(k, _)| k == "HOME") {
        env.push(("HOME".into(), identity.home.clone()));
    }
    env
}
