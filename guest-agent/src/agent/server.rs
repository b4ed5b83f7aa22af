//! The agent's service: control connections, stdio attachments, the reaper.
//!
//! Process ids are chosen by the host and global to the VM, so a second control
//! connection (`hull stop`, `hull exec`) can signal the container's main process.
//! Each process's `Exited` goes to the connection that started it, after its output
//! has drained (or after a short grace period when a descendant keeps the pipe open).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use guest_agent::protocol::{
    read_frame, write_frame, AgentMessage, Attach, CopyOp, ErrorKind, ExitStatus, HostMessage, ProcessSpec, Stream,
    MAX_HOST_FRAME, VERSION,
};

use super::files;
use super::process::{self, SpawnError};
use super::root;
use super::sys;
use super::vsock::Listener;

/// The id the host gives a container's main process (its `MAIN_PROCESS`).
const MAIN_PROCESS: u32 = 1;

/// How long `Start` waits for the process's stdio connections to arrive.
const ATTACH_WAIT: Duration = Duration::from_secs(10);
/// How long an `Exited` waits for the process's output to drain.
const DRAIN_GRACE: Duration = Duration::from_secs(2);
/// Bound on stdio connections waiting for their `Start`.
const MAX_PENDING: usize = 256;

/// The writing half of one control connection, shared by its processes.
struct Control {
    writer: Mutex<File>,
}

impl Control {
    fn send(&self, message: &AgentMessage) {
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let _ = write_frame(&mut *w, message);
    }
}

struct Proc {
    pid: i32,
    control: Arc<Control>,
    pty: Option<File>,
    drained: Vec<Receiver<()>>,
}

#[derive(Default)]
struct State {
    procs: HashMap<u32, Proc>,
    by_pid: HashMap<i32, u32>,
    pending: HashMap<(u32, Stream), File>,
    shutting_down: bool,
    /// A `Configure` request was served (it is allowed once per boot).
    configured: bool,
}

pub struct Agent {
    state: Mutex<State>,
    attached: Condvar,
    /// Held across fork/exec, and by the reaper while it reaps.
    spawn_lock: Mutex<()>,
    setup_error: Option<String>,
}

impl Agent {
    pub fn new(setup_error: Option<String>) -> Arc<Agent> {
        Arc::new(Agent {
            state: Mutex::new(State::default()),
            attached: Condvar::new(),
            spawn_lock: Mutex::new(()),
            setup_error,
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Serves stdio attachments on `listener` forever.
    pub fn serve_stdio(self: Arc<Self>, listener: Listener) {
        while let Ok(conn) = listener.accept() {
            let agent = self.clone();
            thread::spawn(move || agent.register_attach(conn));
        }
    }

    fn register_attach(&self, mut conn: File) {
        let Ok(Some(attach)) = read_frame::<Attach>(&mut conn, 1024) else {
            return;
        };
        let mut state = self.state();
        if state.pending.len() >= MAX_PENDING || state.procs.contains_key(&attach.id) {
            return;
        }
        state.pending.insert((attach.id, attach.stream), conn);
        self.attached.notify_all();
    }

    /// Serves control connections on `listener` forever.
    pub fn serve_control(self: Arc<Self>, listener: Listener) {
        while let Ok(conn) = listener.accept() {
            let agent = self.clone();
            thread::spawn(move || agent.control_session(conn));
        }
    }

    fn control_session(self: Arc<Self>, mut conn: File) {
        let Ok(writer) = conn.try_clone() else { return };
        let control = Arc::new(Control {
            writer: Mutex::new(writer),
        });
        #[cfg(feature = "hostile")]
        if super::hostile::mute_session() {
            let _ = io::copy(&mut conn, &mut io::sink());
            return;
        }
        match read_frame::<HostMessage>(&mut conn, MAX_HOST_FRAME) {
            Ok(Some(HostMessage::Hello { version })) if version == VERSION => {
                control.send(&AgentMessage::Hello { version: VERSION })
            }
            _ => {
                return control.send(&AgentMessage::Error {
                    id: None,
                    kind: ErrorKind::Protocol,
                    message: format!("expected hello for protocol version {VERSION}"),
                })
            }
        }
        loop {
            match read_frame::<HostMessage>(&mut conn, MAX_HOST_FRAME) {
                Ok(Some(message)) => self.handle(message, &control),
                Ok(None) => return,
                Err(e) => {
                    return control.send(&AgentMessage::Error {
                        id: None,
                        kind: ErrorKind::Protocol,
                        message: e.to_string(),
                    })
                }
            }
        }
    }

    fn handle(self: &Arc<Self>, message: HostMessage, control: &Arc<Control>) {
        #[cfg(feature = "hostile")]
        {
            if let HostMessage::Configure { hostname, .. } = &message {
                super::hostile::arm(hostname);
            }
            if super::hostile::ignore_request(matches!(message, HostMessage::Shutdown)) {
                return;
            }
        }
        let error = |id, kind, message: String| control.send(&AgentMessage::Error { id, kind, message });
        match message {
            HostMessage::Hello { .. } => error(None, ErrorKind::Protocol, "hello sent twice".into()),
            // `start` itself sends `Started`, before the reaper may report the exit.
            HostMessage::Start { id, spec } => {
                if let Err(e) = self.start(id, &spec, control) {
                    error(Some(id), e.kind, e.message)
                }
            }
            HostMessage::Signal { id, signal } => {
                let pid = self.state().procs.get(&id).map(|p| p.pid);
                match pid {
                    Some(pid) if (1..=64).contains(&signal) => {
                        if let Err(e) = sys::kill(pid, signal) {
                            error(Some(id), ErrorKind::Internal, format!("signal {signal}: {e}"));
                        }
                    }
                    Some(_) => error(Some(id), ErrorKind::Protocol, format!("invalid signal {signal}")),
                    None => error(Some(id), ErrorKind::Protocol, format!("no process {id}")),
                }
            }
            HostMessage::Resize { id, rows, cols } => {
                if let Some(pty) = self.state().procs.get(&id).and_then(|p| p.pty.as_ref()) {
                    let _ = sys::set_window_size(pty, rows, cols);
                }
            }
            HostMessage::Copy { id, op } => {
                if let Err(e) = self.copy(id, op, control) {
                    error(Some(id), e.kind, e.message)
                }
            }
            HostMessage::Configure {
                hostname,
                mounts,
                hosts,
                resources,
                read_only,
                sysctls,
            } => match self.configure(&hostname, mounts, &hosts, &resources, read_only, &sysctls) {
                Ok(()) => control.send(&AgentMessage::Configured),
                Err(e) => error(None, e.kind, e.message),
            },
            HostMessage::Shutdown => self.shutdown(),
        }
    }

    /// Applies the container's hostname and mounts, once, before any process runs.
    fn configure(
        &self,
        hostname: &str,
        mounts: Vec<guest_agent::mounts::MountArg>,
        hosts: &[guest_agent::protocol::HostEntry],
        resources: &guest_agent::protocol::Resources,
        read_only: bool,
        sysctls: &[(String, String)],
    ) -> Result<(), SpawnError> {
        let fail = |kind, message| Err(SpawnError { kind, message });
        if let Some(e) = &self.setup_error {
            return fail(ErrorKind::Internal, format!("container root: {e}"));
        }
        {
            let mut state = self.state();
            if state.configured || !state.procs.is_empty() {
                return fail(
                    ErrorKind::Protocol,
                    "configuration comes once, before any process".into(),
                );
            }
            state.configured = true;
        }
        let applied = root::set_hostname(hostname, hosts)
            .and_then(|()| super::cgroup::apply(resources, sys::online_cpus()))
            .and_then(|()| resources.shm.map_or(Ok(()), root::resize_shm))
            .and_then(|()| root::mount_volumes(mounts))
            .and_then(|()| root::write_sysctls(sysctls))
            .and_then(|()| if read_only { root::make_read_only() } else { Ok(()) });
        applied.or_else(|e| fail(ErrorKind::Internal, format!("container root: {e}")))
    }

    /// Runs a file operation on its own thread, its data on `id`'s stdio streams.
    fn copy(self: &Arc<Self>, id: u32, op: CopyOp, control: &Arc<Control>) -> Result<(), SpawnError> {
        if let Some(e) = &self.setup_error {
            return Err(SpawnError {
                kind: ErrorKind::Internal,
                message: format!("container root: {e}"),
            });
        }
        let mut wanted = vec![Stream::Stdout];
        if matches!(op, CopyOp::Write { .. }) {
            wanted.push(Stream::Stdin);
        }
        let mut streams = self.wait_for(id, wanted)?;
        let (Some(output), input) = (streams.remove(&Stream::Stdout), streams.remove(&Stream::Stdin)) else {
            unreachable!("wait_for returns every stream asked for")
        };
        control.send(&AgentMessage::Started { id, pid: 0 });
        let control = control.clone();
        thread::spawn(move || {
            let done = output.try_clone().ok();
            let result = run_copy(&op, input, output);
            if let Some(conn) = done {
                sys::shutdown_write(&conn);
            }
            control.send(&match result {
                Ok(()) => AgentMessage::Exited {
                    id,
                    status: ExitStatus::Code(0),
                    oom_killed: false,
                },
                Err(message) => AgentMessage::Error {
                    id: Some(id),
                    kind: ErrorKind::Internal,
                    message,
                },
            });
        });
        Ok(())
    }

    fn start(self: &Arc<Self>, id: u32, spec: &ProcessSpec, control: &Arc<Control>) -> Result<(), SpawnError> {
        let refuse = |kind, message: String| SpawnError { kind, message };
        if let Some(e) = &self.setup_error {
            return Err(refuse(ErrorKind::Internal, format!("container root: {e}")));
        }
        if self.state().procs.contains_key(&id) {
            return Err(refuse(ErrorKind::Protocol, format!("process {id} exists")));
        }
        #[cfg(feature = "hostile")]
        if let Some(message) = super::hostile::start_error() {
            return Err(refuse(ErrorKind::Internal, message));
        }
        let identity = self.identity(&spec.user, &spec.group_add)?;
        let mut streams = self.wait_for_streams(id, spec)?;
        let env = process::environment(spec, &identity);
        let _spawning = self.spawn_lock.lock().unwrap_or_else(|e| e.into_inner());
        let started = process::spawn(spec, &identity, env)?;
        let mut drained = Vec::new();
        let take = |s: Stream, streams: &mut HashMap<Stream, File>| streams.remove(&s);
        let pty_copy = |f: &Option<File>| f.as_ref().and_then(|f| f.try_clone().ok());
        if let Some(out) = take(Stream::Stdout, &mut streams) {
            let source = started.stdout.or_else(|| pty_copy(&started.pty));
            drained.push(pump_out(source, out));
        }
        if let Some(err) = take(Stream::Stderr, &mut streams) {
            drained.push(pump_out(started.stderr, err));
        }
        if let Some(input) = take(Stream::Stdin, &mut streams) {
            pump_in(input, started.stdin.or_else(|| pty_copy(&started.pty)));
        }
        let mut state = self.state();
        state.by_pid.insert(started.pid, id);
        state.procs.insert(
            id,
            Proc {
                pid: started.pid,
                control: control.clone(),
                pty: started.pty,
                drained,
            },
        );
        drop(state);
        // Still under the spawn lock: the reaper cannot report `Exited` before this.
        control.send(&AgentMessage::Started {
            id,
            pid: started.pid as u32,
        });
        Ok(())
    }

    fn identity(&self, user: &str, group_add: &[String]) -> Result<guest_agent::user::Identity, SpawnError> {
        let internal = |e: io::Error| SpawnError {
            kind: ErrorKind::Internal,
            message: format!("reading users: {e}"),
        };
        let root = root::open_root().map_err(internal)?;
        let passwd = root::read_in_root(&root, "/etc/passwd", 4 << 20).map_err(internal)?;
        let group = root::read_in_root(&root, "/etc/group", 4 << 20).map_err(internal)?;
        let resolved = guest_agent::user::resolve(user, &passwd, &group)
            .and_then(|identity| guest_agent::user::add_groups(identity, group_add, &group));
        resolved.map_err(|e| SpawnError {
            kind: ErrorKind::Internal,
            message: e.to_string(),
        })
    }

    /// Waits until the host's stdio connections for process `id` have arrived.
    fn wait_for_streams(&self, id: u32, spec: &ProcessSpec) -> Result<HashMap<Stream, File>, SpawnError> {
        if spec.detached {
            return Ok(HashMap::new());
        }
        let mut wanted = vec![Stream::Stdout];
        if !spec.tty {
            wanted.push(Stream::Stderr);
        }
        if spec.stdin {
            wanted.push(Stream::Stdin);
        }
        self.wait_for(id, wanted)
    }

    /// Waits until the `wanted` connections for `id` have arrived.
    fn wait_for(&self, id: u32, wanted: Vec<Stream>) -> Result<HashMap<Stream, File>, SpawnError> {
        let deadline = Instant::now() + ATTACH_WAIT;
        let mut state = self.state();
        while !wanted.iter().all(|s| state.pending.contains_key(&(id, *s))) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(SpawnError {
                    kind: ErrorKind::Protocol,
                    message: format!("stdio of process {id} was not attached"),
                });
            }
            state = self
                .attached
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        Ok(wanted
            .into_iter()
            .filter_map(|s| state.pending.remove(&(id, s)).map(|f| (s, f)))
            .collect())
    }

    /// Reaps every child (orphans included) and reports the processes it knows.
    pub fn reap_forever(self: Arc<Self>) {
        loop {
            // Wait, without reaping, until some child has exited.
            // SAFETY: siginfo_t is plain data; waitid writes it.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            // SAFETY: valid pointer to `info`.
            let rc = unsafe { libc::waitid(libc::P_ALL, 0, &mut info, libc::WEXITED | libc::WNOWAIT) };
            if rc < 0 {
                thread::sleep(Duration::from_millis(50));
                continue;
            }
            let _spawning = self.spawn_lock.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                let mut status = 0;
                // SAFETY: valid pointer to `status`.
                let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
                if pid <= 0 {
                    break;
                }
                self.exited(pid, status);
            }
        }
    }

    fn exited(&self, pid: i32, status: i32) {
        let mut state = self.state();
        let Some(id) = state.by_pid.remove(&pid) else { return };
        let Some(proc) = state.procs.remove(&id) else { return };
        drop(state);
        let status = if libc::WIFSIGNALED(status) {
            ExitStatus::Signal(libc::WTERMSIG(status))
        } else {
            ExitStatus::Code(libc::WEXITSTATUS(status))
        };
        #[cfg(feature = "hostile")]
        let status = super::hostile::exit_status(status, id == MAIN_PROCESS);
        let oom_killed = id == MAIN_PROCESS && super::cgroup::oom_kills() > 0;
        thread::spawn(move || {
            let deadline = Instant::now() + DRAIN_GRACE;
            for done in &proc.drained {
                let _ = done.recv_timeout(deadline.saturating_duration_since(Instant::now()));
            }
            proc.control.send(&AgentMessage::Exited { id, status, oom_killed });
        });
    }

    fn shutdown(&self) -> ! {
        self.state().shutting_down = true;
        // Everything but PID 1 (this agent).
        let _ = sys::kill(-1, libc::SIGKILL);
        thread::sleep(Duration::from_millis(20));
        root::teardown();
        sys::power_off()
    }
}

/// Runs a file operation (see [`files::run`]).
#[cfg(not(feature = "hostile"))]
fn run_copy(op: &CopyOp, input: Option<File>, output: File) -> Result<(), String> {
    files::run(op, input, output)
}

/// Runs a file operation, or the hostile agent's attack on it.
#[cfg(feature = "hostile")]
fn run_copy(op: &CopyOp, input: Option<File>, mut output: File) -> Result<(), String> {
    match super::hostile::copy(op, &mut output) {
        Some(attacked) => attacked.map_err(|e| e.to_string()),
        None => files::run(op, input, output),
    }
}

/// Copies a process's output to its connection; signals when it reached the end.
fn pump_out(source: Option<File>, mut conn: File) -> Receiver<()> {
    let (done, drained) = mpsc::channel();
    thread::spawn(move || {
        if let Some(mut source) = source {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match source.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if conn.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    // EIO: the last holder of a pty's slave side closed it.
                    Err(_) => break,
                }
            }
        }
        sys::shutdown_write(&conn);
        let _ = done.send(());
    });
    drained
}

/// Copies the host's input to the process until the host closes it.
fn pump_in(mut conn: File, sink: Option<File>) {
    thread::spawn(move || {
        let Some(mut sink) = sink else { return };
        let _ = io::copy(&mut conn, &mut sink);
        // Dropping `sink` closes the pipe: the process reads end-of-file.
    });
}
