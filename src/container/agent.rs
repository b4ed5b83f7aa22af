//! The host's side of the agent protocol, over the VMM's hybrid vsock socket: connect
//! to the Unix socket, send `CONNECT <port>\n`, read `OK <port>\n`, then frames.
//!
//! Everything read here comes from the guest and is untrusted: frames are bounded by
//! [`MAX_AGENT_FRAME`], the handshake line by 64 bytes, every read and write has a
//! deadline ([`agent_timeout`]) unless the caller waits for a process on purpose
//! ([`Session::without_deadline`]), error text is made printable ([`printable`]), and
//! a malformed message ends the session with an error instead of being trusted.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use guest_agent::protocol::{
    read_frame, write_frame, AgentMessage, Attach, CopyOp, ErrorKind, FrameError, HostMessage, ProcessSpec, Stream,
    CONTROL_PORT, MAX_AGENT_FRAME, STDIO_PORT, VERSION,
};

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("vsock {path} port {port}")]
    Connect {
        path: PathBuf,
        port: u32,
        #[source]
        source: io::Error,
    },
    #[error("the guest agent did not answer within {} s", .0.as_secs())]
    Timeout(Duration),
    #[error("the guest agent speaks another protocol: {0}")]
    Version(String),
    #[error("agent connection: {0}")]
    Frame(FrameError),
    #[error("the agent closed the connection")]
    Closed,
    /// The agent answered, and said no: it refused the request, or the operation
    /// failed in the guest. `reason` is the agent's own text, made [`printable`].
    #[error("{reason}")]
    Refused { kind: ErrorKind, reason: String },
    /// The agent answered with a message that does not belong here.
    #[error("unexpected agent message {0}")]
    Unexpected(String),
}

impl AgentError {
    /// The exit code Docker gives when a process could not be started for this
    /// reason: 127 not found, 126 not executable, 125 anything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            AgentError::Refused { kind, .. } => exit_code(*kind),
            _ => 125,
        }
    }
}

/// The exit code of a process the agent could not start for `kind`.
pub fn exit_code(kind: ErrorKind) -> i32 {
    match kind {
        ErrorKind::NotFound => 127,
        ErrorKind::NotExecutable => 126,
        ErrorKind::Protocol | ErrorKind::Internal => 125,
    }
}

/// What the agent's answer `message` means when it was not the one asked for.
fn refusal(message: AgentMessage) -> AgentError {
    match message {
        AgentMessage::Error { kind, message, .. } => AgentError::Refused { kind, reason: message },
        // Only `Error` carries text; the other answers quote as a few numbers.
        other => AgentError::Unexpected(format!("{other:?}")),
    }
}

impl From<FrameError> for AgentError {
    /// A read that ran into the socket's deadline is a timeout, not a broken frame.
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::Io(io) if is_timeout(&io) => AgentError::Timeout(agent_timeout()),
            e => AgentError::Frame(e),
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
}

/// How long the host waits for any one read from or write to the guest:
/// `HULL_AGENT_TIMEOUT` seconds, else the boot timeout (`HULL_BOOT_TIMEOUT`, 30 s).
pub fn agent_timeout() -> Duration {
    std::env::var("HULL_AGENT_TIMEOUT")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|s| *s > 0)
        .map(Duration::from_secs)
        .unwrap_or_else(super::monitor::boot_timeout)
}

/// Longest text from the guest that is printed or recorded.
const MAX_GUEST_TEXT: usize = 1000;

/// Guest-sent text made safe for a terminal: control characters (C0, DEL, C1) and
/// bidirectional overrides shown as escapes, at most [`MAX_GUEST_TEXT`] characters.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_GUEST_TEXT));
    for (i, ch) in text.chars().enumerate() {
        if i == MAX_GUEST_TEXT {
            out.push_str("...");
            break;
        }
        match ch {
            c if c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') => {
                out.push_str(&c.escape_unicode().to_string())
            }
            c => out.push(c),
        }
    }
    out
}

/// Opens a stream to `port` in the guest, with [`agent_timeout`] on its reads and
/// writes.
pub fn connect(uds: &Path, port: u32) -> Result<UnixStream, AgentError> {
    connect_within(uds, port, agent_timeout())
}

/// [`connect`] with `deadline` on every read and write instead.
fn connect_within(uds: &Path, port: u32, deadline: Duration) -> Result<UnixStream, AgentError> {
    let err = |source| AgentError::Connect {
        path: uds.to_owned(),
        port,
        source,
    };
    let mut stream = UnixStream::connect(uds).map_err(err)?;
    let deadline = Some(deadline.max(Duration::from_millis(1)));
    stream.set_read_timeout(deadline).map_err(err)?;
    stream.set_write_timeout(deadline).map_err(err)?;
    stream.write_all(format!("CONNECT {port}\n").as_bytes()).map_err(err)?;
    let mut line = Vec::with_capacity(16);
    let mut byte = [0u8; 1];
    while line.len() < 64 {
        match stream.read(&mut byte) {
            Ok(0) => return Err(err(io::ErrorKind::ConnectionRefused.into())),
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) => line.push(byte[0]),
            Err(e) => return Err(err(e)),
        }
    }
    if !line.starts_with(b"OK ") {
        return Err(err(io::Error::new(
            io::ErrorKind::ConnectionRefused,
            format!("vmm answered {:?}", String::from_utf8_lossy(&line)),
        )));
    }
    Ok(stream)
}

/// One control session with the agent.
pub struct Session {
    stream: UnixStream,
    uds: PathBuf,
}

impl Session {
    /// Connects and exchanges `Hello`; retries until `timeout` while the guest boots
    /// (the VMM refuses connections to ports nobody listens on yet). Each attempt's
    /// reads wait at most `timeout` too, so a silent guest holds this up for at most
    /// twice `timeout`. The session's later reads have the [`agent_timeout`] deadline.
    pub fn open(uds: &Path, timeout: Duration, mut alive: impl FnMut() -> bool) -> Result<Session, AgentError> {
        let deadline = Instant::now() + timeout;
        let attempt = timeout.min(agent_timeout());
        loop {
            match Self::try_open(uds, attempt) {
                Ok(s) => return Ok(s),
                Err(e @ AgentError::Version(_)) => return Err(e),
                Err(e) if Instant::now() >= deadline || !alive() => {
                    return Err(match e {
                        AgentError::Connect { .. } if Instant::now() >= deadline => AgentError::Timeout(timeout),
                        e => e,
                    })
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    fn try_open(uds: &Path, deadline: Duration) -> Result<Session, AgentError> {
        let mut stream = connect_within(uds, CONTROL_PORT, deadline)?;
        write_frame(&mut stream, &HostMessage::Hello { version: VERSION })?;
        match read_frame::<AgentMessage>(&mut stream, MAX_AGENT_FRAME)? {
            Some(AgentMessage::Hello { version }) if version == VERSION => {
                let deadline = Some(agent_timeout());
                stream.set_read_timeout(deadline).map_err(FrameError::Io)?;
                stream.set_write_timeout(deadline).map_err(FrameError::Io)?;
                Ok(Session {
                    stream,
                    uds: uds.to_owned(),
                })
            }
            Some(other) => Err(AgentError::Version(format!("{other:?}").chars().take(200).collect())),
            None => Err(AgentError::Closed),
        }
    }

    pub fn send(&mut self, message: &HostMessage) -> Result<(), AgentError> {
        Ok(write_frame(&mut self.stream, message)?)
    }

    /// The next message, within the session's deadline; `Closed` when the agent went
    /// away. Error text in it is made [`printable`].
    pub fn recv(&mut self) -> Result<AgentMessage, AgentError> {
        let message = read_frame(&mut self.stream, MAX_AGENT_FRAME)?.ok_or(AgentError::Closed)?;
        Ok(match message {
            AgentMessage::Error { id, kind, message } => AgentMessage::Error {
                id,
                kind,
                message: printable(&message),
            },
            other => other,
        })
    }

    /// Lets [`recv`](Self::recv) wait without a deadline: for a caller waiting for a
    /// process to end, which may take as long as the process runs. The VM's end
    /// still ends the wait (the VMM closes the connection).
    pub fn without_deadline(&mut self) -> io::Result<()> {
        self.stream.set_read_timeout(None)
    }

    /// A second handle for sending (signals, resizes) while another thread reads.
    pub fn sender(&self) -> io::Result<UnixStream> {
        self.stream.try_clone()
    }

    /// Gives the agent the container's hostname, extra `/etc/hosts` lines, mounts and
    /// limits (see [`HostMessage::Configure`]); [`AgentError::Refused`] when it refused
    /// or a mount failed.
    pub fn configure(
        &mut self,
        hostname: &str,
        hosts: Vec<guest_agent::protocol::HostEntry>,
        mounts: Vec<guest_agent::mounts::MountArg>,
        resources: guest_agent::protocol::Resources,
        read_only: bool,
        sysctls: Vec<(String, String)>,
    ) -> Result<(), AgentError> {
        self.send(&HostMessage::Configure {
            hostname: hostname.to_owned(),
            mounts,
            hosts,
            resources,
            read_only,
            sysctls,
        })?;
        match self.recv()? {
            AgentMessage::Configured => Ok(()),
            other => Err(refusal(other)),
        }
    }

    /// Opens the stdio streams `spec` needs, then starts it; returns the streams
    /// (stdin, stdout, stderr) once the agent reports `Started`, or
    /// [`AgentError::Refused`] with the reason it could not start it.
    /// A process's streams have no deadline: it may be silent, or not read its
    /// input, for as long as it likes.
    pub fn start(&mut self, id: u32, spec: &ProcessSpec) -> Result<Stdio, AgentError> {
        let attach = |stream| -> Result<UnixStream, AgentError> {
            let mut s = connect(&self.uds, STDIO_PORT)?;
            write_frame(&mut s, &Attach { id, stream })?;
            let unbounded = s.set_read_timeout(None).and_then(|()| s.set_write_timeout(None));
            unbounded.map_err(|source| AgentError::Connect {
                path: self.uds.clone(),
                port: STDIO_PORT,
                source,
            })?;
            Ok(s)
        };
        let stdio = Stdio {
            stdout: attach(Stream::Stdout)?,
            stderr: if spec.tty { None } else { Some(attach(Stream::Stderr)?) },
            stdin: if spec.stdin { Some(attach(Stream::Stdin)?) } else { None },
        };
        self.send(&HostMessage::Start { id, spec: spec.clone() })?;
        match self.recv()? {
            AgentMessage::Started { id: got, .. } if got == id => Ok(stdio),
            other => Err(refusal(other)),
        }
    }
}

impl Session {
    /// Starts `spec` (which must be `detached`) with no stdio of the host's; returns
    /// once the agent reports `Started`, or its refusal.
    pub fn start_detached(&mut self, id: u32, spec: &ProcessSpec) -> Result<(), AgentError> {
        self.send(&HostMessage::Start { id, spec: spec.clone() })?;
        match self.recv()? {
            AgentMessage::Started { id: got, .. } if got == id => Ok(()),
            other => Err(refusal(other)),
        }
    }

    /// Starts file operation `id` (see [`CopyOp`]); returns its streams once the agent
    /// accepted it, or its refusal ([`AgentError::Refused`]). Every read and write on
    /// them has the
    /// [`agent_timeout`] deadline.
    pub fn copy(&mut self, id: u32, op: CopyOp) -> Result<Transfer, AgentError> {
        let attach = |stream| -> Result<UnixStream, AgentError> {
            let mut s = connect(&self.uds, STDIO_PORT)?;
            write_frame(&mut s, &Attach { id, stream })?;
            Ok(s)
        };
        let transfer = Transfer {
            output: attach(Stream::Stdout)?,
            input: match op {
                CopyOp::Write { .. } => Some(attach(Stream::Stdin)?),
                _ => None,
            },
        };
        self.send(&HostMessage::Copy { id, op })?;
        match self.recv()? {
            AgentMessage::Started { id: got, .. } if got == id => Ok(transfer),
            other => Err(refusal(other)),
        }
    }

    /// Waits for the end of file operation `id`: [`AgentError::Refused`] when the
    /// agent reports that it failed.
    pub fn finish(&mut self, id: u32) -> Result<(), AgentError> {
        loop {
            match self.recv()? {
                AgentMessage::Exited { id: got, status, .. } if got == id => {
                    return match status.shell_code() {
                        0 => Ok(()),
                        code => Err(AgentError::Refused {
                            kind: ErrorKind::Internal,
                            reason: format!("the agent ended the operation with status {code}"),
                        }),
                    }
                }
                AgentMessage::Error { id: got, kind, message } if got.is_none_or(|got| got == id) => {
                    return Err(AgentError::Refused { kind, reason: message })
                }
                _ => {}
            }
        }
    }
}

/// Host ends of a file operation's streams.
pub struct Transfer {
    /// Where the tar stream to unpack goes (for [`CopyOp::Write`]).
    pub input: Option<UnixStream>,
    /// The operation's output.
    pub output: UnixStream,
}

/// Host ends of a process's streams.
pub struct Stdio {
    pub stdin: Option<UnixStream>,
    pub stdout: UnixStream,
    pub stderr: Option<UnixStream>,
}

/// Sends one message on a cloned session handle.
pub fn send_on(stream: &mut UnixStream, message: &HostMessage) -> Result<(), AgentError> {
    Ok(write_frame(stream, message)?)
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader};
    use std::os::unix::net::UnixListener;
    use std::thread;

    use super::*;

    /// A hybrid-vsock socket whose guest side accepts, then runs `guest` on the
    /// connection (after the `OK` line).
    fn fake_vmm(dir: &Path, guest: impl Fn(UnixStream) + Clone + Send + 'static) -> PathBuf {
        let uds = dir.join("vsock");
        let listener = UnixListener::bind(&uds).unwrap();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut line = String::new();
                BufReader::new(&stream).read_line(&mut line).unwrap();
                stream.write_all(b"OK 1024\n").unwrap();
                let guest = guest.clone();
                thread::spawn(move || guest(stream));
            }
        });
        uds
    }

    fn with_agent_timeout_of_one_second() {
        // SAFETY: each test runs in its own process (nextest), before any thread
        // that reads the environment starts.
        unsafe { std::env::set_var("HULL_AGENT_TIMEOUT", "1") };
    }

    #[test]
    fn a_silent_agent_after_the_handshake_times_out() {
        with_agent_timeout_of_one_second();
        let dir = tempfile::tempdir().unwrap();
        let uds = fake_vmm(dir.path(), |s| {
            thread::sleep(Duration::from_secs(30));
            drop(s)
        });
        let started = Instant::now();
        let err = Session::open(&uds, Duration::from_secs(2), || true)
            .err()
            .expect("no session");
        assert!(matches!(err, AgentError::Timeout(_)), "{err}");
        assert!(started.elapsed() < Duration::from_secs(6), "{:?}", started.elapsed());
    }

    #[test]
    fn a_reply_that_never_ends_times_out() {
        with_agent_timeout_of_one_second();
        let dir = tempfile::tempdir().unwrap();
        let uds = fake_vmm(dir.path(), |mut s| {
            write_frame(&mut s, &AgentMessage::Hello { version: VERSION }).unwrap();
            // Half a frame, then nothing.
            s.write_all(&100u32.to_le_bytes()).unwrap();
            s.write_all(b"{\"type\":").unwrap();
            thread::sleep(Duration::from_secs(30));
        });
        let mut session = Session::open(&uds, Duration::from_secs(5), || true).unwrap();
        let started = Instant::now();
        let err = session.recv().unwrap_err();
        assert!(matches!(err, AgentError::Timeout(_)), "{err}");
        assert!(started.elapsed() < Duration::from_secs(4));
    }

    #[test]
    fn error_text_from_the_guest_is_printable() {
        with_agent_timeout_of_one_second();
        let dir = tempfile::tempdir().unwrap();
        let uds = fake_vmm(dir.path(), |mut s| {
            write_frame(&mut s, &AgentMessage::Hello { version: VERSION }).unwrap();
            let message = format!("no such file\x1b[2J\x1b]0;pwned\x07\r{}", "x".repeat(5000));
            let error = AgentMessage::Error {
                id: Some(1),
                kind: guest_agent::protocol::ErrorKind::Internal,
                message,
            };
            write_frame(&mut s, &error).unwrap();
            thread::sleep(Duration::from_secs(5));
        });
        let mut session = Session::open(&uds, Duration::from_secs(5), || true).unwrap();
        let AgentMessage::Error { message, .. } = session.recv().unwrap() else {
            panic!("not an error")
        };
        assert!(!message.chars().any(char::is_control), "{message:?}");
        assert!(message.starts_with("no such file\\u{1b}[2J"), "{message}");
        assert!(message.chars().count() < 1100);
    }

    #[test]
    fn printable_escapes_controls_and_bidi_overrides_only() {
        assert_eq!(printable("plain text: ok é"), "plain text: ok é");
        assert_eq!(printable("a\tb\nc"), "a\\u{9}b\\u{a}c");
        assert_eq!(printable("\u{9b}31m"), "\\u{9b}31m");
        assert_eq!(printable("\u{202e}gpj.exe"), "\\u{202e}gpj.exe");
    }

    #[test]
    fn a_refusal_carries_the_agents_reason_and_exit_code_and_other_answers_are_quoted_short() {
        let refused = refusal(AgentMessage::Error {
            id: Some(3),
            kind: ErrorKind::NotFound,
            message: "exec: nosuch: not found".into(),
        });
        assert_eq!(refused.to_string(), "exec: nosuch: not found");
        assert_eq!(refused.exit_code(), 127);
        let unexpected = refusal(AgentMessage::Error {
            id: Some(3),
            kind: ErrorKind::Internal,
            message: String::new(),
        });
        assert!(matches!(unexpected, AgentError::Refused { .. }));
        let unexpected = refusal(AgentMessage::Hello { version: 7 });
        assert_eq!(unexpected.to_string(), "unexpected agent message Hello { version: 7 }");
        assert_eq!(unexpected.exit_code(), 125);
        assert_eq!(AgentError::Closed.exit_code(), 125);
    }
}
