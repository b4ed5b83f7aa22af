//! What `cp`, `diff`, `export` and `commit` share: running one file operation in a
//! container's agent (the running VM's, or a helper VM's for a stopped container)
//! and moving its streams.

use std::io::{self, Read};
use std::os::unix::net::UnixStream;

use anyhow::{anyhow, bail};
use guest_agent::protocol::CopyOp;
use hull::container::agent::{agent_timeout, AgentError};
use hull::container::helper::AgentAccess;
use hull::container::{vm, Container};

use super::exec::random_id;

/// Room for tar headers and padding beyond the container's disks.
const STREAM_SLACK: u64 = 1 << 30;
/// Most bytes accepted from the agent on a write operation (it sends none).
const MAX_WRITE_OUTPUT: u64 = 64 * 1024;

/// The most bytes hull reads from one file operation of `c`: what the container's
/// disks can hold (its root disk, its writable disk or, for `--rm`, its memory) plus
/// [`STREAM_SLACK`]; `HULL_STREAM_LIMIT` (bytes, or a size such as `4g`) overrides it.
pub fn stream_limit(c: &Container) -> u64 {
    if let Some(limit) = std::env::var("HULL_STREAM_LIMIT")
        .ok()
        .and_then(|v| hull::container::spec::parse_size(&v))
    {
        return limit;
    }
    let base = std::fs::metadata(&c.config.rootfs).map_or(0, |m| m.len());
    let writable = match c.config.tmpfs_upper {
        true => u64::from(c.config.memory_mib) << 20,
        false => vm::UPPER_DISK_BYTES,
    };
    base.saturating_add(writable).saturating_add(STREAM_SLACK)
}

/// A file operation's output as it comes from the guest: at most `left` bytes more,
/// each read within the agent deadline (set on the socket by the session).
pub struct GuestStream<'a> {
    inner: &'a mut UnixStream,
    left: u64,
    limit: u64,
    container: &'a str,
}

impl Read for GuestStream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            // One byte more tells a stream that ends exactly at the limit apart.
            return match self.inner.read(&mut [0u8; 1])? {
                0 => Ok(0),
                _ => Err(io::Error::other(format!(
                    "container {}: the stream from the guest exceeds its limit of {} bytes (HULL_STREAM_LIMIT)",
                    self.container, self.limit
                ))),
            };
        }
        let want = buf.len().min(usize::try_from(self.left).unwrap_or(usize::MAX));
        match self.inner.read(&mut buf[..want]) {
            Ok(n) => {
                self.left -= n as u64;
                Ok(n)
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "container {}: the guest sent nothing for {} s (HULL_AGENT_TIMEOUT)",
                    self.container,
                    agent_timeout().as_secs()
                ),
            )),
            Err(e) => Err(e),
        }
    }
}

/// Runs `op` in `c` and hands its output, bounded by [`stream_limit`], to `consume`.
/// The agent's own error, when it reports one, wins over a consumer's cut stream
/// (only its symptom), not over the consumer's own failure.
pub fn read_from<T>(
    c: &Container,
    op: CopyOp,
    consume: impl FnOnce(&mut GuestStream) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let store = super::open_store()?;
    let mut access = AgentAccess::open(store.root(), c)?;
    let id = random_id();
    let mut transfer = started(c, access.session.copy(id, op))?;
    let limit = stream_limit(c);
    let mut output = GuestStream {
        inner: &mut transfer.output,
        left: limit,
        limit,
        container: &c.config.name,
    };
    let consumed = consume(&mut output);
    if consumed.is_err() {
        // Let the agent finish, so its own failure (the cause of a cut stream) can
        // be told apart from ours: briefly, and only so much.
        let _ = transfer
            .output
            .set_read_timeout(Some(std::time::Duration::from_secs(2)));
        let _ = io::copy(&mut (&mut transfer.output).take(MAX_WRITE_OUTPUT), &mut io::sink());
        let _ = transfer.output.shutdown(std::net::Shutdown::Both);
    }
    match access.session.finish(id) {
        Ok(()) => consumed,
        // Our own failure (a limit, a full disk) is the cause; a cut stream is only
        // the symptom of the agent's.
        Err(AgentError::Refused { .. }) if consumed.as_ref().is_err_and(|e| !is_cut_stream(e)) => consumed,
        Err(AgentError::Refused { reason, .. }) => Err(anyhow!("container {}: {reason}", c.config.name)),
        // The consumer's failure (a limit, a full disk) explains why the agent's
        // report did not come.
        Err(_) if consumed.is_err() => consumed,
        Err(e) => Err(e.into()),
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
    let transfer = started(c, access.session.copy(id, op))?;
    let mut input = transfer.input.ok_or_else(|| anyhow!("no input stream"))?;
    let producer = std::thread::spawn(move || {
        let result = produce(&mut input);
        let _ = input.shutdown(std::net::Shutdown::Write);
        result
    });
    // The producer's writes have the agent deadline; once it is done the agent
    // writes nothing, and its output ends when the operation does.
    let produced = producer.join().map_err(|_| anyhow!("the tar stream writer panicked"))?;
    let mut output = transfer.output;
    let _ = io::copy(&mut (&mut output).take(MAX_WRITE_OUTPUT), &mut io::sink());
    let finished = match access.session.finish(id) {
        Ok(()) => Ok(()),
        Err(AgentError::Refused { reason, .. }) => Err(reason),
        Err(_) if produced.is_err() => return produced,
        Err(e) => return Err(e.into()),
    };
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
    reply: Result<hull::container::agent::Transfer, AgentError>,
) -> anyhow::Result<hull::container::agent::Transfer> {
    match reply {
        Ok(t) => Ok(t),
        Err(e @ (AgentError::Refused { .. } | AgentError::Unexpected(_))) => bail!("container {}: {e}", c.config.name),
        Err(e) => Err(e.into()),
    }
}
