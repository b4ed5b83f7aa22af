//! The host's side of the agent protocol, over the VMM's hybrid vsock socket: connect
//! to the Unix socket, send `CONNECT <port>\n`, read `OK <port>\n`, then frames.
//!
//! Everything read here comes from the guest and is untrusted: frames are bounded by
//! [`MAX_AGENT_FRAME`], the handshake line by 64 bytes, and a malformed message ends
//! the session with an error instead of being trusted.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use guest_agent::protocol::{
    read_frame, write_frame, AgentMessage, Attach, CopyOp, FrameError, HostMessage, ProcessSpec, Stream, CONTROL_PORT,
    MAX_AGENT_FRAME, STDIO_PORT, VERSION,
};

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("vsock {path} port {port}: {source}")]
    Connect {
        path: PathBuf,
        port: u32,
        #[source]
        source: io::Error,
    },
    #[error("the guest agent did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the guest agent speaks another protocol: {0}")]
    Version(String),
    #[error("agent connection: {0}")]
    Frame(#[from] FrameError),
    #[error("the agent closed the connection")]
    Closed,
}

/// Opens a stream to `port` in the guest.
pub fn connect(uds: &Path, port: u32) -> Result<UnixStream, AgentError> {
    let err = |source| AgentError::Connect {
        path: uds.to_owned(),
        port,
        source,
    };
    let mut stream = UnixStream::connect(uds).map_err(err)?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).map_err(err)?;
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
    stream.set_read_timeout(None).map_err(err)?;
    Ok(stream)
}

/// One control session with the agent.
pub struct Session {
    stream: UnixStream,
    uds: PathBuf,
}

impl Session {
    /// Connects and exchanges `Hello`; retries until `timeout` while the guest boots
    /// (the VMM refuses connections to ports nobody listens on yet).
    pub fn open(uds: &Path, timeout: Duration, mut alive: impl FnMut() -> bool) -> Result<Session, AgentError> {
        let deadline = Instant::now() + timeout;
        loop {
            match Self::try_open(uds) {
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

    fn try_open(uds: &Path) -> Result<Session, AgentError> {
        let mut stream = connect(uds, CONTROL_PORT)?;
        write_frame(&mut stream, &HostMessage::Hello { version: VERSION })?;
        match read_frame::<AgentMessage>(&mut stream, MAX_AGENT_FRAME)? {
            Some(AgentMessage::Hello { version }) if version == VERSION => Ok(Session {
                stream,
                uds: uds.to_owned(),
            }),
            Some(other) => Err(AgentError::Version(format!("{other:?}").chars().take(200).collect())),
            None => Err(AgentError::Closed),
        }
    }

    pub fn send(&mut self, message: &HostMessage) -> Result<(), AgentError> {
        Ok(write_frame(&mut self.stream, message)?)
    }

    /// The next message; `Closed` when the agent went away.
    pub fn recv(&mut self) -> Result<AgentMessage, AgentError> {
        read_frame(&mut self.stream, MAX_AGENT_FRAME)?.ok_or(AgentError::Closed)
    }

    /// A second handle for sending (signals, resizes) while another thread reads.
    pub fn sender(&self) -> io::Result<UnixStream> {
        self.stream.try_clone()
    }

    /// Gives the agent the container's hostname, extra `/etc/hosts` lines and mounts
    /// (see [`HostMessage::Configure`]); `Ok(Err(reason))` when it refused or a mount
    /// failed.
    pub fn configure(
        &mut self,
        hostname: &str,
        hosts: Vec<guest_agent::protocol::HostEntry>,
        mounts: Vec<guest_agent::mounts::MountArg>,
    ) -> Result<Result<(), AgentMessage>, AgentError> {
        self.send(&HostMessage::Configure {
            hostname: hostname.to_owned(),
            mounts,
            hosts,
        })?;
        match self.recv()? {
            AgentMessage::Configured => Ok(Ok(())),
            other => Ok(Err(other)),
        }
    }

    /// Opens the stdio streams `spec` needs, then starts it; returns the streams
    /// (stdin, stdout, stderr) once the agent reports `Started`.
    pub fn start(&mut self, id: u32, spec: &ProcessSpec) -> Result<Result<Stdio, AgentMessage>, AgentError> {
        let attach = |stream| -> Result<UnixStream, AgentError> {
            let mut s = connect(&self.uds, STDIO_PORT)?;
            write_frame(&mut s, &Attach { id, stream })?;
            Ok(s)
        };
        let stdio = Stdio {
            stdout: attach(Stream::Stdout)?,
            stderr: if spec.tty { None } else { Some(attach(Stream::Stderr)?) },
            stdin: if spec.stdin { Some(attach(Stream::Stdin)?) } else { None },
        };
        self.send(&HostMessage::Start { id, spec: spec.clone() })?;
        match self.recv()? {
            AgentMessage::Started { id: got, .. } if got == id => Ok(Ok(stdio)),
            other => Ok(Err(other)),
        }
    }
}

impl Session {
    /// Starts file operation `id` (see [`CopyOp`]); returns its streams once the agent
    /// accepted it, or the agent's refusal.
    pub fn copy(&mut self, id: u32, op: CopyOp) -> Result<Result<Transfer, AgentMessage>, AgentError> {
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
            AgentMessage::Started { id: got, .. } if got == id => Ok(Ok(transfer)),
            other => Ok(Err(other)),
        }
    }

    /// Waits for the end of file operation `id`: `Ok(Err(message))` when the agent
    /// reports that it failed.
    pub fn finish(&mut self, id: u32) -> Result<Result<(), String>, AgentError> {
        loop {
            match self.recv()? {
                AgentMessage::Exited { id: got, status } if got == id => {
                    return Ok(match status.shell_code() {
                        0 => Ok(()),
                        code => Err(format!("the agent ended the operation with status {code}")),
                    })
                }
                AgentMessage::Error {
                    id: Some(got), message, ..
                } if got == id => return Ok(Err(message)),
                AgentMessage::Error { id: None, message, .. } => return Ok(Err(message)),
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
