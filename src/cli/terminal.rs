//! The user's terminal and signals while a command is attached to a container:
//! raw mode (always restored), window sizes, and signals forwarded to the process.

use std::io::{self, IsTerminal, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::thread;

use hull::container::attach::Frame;

/// Puts stdin's terminal in raw mode until dropped.
pub struct RawMode {
    saved: Option<libc::termios>,
}

impl RawMode {
    /// Raw mode when stdin is a terminal; otherwise does nothing.
    pub fn enter() -> RawMode {
        if !io::stdin().is_terminal() {
            return RawMode { saved: None };
        }
        // SAFETY: termios is plain data; tcgetattr fills it.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: valid fd 0 and pointer.
        if unsafe { libc::tcgetattr(0, &mut saved) } != 0 {
            return RawMode { saved: None };
        }
        let mut raw = saved;
        // SAFETY: cfmakeraw edits the struct in place; tcsetattr reads it.
        unsafe {
            libc::cfmakeraw(&mut raw);
            libc::tcsetattr(0, libc::TCSANOW, &raw);
        }
        RawMode { saved: Some(saved) }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            // SAFETY: restores the attributes read in `enter`.
            unsafe { libc::tcsetattr(0, libc::TCSANOW, saved) };
        }
    }
}

/// The terminal's size (rows, cols), if stdout or stdin is one.
pub fn window_size() -> Option<(u16, u16)> {
    for fd in [1, 0] {
        // SAFETY: winsize is plain data; TIOCGWINSZ writes one.
        let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointer to `ws`.
        if unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0 && ws.ws_row > 0 {
            return Some((ws.ws_row, ws.ws_col));
        }
    }
    None
}

/// Signals an attached command forwards to the container (Docker's sig-proxy),
/// plus SIGWINCH for resizes.
const FORWARDED: [i32; 7] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGWINCH,
];

fn signal_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and edit the set in place.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in FORWARDED {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

/// Blocks the forwarded signals in this thread and every thread started after; call
/// first, before any thread exists.
pub fn block_signals() {
    let set = signal_set();
    // SAFETY: valid set; a null old set is allowed.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
}

/// Where forwarded signals and resizes go.
pub trait SignalSink: Send + 'static {
    fn signal(&self, signal: i32);
    fn resize(&self, rows: u16, cols: u16);
}

/// Waits for the blocked signals and hands them to `sink`.
pub fn forward_signals(sink: impl SignalSink, tty: bool) {
    thread::spawn(move || loop {
        let set = signal_set();
        let mut sig = 0;
        // SAFETY: valid set and out pointer.
        if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
            return;
        }
        if sig == libc::SIGWINCH {
            if let Some((rows, cols)) = window_size().filter(|_| tty) {
                sink.resize(rows, cols);
            }
        } else {
            sink.signal(sig);
        }
    });
}

/// The writing half of an attach connection, shared by the input and signal threads.
#[derive(Clone)]
pub struct AttachWriter(pub Arc<Mutex<UnixStream>>);

impl AttachWriter {
    pub fn send(&self, frame: &Frame) -> io::Result<()> {
        frame.write(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl SignalSink for AttachWriter {
    fn signal(&self, signal: i32) {
        let _ = self.send(&Frame::Signal(signal));
    }
    fn resize(&self, rows: u16, cols: u16) {
        let _ = self.send(&Frame::Resize { rows, cols });
    }
}

/// Copies our stdin to `write` in chunks, then calls `close`.
pub fn forward_stdin(
    mut write: impl FnMut(&[u8]) -> io::Result<()> + Send + 'static,
    close: impl FnOnce() + Send + 'static,
) {
    thread::spawn(move || {
        let mut stdin = io::stdin().lock();
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if write(&buf[..n]).is_err() {
                        return;
                    }
                }
            }
        }
        close();
    });
}

/// Result of an attached session.
pub enum Ended {
    Exit(i32),
    /// The monitor went away without an exit code.
    Lost,
}

/// Attached to a container's monitor: output to our stdout/stderr, our stdin and
/// signals to it, until the exit frame.
pub fn attach(stream: UnixStream, tty: bool, stdin: bool) -> io::Result<Ended> {
    let writer = AttachWriter(Arc::new(Mutex::new(stream.try_clone()?)));
    let _raw = if tty { Some(RawMode::enter()) } else { None };
    if tty {
        if let Some((rows, cols)) = window_size() {
            let _ = writer.send(&Frame::Resize { rows, cols });
        }
    }
    forward_signals(writer.clone(), tty);
    if stdin {
        let (w, c) = (writer.clone(), writer.clone());
        forward_stdin(
            move |data| w.send(&Frame::Stdin(data.to_vec())),
            move || drop(c.send(&Frame::StdinClosed)),
        );
    }
    let mut reader = io::BufReader::with_capacity(64 * 1024, stream);
    let (mut out, mut err) = (io::stdout(), io::stderr());
    loop {
        match Frame::read(&mut reader) {
            Ok(Some(Frame::Stdout(d))) => {
                out.write_all(&d)?;
                out.flush()?;
            }
            Ok(Some(Frame::Stderr(d))) => {
                err.write_all(&d)?;
                err.flush()?;
            }
            Ok(Some(Frame::Error(message))) => {
                drop(_raw);
                eprintln!("hull: {message}");
                return read_exit(&mut reader);
            }
            Ok(Some(Frame::Exit(code))) => return Ok(Ended::Exit(code)),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return Ok(Ended::Lost),
        }
    }
}

fn read_exit(reader: &mut impl Read) -> io::Result<Ended> {
    loop {
        match Frame::read(reader) {
            Ok(Some(Frame::Exit(code))) => return Ok(Ended::Exit(code)),
            Ok(Some(_)) => {}
            _ => return Ok(Ended::Lost),
        }
    }
}
