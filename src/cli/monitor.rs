//! `hull container-monitor ID [--attach]`: the per-container monitor (internal; `run`
//! and `start` start it).

#[derive(Debug, clap::Args)]
pub struct MonitorArgs {
    /// Wait for a command to attach before starting the process
    #[arg(long)]
    attach: bool,
    id: String,
}

pub fn run(args: MonitorArgs) -> anyhow::Result<u8> {
    // The monitor must not die of SIGPIPE or a terminal's signals.
    // SAFETY: installing SIG_IGN has no memory-safety preconditions.
    unsafe {
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
        libc::signal(libc::SIGINT, libc::SIG_IGN);
    }
    // First, before anything can be spawned with the descriptor.
    let ready = hull::container::ready::Notifier::from_env();
    let store = super::open_store()?;
    let code = hull::container::monitor::run(store.root(), &args.id, args.attach, ready)?;
    Ok(super::run::exit_byte(code))
}
