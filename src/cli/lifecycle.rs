//! What the container commands share: finding containers, starting a monitor,
//! attaching to it, and signalling the main process.

use std::fs::OpenOptions;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use guest_agent::protocol::HostMessage;
use hull::container::agent::Session;
use hull::container::monitor::{boot_timeout, MAIN_PROCESS};
use hull::container::{Container, ContainerStore, Status};

use hull::container::ready::{self, Event, Waiter};

use super::terminal::{self, Ended};

pub fn containers() -> anyhow::Result<ContainerStore> {
    Ok(ContainerStore::open(super::open_store()?.root())?)
}

/// Starts the container's monitor, detached from this command's session so it lives
/// on after it (and a Ctrl-C on the terminal does not reach it). The monitor reports
/// how its start goes on the returned channel.
pub fn spawn_monitor(c: &mut Container, attach: bool) -> anyhow::Result<Waiter> {
    // Back to "created" first, so nobody mistakes the last run's end for this one's
    // (unless another command started it meanwhile).
    let mut running = false;
    c.update(|s| {
        running = s.monitor.is_some_and(|m| m.is_alive());
        if !running {
            s.status = Status::Created;
            s.exit_code = None;
            s.oom_killed = false;
            s.error.clear();
        }
    })?;
    if running {
        bail!("container {} is already running", &c.id()[..12]);
    }
    let store_root = c
        .dir
        .parent()
        .and_then(|p| p.parent())
        .context("container directory outside a store")?;
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(c.monitor_log_path())
        .with_context(|| format!("open {}", c.monitor_log_path().display()))?;
    let mut cmd = Command::new(std::env::current_exe().context("locating the hull executable")?);
    cmd.arg("container-monitor").arg(c.id()).env("HULL_ROOT", store_root);
    if attach {
        cmd.arg("--attach");
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
    // SAFETY: setsid is async-signal-safe and touches no memory.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    };
    let waiter = ready::pair_for(&mut cmd).context("making the monitor's channel")?;
    cmd.spawn().context("starting the container monitor")?;
    Ok(waiter)
}

/// Connects to the monitor's attach socket once the monitor says it listens (it
/// creates it before booting).
pub fn connect_attach(c: &mut Container, mut ready: Waiter) -> anyhow::Result<UnixStream> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let short = c.id()[..12].to_owned();
    let what = || format!("attach to container {short}");
    let event = ready.until(Event::AttachReady, deadline).with_context(what)?;
    c.reload()?;
    match (event, &c.state.run_dir) {
        (Some(Event::AttachReady), Some(_)) => UnixStream::connect(c.attach_path()).with_context(what),
        _ => {
            let _ = c.settle();
            bail!(
                "container {short}: its monitor ended before it could be attached{}",
                if c.state.error.is_empty() {
                    format!(" (see {})", c.monitor_log_path().display())
                } else {
                    format!(": {}", c.state.error)
                }
            )
        }
    }
}

/// Attached until the process exits; returns its exit code.
pub fn attach_until_exit(c: &mut Container, stream: UnixStream) -> anyhow::Result<i32> {
    let p = &c.config.process;
    match terminal::attach(stream, p.tty, p.stdin)? {
        Ended::Exit(code) => Ok(code),
        Ended::Lost => {
            // The monitor died (or --rm removed the records): report what is known.
            let _ = c.reload();
            let _ = c.settle();
            bail!(
                "container {}: lost its monitor{}",
                &c.id()[..12],
                if c.state.error.is_empty() {
                    String::new()
                } else {
                    format!(": {}", c.state.error)
                }
            )
        }
    }
}

/// Waits until a detached start is running (or already over), as the monitor reports
/// it; the container's record then says how it went. Returns the exit code and error
/// of a start that failed.
pub fn wait_started(c: &mut Container, mut ready: Waiter) -> anyhow::Result<Option<(i32, String)>> {
    let deadline = Instant::now() + boot_timeout() + Duration::from_secs(15);
    let event = match ready.until(Event::Running, deadline) {
        Ok(event) => event,
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
            bail!("container {}: start timed out", &c.id()[..12])
        }
        Err(e) => return Err(e).context(format!("container {}: its monitor's channel", &c.id()[..12])),
    };
    if c.reload().is_err() {
        // An --rm container that already ended and was removed.
        return Ok(None);
    }
    c.settle()?;
    match c.state.status {
        Status::Running => Ok(None),
        Status::Exited if !c.state.error.is_empty() => {
            Ok(Some((c.state.exit_code.unwrap_or(125), c.state.error.clone())))
        }
        Status::Exited => Ok(None),
        // The monitor went away without a word and without recording anything.
        Status::Created => bail!(
            "container {}: its monitor did not start{} (see {})",
            &c.id()[..12],
            if event.is_none() { "" } else { " the container" },
            c.monitor_log_path().display()
        ),
    }
}

/// Waits until the container is no longer running (monitor gone); `None` on timeout.
pub fn wait_exited(c: &mut Container, timeout: Option<Duration>) -> anyhow::Result<Option<i32>> {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        if c.reload().is_err() {
            return Ok(Some(c.state.exit_code.unwrap_or(0)));
        }
        c.settle()?;
        if c.state.status == Status::Exited && c.state.monitor.is_none() {
            return Ok(Some(c.state.exit_code.unwrap_or(0)));
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How long `stop` and `kill` wait for the agent to take a signal.
const SIGNAL_TIMEOUT: Duration = Duration::from_secs(3);
/// How long `stop` waits for the main process after its SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(3);
/// How long `stop` and `rm -f` wait for the monitor to record a killed VMM's end.
pub const VMM_KILL_GRACE: Duration = Duration::from_secs(15);
/// How long after N `stop -t N` kills the VMM at the latest, whatever the guest does:
/// two signals through the agent (each at most twice [`SIGNAL_TIMEOUT`]) and
/// [`KILL_GRACE`]. The command itself returns at most [`VMM_KILL_GRACE`] later.
const STOP_GRACE: Duration = Duration::from_secs(4 * 3 + 3);

/// Sends `signal` to the main process through the agent. With SIGKILL and an agent
/// that does not answer, the VM itself is killed.
pub fn signal_main(c: &Container, signal: i32) -> anyhow::Result<()> {
    let alive = || true;
    match Session::open(&c.vsock_path(), SIGNAL_TIMEOUT, alive) {
        Ok(mut s) => {
            s.send(&HostMessage::Signal {
                id: MAIN_PROCESS,
                signal,
            })?;
            Ok(())
        }
        Err(_) if signal == libc::SIGKILL => {
            kill_vm(c);
            Ok(())
        }
        Err(e) => Err(e).with_context(|| format!("container {}: signal {signal}", &c.id()[..12])),
    }
}

/// Kills the VMM outright; the monitor records the end.
pub fn kill_vm(c: &Container) {
    if let Some(vmm) = c.state.vmm {
        vmm.signal(libc::SIGKILL);
    }
}

/// Docker's stop: the stop signal, then SIGKILL after `timeout`, then the VM itself
/// is killed: at the latest `timeout` + [`STOP_GRACE`] from now, whatever the guest
/// does.
pub fn stop(c: &mut Container, timeout: Duration) -> anyhow::Result<()> {
    c.settle()?;
    if !c.state.is_running() {
        return Ok(());
    }
    let kill_by = Instant::now() + timeout + STOP_GRACE;
    let left = |wanted: Duration| wanted.min(kill_by.saturating_duration_since(Instant::now()));
    if c.state.status == Status::Running {
        let _ = signal_main(c, c.config.stop_signal);
        if wait_exited(c, Some(left(timeout)))?.is_some() {
            return Ok(());
        }
        let _ = signal_main(c, libc::SIGKILL);
        if wait_exited(c, Some(left(KILL_GRACE)))?.is_some() {
            return Ok(());
        }
    }
    kill_vm(c);
    if wait_exited(c, Some(VMM_KILL_GRACE))?.is_none() {
        bail!("container {}: did not stop", &c.id()[..12]);
    }
    Ok(())
}

/// Runs `each` for every named container, printing the name on success as Docker does.
pub fn for_each(names: &[String], mut each: impl FnMut(&str) -> anyhow::Result<()>) -> u8 {
    let mut failed = false;
    for name in names {
        match each(name) {
            Ok(()) => println!("{name}"),
            Err(e) => {
                eprintln!("hull: {e:#}");
                failed = true;
            }
        }
    }
    if failed {
        super::EXIT_HULL_FAILURE
    } else {
        0
    }
}
