//! The per-container monitor: a `hull` process, started detached by `run`/`start`,
//! that owns the container's VMM for as long as it runs. It boots the VM, starts the
//! main process through the agent, copies its output to the log (and to an attached
//! `hull` command), records the exit status, powers the VM off, and removes `--rm`
//! containers. Nothing outlives it but the records it wrote.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Child, ExitStatus as ProcessStatus, Stdio};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use chrono::Utc;
use guest_agent::protocol::{AgentMessage, HostMessage};

use crate::error::error_chain;
use crate::image::store::fs::flock;

use super::agent::{self, AgentError, Session};
use super::assets::{self, AssetError, Assets};
use super::attach::Frame;
use super::logs::{LogStream, LogWriter};
use super::network::{self, NetworkError, NetworkMode};
use super::proc::{self, ProcessId};
use super::ready::{self, Notifier};
use super::virtiofs::{Shares, VirtiofsError};
use super::{vm, Container, ContainerError, ContainerStore, Status};

/// The id the main process has in the agent; `exec` uses others.
pub const MAIN_PROCESS: u32 = 1;
/// How long an attached command has to connect before the process starts anyway.
const ATTACH_TIMEOUT: Duration = Duration::from_secs(30);
/// How long output may keep draining after the process exited.
const DRAIN_GRACE: Duration = Duration::from_secs(2);
/// How long the VM gets to power off before it is killed.
const POWER_OFF_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error(transparent)]
    Container(#[from] ContainerError),
    #[error(transparent)]
    Assets(#[from] AssetError),
    #[error(transparent)]
    Network(#[from] NetworkError),
    #[error(transparent)]
    Virtiofs(#[from] VirtiofsError),
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> MonitorError {
    let what = what.into();
    move |source| MonitorError::Io { what, source }
}

/// The boot timeout: `HULL_BOOT_TIMEOUT` seconds, 30 by default.
pub fn boot_timeout() -> Duration {
    let secs = std::env::var("HULL_BOOT_TIMEOUT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    Duration::from_secs(secs)
}

/// How a run ended, as recorded in the state.
struct Outcome {
    code: i32,
    error: String,
    /// The guest's OOM killer killed a process of the container.
    oom_killed: bool,
}

impl Outcome {
    /// A run that ended with `code` and why, without an OOM kill.
    fn failed(code: i32, error: String) -> Outcome {
        Outcome {
            code,
            error,
            oom_killed: false,
        }
    }
}

/// Output a run could not keep: the log's rotation, the VMM's console cap.
#[derive(Debug, Default)]
struct Dropped {
    log: u64,
    console: u64,
}

enum Event {
    Agent(AgentMessage),
    AgentLost(String),
    VmmExited(ProcessStatus),
}

/// Runs container `id` to its end. Returns the exit code recorded.
/// `ready` reaches the command that started the monitor ([`super::ready`]).
pub fn run(store_root: &Path, id: &str, attach: bool, ready: Notifier) -> Result<i32, MonitorError> {
    let containers = ContainerStore::open(store_root)?;
    let mut c = containers.find(id)?;
    // One monitor per container, held for its whole life: a second `start` racing
    // this one finds the lock taken and leaves the container alone.
    let lock_path = c.dir.join("monitor.lock");
    let lock_file = File::create(&lock_path).map_err(io(format!("create {}", lock_path.display())))?;
    match flock(&lock_file, libc::LOCK_EX | libc::LOCK_NB) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
            return Err(MonitorError::Io {
                what: format!("container {}", &c.config.id[..12]),
                source: std::io::Error::other("it already has a monitor (started twice at once?)"),
            })
        }
        Err(e) => return Err(io(format!("lock {}", lock_path.display()))(e)),
    }
    let run_dir = super::create_run_dir(&c.config.id).map_err(io("runtime directory"))?;
    let listener = if attach {
        let path = run_dir.join("attach.sock");
        let _ = fs::remove_file(&path);
        Some(UnixListener::bind(&path).map_err(io(format!("attach socket {}", path.display())))?)
    } else {
        None
    };
    let me = ProcessId::of(std::process::id());
    c.update(|s| {
        s.run_dir = Some(run_dir.clone());
        s.monitor = me;
        s.vmm = None;
        s.exit_code = None;
        s.oom_killed = false;
        s.error.clear();
    })?;
    let client = Client {
        ready: Arc::new(ready),
        ..Client::default()
    };
    if let Some(listener) = listener {
        client.ready.send(ready::Event::AttachReady);
        client.accept(listener, ATTACH_TIMEOUT);
    }
    let mut dropped = Dropped::default();
    let outcome = match boot_and_run(&mut c, store_root, &client, &mut dropped) {
        Ok(o) => o,
        Err(e) => Outcome::failed(125, error_chain(&e)),
    };
    if !outcome.error.is_empty() {
        eprintln!("hull monitor: {}", outcome.error);
    }
    let _ = fs::remove_dir_all(&run_dir);
    c.update(|s| {
        s.run_dir = None;
        s.status = Status::Exited;
        s.exit_code = Some(outcome.code);
        s.oom_killed = outcome.oom_killed;
        s.error = outcome.error.clone();
        s.finished_at = Some(Utc::now());
        s.monitor = None;
        s.vmm = None;
        s.log_dropped_bytes = dropped.log;
        s.console_dropped_bytes = dropped.console;
    })?;
    if c.config.auto_remove {
        containers.remove(&c)?;
    }
    // Last, so an attached `run --rm` returns only once everything is recorded.
    if !outcome.error.is_empty() {
        client.send(&Frame::Error(outcome.error.clone()));
    }
    client.ready.send(ready::Event::Ended);
    client.send(&Frame::Exit(outcome.code));
    drop(lock_file);
    Ok(outcome.code)
}

fn boot_and_run(
    c: &mut Container,
    store_root: &Path,
    client: &Client,
    dropped: &mut Dropped,
) -> Result<Outcome, MonitorError> {
    let assets = Assets::locate()?;
    let initramfs = assets::initramfs(&store_root.join("initramfs"), &assets.agent)?;
    let _ = fs::remove_file(c.vsock_path());
    let vmm_log = File::create(c.dir.join("vmm.log")).map_err(io("vmm log"))?;
    // The user-mode network first: the VMM connects to passt's socket at start.
    let mut passt = match c.config.network {
        NetworkMode::User => {
            let socket = c.net_socket_path();
            Some((
                network::start_passt(
                    &socket,
                    &c.config.ports,
                    network::reaches_host(&c.config.extra_hosts),
                    &c.dir.join("passt.log"),
                )?,
                socket,
            ))
        }
        NetworkMode::None => None,
    };
    // Then the shared directories' virtiofsd, for the same reason.
    let mut shares = match Shares::start(&c.config.mounts, &c.socket_dir(), &c.dir) {
        Ok(shares) => shares,
        Err(e) => {
            stop_passt(&mut passt);
            return Err(e.into());
        }
    };
    let net_socket = passt.as_ref().map(|(_, socket)| socket.as_path());
    let fs_devices = shares.devices();
    let config = vm::vm_config(&assets, &initramfs, c, &c.console_path(), net_socket, Some(&fs_devices));
    let mut vmm_command = vm::vmm_command(&assets, &config);
    super::proc::die_with_parent(&mut vmm_command);
    let spawned = vmm_command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(vmm_log)
        .spawn()
        .map_err(io(format!("start {}", assets.vmm.display())));
    let child = match spawned {
        Ok(child) => child,
        Err(e) => {
            stop_passt(&mut passt);
            return Err(e);
        }
    };
    let vmm = ProcessId::of(child.id());
    c.update(|s| s.vmm = vmm)?;
    let (events, rx) = mpsc::channel();
    let vmm_done = Arc::new(Mutex::new(false));
    watch_vmm(child, events.clone(), vmm_done.clone());
    let mut control = None;
    let mut result = run_main_process(c, client, &events, &rx, &vmm_done, &mut control, &mut dropped.log);
    power_off(c, vmm, &rx, &vmm_done, control);
    dropped.console = console_dropped(&super::programs::log_tail(&c.dir.join("vmm.log")));
    if let (Ok(outcome), Some(why)) = (&mut result, shares.failure()) {
        if !outcome.error.is_empty() {
            outcome.error = format!("{}; {why}", outcome.error);
        }
    }
    shares.stop();
    stop_passt(&mut passt);
    result
}

/// passt quits by itself once the VMM is gone (`--one-off`); this makes sure.
fn stop_passt(passt: &mut Option<(Child, std::path::PathBuf)>) {
    if let Some((mut child, socket)) = passt.take() {
        let deadline = Instant::now() + Duration::from_secs(2);
        while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        let _ = fs::remove_file(socket);
    }
}

fn run_main_process(
    c: &mut Container,
    client: &Client,
    events: &Sender<Event>,
    rx: &Receiver<Event>,
    vmm_done: &Arc<Mutex<bool>>,
    shutdown_on: &mut Option<UnixStream>,
    log_dropped: &mut u64,
) -> Result<Outcome, MonitorError> {
    let timeout = boot_timeout();
    let done = vmm_done.clone();
    let session = Session::open(&c.vsock_path(), timeout, move || {
        !*done.lock().unwrap_or_else(|e| e.into_inner())
    });
    let mut session = match session {
        Ok(s) => s,
        Err(e) => {
            return Ok(vm_failure(
                c,
                rx,
                &format!("the VM did not come up: {}", error_chain(&e)),
            ))
        }
    };
    // Hostname, extra hosts and mounts go over the control connection: no user
    // string on the guest's kernel command line.
    let mounts = super::mounts::mount_args(&c.config.mounts);
    let hosts = c.config.extra_hosts.iter().map(|h| h.entry()).collect();
    let configured = session.configure(
        &c.config.hostname,
        hosts,
        mounts,
        c.config.limits.clone(),
        c.config.read_only,
        c.config.sysctls.clone(),
    );
    match configured {
        Ok(()) => {}
        Err(AgentError::Refused { reason, .. }) => return Ok(Outcome::failed(125, reason)),
        Err(e @ AgentError::Unexpected(_)) => return Ok(vm_failure(c, rx, &e.to_string())),
        Err(e) => {
            return Ok(vm_failure(
                c,
                rx,
                &format!("configuring the container: {}", error_chain(&e)),
            ))
        }
    }
    let mut spec = c.config.process.clone();
    spec.stdin = spec.stdin && client.is_attached();
    let stdio = match session.start(MAIN_PROCESS, &spec) {
        Ok(stdio) => stdio,
        Err(e @ AgentError::Refused { .. }) => return Ok(Outcome::failed(e.exit_code(), e.to_string())),
        Err(e @ AgentError::Unexpected(_)) => return Ok(vm_failure(c, rx, &e.to_string())),
        Err(e) => return Ok(vm_failure(c, rx, &format!("starting the process: {}", error_chain(&e)))),
    };
    c.update(|s| {
        s.status = Status::Running;
        s.started_at = Some(Utc::now());
    })?;
    client.ready.send(ready::Event::Running);
    let log = Arc::new(Mutex::new(
        LogWriter::with_limit(&c.log_path(), c.config.log_max_bytes).map_err(io("container log"))?,
    ));
    let mut drained = vec![pump_output(
        stdio.stdout,
        LogStream::Stdout,
        log.clone(),
        client.clone(),
    )];
    if let Some(err) = stdio.stderr {
        drained.push(pump_output(err, LogStream::Stderr, log.clone(), client.clone()));
    }
    let control = session.sender().map_err(io("agent connection"))?;
    *shutdown_on = session.sender().ok();
    client.serve_input(stdio.stdin, control);
    // The process runs as long as it likes; the VM's end closes the connection.
    session.without_deadline().map_err(io("agent connection"))?;
    let events = events.clone();
    thread::spawn(move || loop {
        match session.recv() {
            Ok(m) => {
                if events.send(Event::Agent(m)).is_err() {
                    return;
                }
            }
            Err(e) => return drop(events.send(Event::AgentLost(error_chain(&e)))),
        }
    });
    let outcome = wait_for_exit(c, rx);
    let deadline = Instant::now() + DRAIN_GRACE;
    for d in drained {
        let _ = d.recv_timeout(deadline.saturating_duration_since(Instant::now()));
    }
    *log_dropped = log.lock().unwrap_or_else(|e| e.into_inner()).dropped();
    Ok(outcome)
}

/// The console bytes the VMM says it dropped (`vmm: console: N bytes dropped ...`).
fn console_dropped(vmm_log: &str) -> u64 {
    vmm_log
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("vmm: console: "))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn wait_for_exit(c: &Container, rx: &Receiver<Event>) -> Outcome {
    loop {
        match rx.recv() {
            Ok(Event::Agent(AgentMessage::Exited { id, status, oom_killed })) if id == MAIN_PROCESS => {
                return Outcome {
                    code: status.shell_code(),
                    error: String::new(),
                    oom_killed,
                }
            }
            Ok(Event::Agent(_)) => {}
            Ok(Event::AgentLost(e)) => return vm_failure(c, rx, &format!("lost the agent: {e}")),
            Ok(Event::VmmExited(status)) => return vmm_exit_outcome(c, status),
            Err(_) => return Outcome::failed(125, "monitor channel closed".into()),
        }
    }
}

/// The VM failed before or while the process ran: wait briefly for the VMM's own
/// exit to say why.
fn vm_failure(c: &Container, rx: &Receiver<Event>, what: &str) -> Outcome {
    let deadline = Instant::now() + Duration::from_secs(5);
    while let Ok(event) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        if let Event::VmmExited(status) = event {
            let mut o = vmm_exit_outcome(c, status);
            o.error = format!("{what}; {}", o.error);
            return o;
        }
    }
    Outcome::failed(125, what.to_owned())
}

fn vmm_exit_outcome(c: &Container, status: ProcessStatus) -> Outcome {
    use std::os::unix::process::ExitStatusExt;
    let log = super::programs::log_tail(&c.dir.join("vmm.log"));
    let last = log
        .lines()
        .rev()
        .find(|l| l.starts_with("vmm: "))
        .or_else(|| log.lines().rev().find(|l| !l.trim().is_empty()))
        .unwrap_or("")
        .to_owned();
    let (code, how) = match status.signal() {
        Some(sig) => (128 + sig, format!("the VMM was killed by signal {sig}")),
        None => (125, format!("the VM stopped unexpectedly ({status})")),
    };
    let detail = if last.is_empty() {
        String::new()
    } else {
        format!(": {}", agent::printable(&last))
    };
    Outcome::failed(code, format!("{how}{detail}"))
}

fn watch_vmm(mut child: Child, events: Sender<Event>, done: Arc<Mutex<bool>>) {
    thread::spawn(move || {
        let status = child.wait();
        *done.lock().unwrap_or_else(|e| e.into_inner()) = true;
        if let Ok(status) = status {
            let _ = events.send(Event::VmmExited(status));
        }
    });
}

/// Asks the agent to power off (on the main control connection, or a fresh one when
/// that is gone), then kills the VMM if it lingers.
fn power_off(
    c: &Container,
    vmm: Option<ProcessId>,
    rx: &Receiver<Event>,
    vmm_done: &Arc<Mutex<bool>>,
    control: Option<UnixStream>,
) {
    let exited = || *vmm_done.lock().unwrap_or_else(|e| e.into_inner());
    let sent = control.is_some_and(|mut s| agent::send_on(&mut s, &HostMessage::Shutdown).is_ok());
    if !sent && !exited() {
        if let Ok(mut s) = Session::open(&c.vsock_path(), Duration::from_secs(2), || true) {
            let _ = s.send(&HostMessage::Shutdown);
        }
    }
    let deadline = Instant::now() + POWER_OFF_GRACE;
    while !exited() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            if let Some(vmm) = vmm {
                vmm.signal(libc::SIGKILL);
            }
            let _ = rx.recv_timeout(Duration::from_secs(5));
            break;
        }
        let _ = rx.recv_timeout(left.min(Duration::from_millis(100)));
    }
}

/// Copies one output stream of the process to the log and the attached client.
fn pump_output(mut from: UnixStream, stream: LogStream, log: Arc<Mutex<LogWriter>>, client: Client) -> Receiver<()> {
    let (done, drained) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let data = &buf[..n];
            if let Err(e) = log.lock().unwrap_or_else(|e| e.into_inner()).write(stream, data) {
                eprintln!("hull monitor: container log: {e}");
            }
            client.send(&match stream {
                LogStream::Stdout => Frame::Stdout(data.to_vec()),
                LogStream::Stderr => Frame::Stderr(data.to_vec()),
            });
        }
        let _ = done.send(());
    });
    drained
}

/// The `hull` commands the monitor serves: the one that started it (told how the
/// start goes through `ready`) and the attached one, if any; either may go away at any
/// time.
#[derive(Clone, Default)]
struct Client {
    writer: Arc<Mutex<Option<UnixStream>>>,
    reader: Arc<Mutex<Option<UnixStream>>>,
    ready: Arc<Notifier>,
}

impl Client {
    /// Waits up to `timeout` for the attaching command to connect.
    fn accept(&self, listener: UnixListener, timeout: Duration) {
        if !proc::wait_readable(&listener, timeout) {
            return;
        }
        if let Ok((stream, _)) = listener.accept() {
            if let Ok(reader) = stream.try_clone() {
                *self.reader.lock().unwrap_or_else(|e| e.into_inner()) = Some(reader);
                *self.writer.lock().unwrap_or_else(|e| e.into_inner()) = Some(stream);
            }
        }
    }

    fn is_attached(&self) -> bool {
        self.writer.lock().unwrap_or_else(|e| e.into_inner()).is_some()
    }

    fn send(&self, frame: &Frame) {
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(stream) = w.as_mut() {
            if frame.write(stream).is_err() {
                // The command went away (Ctrl-C on `hull run`): the container runs on.
                *w = None;
            }
        }
    }

    /// Forwards the client's input, terminal sizes and signals to the agent.
    fn serve_input(&self, stdin: Option<UnixStream>, mut control: UnixStream) {
        let Some(mut reader) = self.reader.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        thread::spawn(move || {
            let mut stdin = stdin;
            while let Ok(Some(frame)) = Frame::read(&mut reader) {
                match frame {
                    Frame::Stdin(data) => {
                        if let Some(s) = stdin.as_mut() {
                            if s.write_all(&data).is_err() {
                                stdin = None;
                            }
                        }
                    }
                    Frame::StdinClosed => {
                        if let Some(s) = stdin.take() {
                            let _ = s.shutdown(std::net::Shutdown::Write);
                        }
                    }
                    Frame::Resize { rows, cols } => {
                        let m = HostMessage::Resize {
                            id: MAIN_PROCESS,
                            rows,
                            cols,
                        };
                        let _ = agent::send_on(&mut control, &m);
                    }
                    Frame::Signal(signal) => {
                        let m = HostMessage::Signal {
                            id: MAIN_PROCESS,
                            signal,
                        };
                        let _ = agent::send_on(&mut control, &m);
                    }
                    _ => {}
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vmms_count_of_dropped_console_bytes_is_read_from_its_log() {
        let log = "vmm: warning: x\nvmm: console: 1234 bytes dropped past the 8388608-byte limit\nvmm: guest reset\n";
        assert_eq!(console_dropped(log), 1234);
        assert_eq!(console_dropped("vmm: guest reset\n"), 0);
        assert_eq!(console_dropped("vmm: console: lots bytes dropped\n"), 0);
    }
}
