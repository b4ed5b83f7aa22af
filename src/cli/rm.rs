//! `hull rm`: remove containers.

use super::lifecycle;

#[derive(Debug, clap::Args)]
pub struct RmArgs {
    /// Force the removal of a running container (kills it)
    #[arg(short, long)]
    force: bool,
    /// Remove the anonymous volumes of the container. hull has none (`-v /path` is
    /// refused at create; named volumes stay, as in Docker), so there is nothing to
    /// remove.
    #[arg(short, long)]
    volumes: bool,
    #[arg(required = true)]
    containers: Vec<String>,
}

pub fn run(args: RmArgs) -> anyhow::Result<u8> {
    // Accepted for Docker's scripts; see the flag's doc.
    let _ = args.volumes;
    let store = lifecycle::containers()?;
    Ok(lifecycle::for_each(&args.containers, |name| {
        let mut c = store.find(name)?;
        if c.state.is_running() {
            if !args.force {
                anyhow::bail!(
                    "cannot remove container \"{name}\": container is running: stop the container before removing or force remove"
                );
            }
            lifecycle::kill_vm(&c);
            if lifecycle::wait_exited(&mut c, Some(lifecycle::VMM_KILL_GRACE))?.is_none() {
                anyhow::bail!("container {name}: did not stop");
            }
        }
        match store.remove(&c) {
            Ok(()) => Ok(()),
            // An --rm container that removed itself meanwhile.
            Err(_) if !c.dir.exists() => Ok(()),
            Err(e) => Err(e.into()),
        }
    }))
}
