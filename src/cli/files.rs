//! What `cp`, `diff`, `export` and `commit` share: running one file operation in a
//! container's agent (the running VM's, or a helper VM's for a stopped container)
//! and moving its streams.

use std::io;
use std::os::unix::net::UnixStream;

use anyhow::{anyhow, bail};
use guest_agent::protocol::{AgentMessage, CopyOp};
use hull::container::helper::AgentAccess;
use hull::container::Container;

use super::exec::random_id;

/// Runs `op` in `c` and hands its output to `consume`. The agent's own error, when
/// it reports one, wins over the consumer's (a broken stream is only its symptom).
pub fn read_from<T>(
    c: &Container,
    op: CopyOp,
    consume: impl FnOnce(&mut UnixStream) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let store = super::open_store()?;
    let mut access = AgentAccess::open(store.root(), c)?;
    let id = random_id();
    let mut transfer = started(c, access.session.copy(id, op)?)?;
    let consumed = consume(&mut transfer.output);
    if consumed.is_err() {
        // Let the agent finish, so its own failure (the cause of a cut stream) can
        // be told apart from ours.
        let _ = io::copy(&mut transfer.output, &mut io::sink());
    }
    match access.session.finish(id)? {
        Ok(()) => consumed,
        Err(message) => Err(anyhow!("container {}: {message}", c.config.name)),
    }
}

/// Whether `e` is only the symptom of the other side closing the stream.
fn is_cut_stream(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause.downcast_ref::<io::Error>().is_some_and(|io| {
            matches!(
                io.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset | io::ErrorKind::UnexpectedEof
            )
        })
    })
}

/// Runs `op` in `c`, `produce` writing the tar stream it unpacks.
pub fn write_to(
    c: &Container,
    op: CopyOp,
    produce: impl FnOnce(&mut UnixStream) -> anyhow::Result<()> + Send + 'static,
) -> anyhow::Result<()> {
    let store = super::open_store()?;
    let mut access = AgentAccess::open(store.root(), c)?;
    let id = random_id();
    let transfer = started(c, access.session.copy(id, op)?)?;
    let mut input = transfer.input.ok_or_else(|| anyhow!("no input stream"))?;
    let producer = std::thread::spawn(move || {
        let result = produce(&mut input);
        let _ = input.shutdown(std::net::Shutdown::Write);
        result
    });
    // The agent writes nothing; its output ends when the operation does.
    let mut output = transfer.output;
    let _ = io::copy(&mut output, &mut io::sink());
    let finished = access.session.finish(id)?;
    let produced = producer.join().map_err(|_| anyhow!("the tar stream writer panicked"))?;
    // The agent's error explains a stream it cut; otherwise ours is the cause.
    match (finished, produced) {
        (Err(message), Err(e)) if is_cut_stream(&e) => Err(anyhow!("container {}: {message}", c.config.name)),
        (_, Err(e)) => Err(e),
        (Err(message), Ok(())) => Err(anyhow!("container {}: {message}", c.config.name)),
        (Ok(()), Ok(())) => Ok(()),
    }
}

fn started(
    c: &Container,
    reply: Result<hull::container::agent::Transfer, AgentMessage>,
) -> anyhow::Result<hull::container::agent::Transfer> {
    match reply {
        Ok(t) => Ok(t),
        Err(AgentMessage::Error { message, .. }) => bail!("container {}: {message}", c.config.name),
        Err(other) => bail!("container {}: unexpected agent message {other:?}", c.config.name),
    }
}
