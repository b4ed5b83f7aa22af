//! `hull stop`, `hull kill`, `hull wait`.

use std::time::Duration;

use hull::container::spec::parse_signal;

use super::lifecycle;

#[derive(Debug, clap::Args)]
pub struct StopArgs {
    /// Seconds to wait before killing the container (default: its stop timeout)
    #[arg(short = 't', long = "timeout", alias = "time", value_name = "SECONDS")]
    time: Option<u64>,
    /// Signal to send instead of the image's stop signal
    #[arg(short, long)]
    signal: Option<String>,
    #[arg(required = true)]
    containers: Vec<String>,
}

pub fn run(args: StopArgs) -> anyhow::Result<u8> {
    let store = lifecycle::containers()?;
    let signal = args.signal.as_deref().map(signal_arg).transpose()?;
    Ok(lifecycle::for_each(&args.containers, |name| {
        let mut c = store.find(name)?;
        if let Some(s) = signal {
            c.config.stop_signal = s;
        }
        let timeout = args.time.unwrap_or(u64::from(c.config.stop_timeout));
        lifecycle::stop(&mut c, Duration::from_secs(timeout))
    }))
}

pub(super) fn signal_arg(s: &str) -> anyhow::Result<i32> {
    parse_signal(s).ok_or_else(|| anyhow::anyhow!("invalid signal: {s}"))
}

#[derive(Debug, clap::Args)]
pub struct KillArgs {
    /// Signal to send to the container
    #[arg(short, long, default_value = "KILL")]
    signal: String,
    #[arg(required = true)]
    containers: Vec<String>,
}

pub fn kill(args: KillArgs) -> anyhow::Result<u8> {
    let store = lifecycle::containers()?;
    let signal = signal_arg(&args.signal)?;
    Ok(lifecycle::for_each(&args.containers, |name| {
        let c = store.find(name)?;
        if !c.state.is_running() {
            anyhow::bail!("cannot kill container: {name}: container {} is not running", c.id());
        }
        lifecycle::signal_main(&c, signal)
    }))
}

#[derive(Debug, clap::Args)]
pub struct WaitArgs {
    #[arg(required = true)]
    containers: Vec<String>,
}

pub fn wait(args: WaitArgs) -> anyhow::Result<u8> {
    let store = lifecycle::containers()?;
    let mut failed = false;
    for name in &args.containers {
        match store
            .find(name)
            .map_err(anyhow::Error::from)
            .and_then(|mut c| lifecycle::wait_exited(&mut c, None))
        {
            Ok(code) => println!("{}", code.unwrap_or(0)),
            Err(e) => {
                eprintln!("hull: {e:#}");
                failed = true;
            }
        }
    }
    Ok(if failed { super::EXIT_HULL_FAILURE } else { 0 })
}
