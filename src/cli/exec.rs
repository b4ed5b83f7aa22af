//! `hull exec`: run a command in a running container, through its agent (never on
//! the host).

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use guest_agent::protocol::{AgentMessage, HostMessage, ProcessSpec};
use hull::container::agent::{self, AgentError, Session};
use hull::container::monitor::MAIN_PROCESS;
use hull::container::spec;

use super::lifecycle;
use super::run::exit_byte;
use super::terminal::{self, RawMode, SignalSink};

#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// Keep STDIN open even if not attached
    #[arg(short, long)]
    interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    tty: bool,
    /// Detached mode: run command in the background (its output is discarded)
    #[arg(short, long)]
    detach: bool,
    /// Set environment variables
    #[arg(short, long = "env")]
    env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long)]
    env_file: Vec<std::path::PathBuf>,
    /// Working directory inside the container
    #[arg(short, long)]
    workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short, long)]
    user: Option<String>,
    container: String,
    /// Command and arguments
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

struct ExecControl {
    stream: Mutex<UnixStream>,
    id: u32,
}

impl SignalSink for Arc<ExecControl> {
    fn signal(&self, signal: i32) {
        let m = HostMessage::Signal { id: self.id, signal };
        let _ = agent::send_on(&mut self.stream.lock().unwrap_or_else(|e| e.into_inner()), &m);
    }
    fn resize(&self, rows: u16, cols: u16) {
        let m = HostMessage::Resize {
            id: self.id,
            rows,
            cols,
        };
        let _ = agent::send_on(&mut self.stream.lock().unwrap_or_else(|e| e.into_inner()), &m);
    }
}

pub(crate) fn random_id() -> u32 {
    let mut b = [0u8; 4];
    let _ = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b));
    u32::from_le_bytes(b).max(MAIN_PROCESS + 1)
}

pub fn run(args: ExecArgs) -> anyhow::Result<u8> {
    terminal::block_signals();
    let store = lifecycle::containers()?;
    let c = store.find(&args.container)?;
    if c.state.status != hull::container::Status::Running {
        bail!("container {} is not running", c.id());
    }
    if let Some(w) = &args.workdir {
        if !w.starts_with('/') {
            bail!("the working directory '{w}' is invalid, it needs to be an absolute path");
        }
    }
    let mut env = c.config.process.env.clone();
    for e in spec::expand_host_env(&env_entries(&args)?) {
        let key = e.split_once('=').map_or(e.as_str(), |(k, _)| k).to_owned();
        env.retain(|x| !x.starts_with(&format!("{key}=")));
        env.push(e);
    }
    let spec = ProcessSpec {
        args: args.command.clone(),
        env,
        cwd: args.workdir.clone().unwrap_or_else(|| c.config.process.cwd.clone()),
        user: args.user.clone().unwrap_or_else(|| c.config.process.user.clone()),
        tty: args.tty && !args.detach,
        stdin: args.interactive && !args.detach,
        detached: args.detach,
        group_add: c.config.process.group_add.clone(),
        ulimits: c.config.process.ulimits.clone(),
    };
    let mut session = Session::open(&c.vsock_path(), Duration::from_secs(10), || true)
        .with_context(|| format!("container {}", c.config.name))?;
    let id = random_id();
    if args.detach {
        return match session.start_detached(id, &spec) {
            Ok(()) => Ok(0),
            Err(e) => refused(e),
        };
    }
    let stdio = match session.start(id, &spec) {
        Ok(stdio) => stdio,
        Err(e) => return refused(e),
    };
    let _raw = args.tty.then(RawMode::enter);
    let control = Arc::new(ExecControl {
        stream: Mutex::new(session.sender()?),
        id,
    });
    if args.tty {
        if let Some((rows, cols)) = terminal::window_size() {
            control.resize(rows, cols);
        }
    }
    terminal::forward_signals(control, args.tty);
    if let Some(stdin) = stdio.stdin {
        let (mut w, c) = (stdin.try_clone()?, stdin);
        terminal::forward_stdin(
            move |data| w.write_all(data),
            move || drop(c.shutdown(std::net::Shutdown::Write)),
        );
    }
    // The process runs as long as it likes; the VM's end closes the connection.
    session.without_deadline()?;
    let mut drained = vec![copy_out(stdio.stdout, false)];
    if let Some(err) = stdio.stderr {
        drained.push(copy_out(err, true));
    }
    loop {
        match session.recv()? {
            AgentMessage::Exited { id: got, status, .. } if got == id => {
                for d in drained {
                    let _ = d.recv_timeout(Duration::from_secs(2));
                }
                return Ok(exit_byte(status.shell_code()));
            }
            _ => {}
        }
    }
}

/// Prints the agent's refusal to start the process; its exit code (126, 127, 125).
/// The agent's refusal to start the process, as `exec`'s exit code; other failures
/// are errors.
fn refused(e: AgentError) -> anyhow::Result<u8> {
    match e {
        AgentError::Refused { .. } | AgentError::Unexpected(_) => {
            eprintln!("hull: {e}");
            Ok(exit_byte(e.exit_code()))
        }
        e => Err(e.into()),
    }
}

/// `--env-file` entries (in order), then `-e`, as `run` reads them.
fn env_entries(args: &ExecArgs) -> anyhow::Result<Vec<String>> {
    let mut entries = Vec::new();
    for file in &args.env_file {
        let text = std::fs::read_to_string(file).with_context(|| format!("open {}", file.display()))?;
        entries.extend(spec::parse_env_file(&text));
    }
    entries.extend(args.env.iter().cloned());
    Ok(entries)
}

fn copy_out(mut from: UnixStream, to_stderr: bool) -> mpsc::Receiver<()> {
    let (done, drained) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 32 * 1024];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            let written = if to_stderr {
                let mut e = io::stderr().lock();
                e.write_all(&buf[..n]).and_then(|()| e.flush())
            } else {
                let mut o = io::stdout().lock();
                o.write_all(&buf[..n]).and_then(|()| o.flush())
            };
            if written.is_err() {
                break;
            }
        }
        let _ = done.send(());
    });
    drained
}
