//! `hull start`, `hull restart`.

use std::time::Duration;

use super::lifecycle;
use super::run::exit_byte;

#[derive(Debug, clap::Args)]
pub struct StartArgs {
    /// Attach STDOUT/STDERR and forward signals
    #[arg(short, long)]
    attach: bool,
    /// Attach container's STDIN
    #[arg(short, long)]
    interactive: bool,
    /// Containers to start
    #[arg(required = true)]
    containers: Vec<String>,
}

pub fn run(args: StartArgs) -> anyhow::Result<u8> {
    let store = lifecycle::containers()?;
    if args.attach || args.interactive {
        anyhow::ensure!(
            args.containers.len() == 1,
            "you cannot start and attach multiple containers at once"
        );
        super::terminal::block_signals();
        let mut c = store.find(&args.containers[0])?;
        if c.state.is_running() {
            anyhow::bail!(
                "container {} is already running; attaching to a running container is not supported",
                args.containers[0]
            );
        }
        if !args.interactive {
            c.config.process.stdin = false;
        }
        let ready = lifecycle::spawn_monitor(&mut c, true)?;
        let stream = lifecycle::connect_attach(&mut c, ready)?;
        return Ok(exit_byte(lifecycle::attach_until_exit(&mut c, stream)?));
    }
    Ok(lifecycle::for_each(&args.containers, |name| {
        start_detached(&store, name)
    }))
}

pub fn start_detached(store: &hull::container::ContainerStore, name: &str) -> anyhow::Result<()> {
    let mut c = store.find(name)?;
    if c.state.is_running() {
        return Ok(());
    }
    let ready = lifecycle::spawn_monitor(&mut c, false)?;
    if let Some((code, error)) = lifecycle::wait_started(&mut c, ready)? {
        anyhow::bail!("container {name}: {error} (exit code {code})");
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct RestartArgs {
    /// Seconds to wait before killing the container (default: its stop timeout)
    #[arg(short = 't', long = "timeout", alias = "time", value_name = "SECONDS")]
    time: Option<u64>,
    /// Signal to send instead of the image's stop signal
    #[arg(short, long)]
    signal: Option<String>,
    #[arg(required = true)]
    containers: Vec<String>,
}

pub fn restart(args: RestartArgs) -> anyhow::Result<u8> {
    let store = lifecycle::containers()?;
    let signal = args.signal.as_deref().map(super::stop::signal_arg).transpose()?;
    Ok(lifecycle::for_each(&args.containers, |name| {
        let mut c = store.find(name)?;
        if let Some(s) = signal {
            c.config.stop_signal = s;
        }
        let timeout = args.time.unwrap_or(u64::from(c.config.stop_timeout));
        lifecycle::stop(&mut c, Duration::from_secs(timeout))?;
        start_detached(&store, name)
    }))
}
