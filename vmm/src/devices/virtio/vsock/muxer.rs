//! The host side of vsock: connections between guest ports and host Unix sockets.
//!
//! The muxer knows nothing about virtqueues: it takes guest packets
//! ([`Muxer::on_guest_packet`]) and produces packets for the guest
//! ([`Muxer::produce`]), and registers its sockets through a [`Registry`].

use std::collections::{HashMap, VecDeque};
use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use vmm_sys_util::epoll::EventSet;

use super::packet::{op, Header, SHUTDOWN_RCV, SHUTDOWN_SEND, TYPE_STREAM};
use super::{BUF_ALLOC, HOST_CID, MAX_CONNECTIONS, MAX_PKT_PAYLOAD};
use crate::event_loop::EventOps;

/// Token of the host listener.
pub const LISTENER_TOKEN: u32 = 3;
/// First token used for connections.
pub const FIRST_CONN_TOKEN: u32 = 16;
/// Host-initiated connections get local ports from here up.
pub const LOCAL_PORT_BASE: u32 = 1 << 30;
const HANDSHAKE_MAX: usize = 32;
/// Most control packets (responses, resets, credit updates) queued for the guest.
pub const CONTROL_QUEUE_MAX: usize = MAX_CONNECTIONS * 2 + 64;
const CREDIT_UPDATE_THRESHOLD: u32 = BUF_ALLOC / 4;
const ACCEPTS_PER_EVENT: usize = 32;
/// How long a connection whose host side is gone waits for the guest to close its
/// side before it is reset and its descriptor freed.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Where the muxer registers its file descriptors (the event loop, or a test fake).
pub trait Registry {
    /// Watches `fd`.
    fn add(&mut self, fd: RawFd, token: u32, events: EventSet) -> io::Result<()>;
    /// Changes what `fd` is watched for.
    fn modify(&mut self, fd: RawFd, token: u32, events: EventSet) -> io::Result<()>;
    /// Stops watching `fd`.
    fn remove(&mut self, fd: RawFd);
}

impl Registry for EventOps<'_> {
    fn add(&mut self, fd: RawFd, token: u32, events: EventSet) -> io::Result<()> {
        EventOps::add(self, fd, token, events)
    }
    fn modify(&mut self, fd: RawFd, token: u32, events: EventSet) -> io::Result<()> {
        EventOps::modify(self, fd, token, events)
    }
    fn remove(&mut self, fd: RawFd) {
        EventOps::remove(self, fd)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Host connected; reading its `CONNECT <port>\n`.
    Handshake,
    /// REQUEST sent to the guest; waiting for RESPONSE.
    Connecting,
    /// Data flows.
    Established,
}

struct Connection {
    stream: UnixStream,
    state: State,
    local_port: u32,
    peer_port: u32,
    handshake: Vec<u8>,
    pending: VecDeque<u8>,
    fwd_cnt: u32,
    last_fwd_sent: u32,
    rx_cnt: u32,
    peer_buf_alloc: u32,
    peer_fwd_cnt: u32,
    readable: bool,
    hup: bool,
    host_eof: bool,
    write_shut: bool,
    peer_shutdown: u32,
    events: EventSet,
    /// When the host side was found gone (hung up, everything read), if it is.
    host_gone_since: Option<Instant>,
}

impl Connection {
    fn new(stream: UnixStream, state: State, local_port: u32, peer_port: u32) -> Self {
        Connection {
            stream,
            state,
            local_port,
            peer_port,
            handshake: Vec::new(),
            pending: VecDeque::new(),
            fwd_cnt: 0,
            last_fwd_sent: 0,
            rx_cnt: 0,
            peer_buf_alloc: 0,
            peer_fwd_cnt: 0,
            readable: false,
            hup: false,
            host_eof: false,
            write_shut: false,
            peer_shutdown: 0,
            events: EventSet::IN,
            host_gone_since: None,
        }
    }

    /// Notes the host side gone once it hung up and its last bytes were read.
    fn note_host_gone(&mut self) {
        if self.hup && self.host_eof && self.host_gone_since.is_none() {
            self.host_gone_since = Some(Instant::now());
        }
    }

    /// Bytes the guest can still take.
    fn peer_credit(&self) -> u32 {
        self.peer_buf_alloc
            .saturating_sub(self.rx_cnt.wrapping_sub(self.peer_fwd_cnt))
    }

    fn wants_rx(&self) -> bool {
        self.state == State::Established
            && self.readable
            && !self.host_eof
            && self.peer_shutdown & SHUTDOWN_RCV == 0
            && self.peer_credit() > 0
    }

    fn desired_events(&self) -> EventSet {
        let mut events = EventSet::empty();
        let reading = match self.state {
            State::Handshake => true,
            State::Connecting => false,
            State::Established => !self.readable && !self.host_eof,
        };
        if reading {
            events |= EventSet::IN;
        }
        if !self.pending.is_empty() {
            events |= EventSet::OUT;
        }
        events
    }
}

/// All vsock connections of one device.
pub struct Muxer {
    guest_cid: u64,
    uds: PathBuf,
    listener: UnixListener,
    conns: HashMap<u32, Connection>,
    ports: HashMap<(u32, u32), u32>,
    control: VecDeque<Header>,
    next_token: u32,
    next_local_port: u32,
    /// [`CLOSE_GRACE`], shorter in tests.
    close_grace: Duration,
}

/// `<uds>_<port>`: where guest connections to host port `port` go.
pub fn port_path(uds: &Path, port: u32) -> PathBuf {
    let mut name = OsString::from(uds.as_os_str());
    name.push(format!("_{port}"));
    PathBuf::from(name)
}

/// Connects to a Unix socket without blocking: a full backlog is a refusal, so a
/// listener that never accepts cannot stall the device thread.
pub fn connect_nonblocking(path: &Path) -> io::Result<UnixStream> {
    let bytes = path.as_os_str().as_bytes();
    // SAFETY: sockaddr_un is plain old data; all-zero is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if bytes.len() >= addr.sun_path.len() || bytes.contains(&0) {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    // SAFETY: plain socket(2) call; the result is checked.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new socket owned by nothing else; UnixStream takes ownership.
    let stream = unsafe { UnixStream::from_raw_fd(fd) };
    let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    // SAFETY: `addr` is a valid sockaddr_un of `len` bytes, alive for the call.
    let rc = unsafe { libc::connect(fd, (&addr as *const libc::sockaddr_un).cast(), len) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(stream)
}

fn parse_connect(line: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(line).ok()?;
    let port = text.strip_prefix("CONNECT ")?.strip_suffix('\n')?;
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    port.parse().ok()
}

impl Muxer {
    /// Binds the host listener at `uds` (a stale socket there is replaced).
    pub fn new(guest_cid: u64, uds: &Path) -> io::Result<Muxer> {
        if std::fs::symlink_metadata(uds)
            .map(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
            .unwrap_or(false)
        {
            std::fs::remove_file(uds)?;
        }
        let listener = UnixListener::bind(uds)?;
        listener.set_nonblocking(true)?;
        Ok(Muxer {
            guest_cid,
            uds: uds.to_path_buf(),
            listener,
            conns: HashMap::new(),
            ports: HashMap::new(),
            control: VecDeque::new(),
            next_token: FIRST_CONN_TOKEN,
            next_local_port: LOCAL_PORT_BASE,
            close_grace: CLOSE_GRACE,
        })
    }

    /// Registers the listener.
    pub fn init(&mut self, reg: &mut dyn Registry) {
        if let Err(e) = reg.add(self.listener.as_raw_fd(), LISTENER_TOKEN, EventSet::IN) {
            crate::warn_limited!("vsock: cannot watch the listener: {e}");
        }
    }

    /// Number of live connections.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Whether another guest packet may be taken (its reply is sure to fit).
    pub fn control_room(&self) -> bool {
        self.control.len() < CONTROL_QUEUE_MAX
    }

    /// Whether there is something to send to the guest.
    pub fn has_rx(&self) -> bool {
        !self.control.is_empty() || self.conns.values().any(Connection::wants_rx)
    }

    /// Handles readiness of the listener or a connection.
    pub fn handle_event(&mut self, token: u32, events: EventSet, reg: &mut dyn Registry) {
        if token == LISTENER_TOKEN {
            self.accept(reg);
        } else {
            self.stream_event(token, events, reg);
        }
    }

    fn accept(&mut self, reg: &mut dyn Registry) {
        for _ in 0..ACCEPTS_PER_EVENT {
            match self.listener.accept() {
                Ok((stream, _)) => self.add_host_connection(stream, reg),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    crate::warn_limited!("vsock: accept failed: {e}");
                    return;
                }
            }
        }
    }

    fn alloc_token(&mut self) -> u32 {
        loop {
            let token = self.next_token;
            self.next_token = self.next_token.checked_add(1).unwrap_or(FIRST_CONN_TOKEN);
            if !self.conns.contains_key(&token) {
                return token;
            }
        }
    }

    /// Resets the connections whose host side is gone and whose guest did not close
    /// within the grace (every one of them with `all`): a guest that never answers a
    /// shutdown cannot keep their descriptors.
    fn reap_host_gone(&mut self, all: bool, reg: &mut dyn Registry) {
        let grace = self.close_grace;
        let gone: Vec<u32> = self
            .conns
            .iter()
            .filter(|(_, c)| c.host_gone_since.is_some_and(|t| all || t.elapsed() >= grace))
            .map(|(t, _)| *t)
            .collect();
        for token in gone {
            self.reset(token, reg);
        }
    }

    /// Room for one more connection, made by reaping where needed.
    fn has_room(&mut self, reg: &mut dyn Registry) -> bool {
        self.reap_host_gone(false, reg);
        if self.conns.len() >= MAX_CONNECTIONS {
            self.reap_host_gone(true, reg);
        }
        self.conns.len() < MAX_CONNECTIONS
    }

    fn add_host_connection(&mut self, stream: UnixStream, reg: &mut dyn Registry) {
        if !self.has_room(reg) {
            crate::warn_limited!("vsock: connection limit {MAX_CONNECTIONS} reached; host connection closed");
            return;
        }
        if stream.set_nonblocking(true).is_err() {
            return;
        }
        let token = self.alloc_token();
        if reg.add(stream.as_raw_fd(), token, EventSet::IN).is_ok() {
            self.conns
                .insert(token, Connection::new(stream, State::Handshake, 0, 0));
        }
    }

    fn stream_event(&mut self, token: u32, events: EventSet, reg: &mut dyn Registry) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        if events.intersects(EventSet::HANG_UP | EventSet::ERROR) && !conn.hup {
            conn.hup = true;
            conn.note_host_gone();
            reg.remove(conn.stream.as_raw_fd());
        }
        match conn.state {
            State::Handshake => self.read_handshake(token, reg),
            State::Connecting => {}
            State::Established => {
                if events.contains(EventSet::IN) || conn.hup {
                    conn.readable = true;
                }
                if events.contains(EventSet::OUT) || conn.hup {
                    self.flush(token, reg);
                }
            }
        }
        self.update_interest(token, reg);
    }

    fn read_handshake(&mut self, token: u32, reg: &mut dyn Registry) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        let mut byte = [0u8; 1];
        while conn.handshake.len() < HANDSHAKE_MAX {
            match conn.stream.read(&mut byte) {
                Ok(1) => {
                    conn.handshake.push(byte[0]);
                    if byte[0] == b'\n' {
                        return self.start_host_connection(token, reg);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                _ => break,
            }
        }
        crate::warn_limited!("vsock: bad or closed host handshake; connection closed");
        self.remove(token, reg);
    }

    fn start_host_connection(&mut self, token: u32, reg: &mut dyn Registry) {
        let port = self.conns.get(&token).and_then(|c| parse_connect(&c.handshake));
        let (Some(port), true) = (port, self.control_room()) else {
            crate::warn_limited!("vsock: invalid CONNECT line or control queue full; connection closed");
            return self.remove(token, reg);
        };
        let local_port = self.alloc_local_port();
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        (conn.state, conn.local_port, conn.peer_port) = (State::Connecting, local_port, port);
        self.ports.insert((local_port, port), token);
        let request = self.header(token, op::REQUEST, 0, 0);
        self.push_control(request);
    }

    fn alloc_local_port(&mut self) -> u32 {
        loop {
            let port = self.next_local_port;
            self.next_local_port = port.checked_add(1).unwrap_or(LOCAL_PORT_BASE);
            if !self.ports.keys().any(|(local, _)| *local == port) {
                return port;
            }
        }
    }

    fn header(&mut self, token: u32, op: u16, len: u32, flags: u32) -> Header {
        let guest_cid = self.guest_cid;
        let Some(conn) = self.conns.get_mut(&token) else {
            return Header::default();
        };
        conn.last_fwd_sent = conn.fwd_cnt;
        Header {
            src_cid: HOST_CID,
            dst_cid: guest_cid,
            src_port: conn.local_port,
            dst_port: conn.peer_port,
            len,
            kind: TYPE_STREAM,
            op,
            flags,
            buf_alloc: BUF_ALLOC,
            fwd_cnt: conn.fwd_cnt,
        }
    }

    fn push_control(&mut self, header: Header) {
        if self.control.len() >= CONTROL_QUEUE_MAX {
            crate::warn_limited!("vsock: control queue full; packet op {} dropped", header.op);
            return;
        }
        self.control.push_back(header);
    }

    fn reset_for(&self, to: &Header) -> Header {
        Header {
            src_cid: HOST_CID,
            dst_cid: self.guest_cid,
            src_port: to.dst_port,
            dst_port: to.src_port,
            kind: TYPE_STREAM,
            op: op::RST,
            buf_alloc: BUF_ALLOC,
            ..Default::default()
        }
    }

    fn reset(&mut self, token: u32, reg: &mut dyn Registry) {
        let rst = self.header(token, op::RST, 0, 0);
        self.push_control(rst);
        self.remove(token, reg);
    }

    fn remove(&mut self, token: u32, reg: &mut dyn Registry) {
        if let Some(conn) = self.conns.remove(&token) {
            if !conn.hup {
                reg.remove(conn.stream.as_raw_fd());
            }
            if conn.state != State::Handshake {
                self.ports.remove(&(conn.local_port, conn.peer_port));
            }
        }
    }

    fn update_interest(&mut self, token: u32, reg: &mut dyn Registry) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        let desired = conn.desired_events();
        if conn.hup || desired == conn.events {
            return;
        }
        if reg.modify(conn.stream.as_raw_fd(), token, desired).is_ok() {
            conn.events = desired;
        }
    }

    /// Handles one packet from the guest; `data` is its payload.
    pub fn on_guest_packet(&mut self, hdr: &Header, data: &[u8], reg: &mut dyn Registry) {
        if hdr.dst_cid != HOST_CID || hdr.src_cid != self.guest_cid || hdr.kind != TYPE_STREAM {
            crate::warn_limited!(
                "vsock: packet with bad addressing or type (cid {} -> {}, type {})",
                hdr.src_cid,
                hdr.dst_cid,
                hdr.kind
            );
            if hdr.op != op::RST {
                let rst = self.reset_for(hdr);
                self.push_control(rst);
            }
            return;
        }
        let token = self.ports.get(&(hdr.dst_port, hdr.src_port)).copied();
        let Some(token) = token else {
            match hdr.op {
                op::REQUEST => self.guest_connect(hdr, reg),
                op::RST => {}
                _ => {
                    let rst = self.reset_for(hdr);
                    self.push_control(rst);
                }
            }
            return;
        };
        if let Some(conn) = self.conns.get_mut(&token) {
            (conn.peer_buf_alloc, conn.peer_fwd_cnt) = (hdr.buf_alloc, hdr.fwd_cnt);
        }
        self.connection_packet(token, hdr, data, reg);
        self.update_interest(token, reg);
    }

    fn connection_packet(&mut self, token: u32, hdr: &Header, data: &[u8], reg: &mut dyn Registry) {
        let state = self.conns.get(&token).map(|c| c.state);
        match (hdr.op, state) {
            (op::RST, _) => self.remove(token, reg),
            (op::RESPONSE, Some(State::Connecting)) => self.host_connection_accepted(token, reg),
            (op::RW, Some(State::Established)) => self.guest_data(token, data, reg),
            (op::CREDIT_UPDATE, Some(State::Established)) => {}
            (op::CREDIT_REQUEST, Some(State::Established)) => {
                let update = self.header(token, op::CREDIT_UPDATE, 0, 0);
                self.push_control(update);
            }
            (op::SHUTDOWN, Some(State::Established)) => {
                if let Some(conn) = self.conns.get_mut(&token) {
                    conn.peer_shutdown |= hdr.flags & (SHUTDOWN_RCV | SHUTDOWN_SEND);
                }
                self.flush(token, reg);
            }
            (other, _) => {
                crate::warn_limited!("vsock: unexpected op {other} in state {state:?}; connection reset");
                self.reset(token, reg);
            }
        }
    }

    fn guest_connect(&mut self, hdr: &Header, reg: &mut dyn Registry) {
        if !self.has_room(reg) {
            crate::warn_limited!("vsock: connection limit {MAX_CONNECTIONS} reached; guest connection refused");
            let rst = self.reset_for(hdr);
            return self.push_control(rst);
        }
        let stream = match connect_nonblocking(&port_path(&self.uds, hdr.dst_port)) {
            Ok(stream) => stream,
            Err(_) => {
                let rst = self.reset_for(hdr);
                return self.push_control(rst);
            }
        };
        let token = self.alloc_token();
        if let Err(e) = reg.add(stream.as_raw_fd(), token, EventSet::IN) {
            crate::warn_limited!("vsock: cannot watch connection: {e}");
            let rst = self.reset_for(hdr);
            return self.push_control(rst);
        }
        let mut conn = Connection::new(stream, State::Established, hdr.dst_port, hdr.src_port);
        (conn.peer_buf_alloc, conn.peer_fwd_cnt) = (hdr.buf_alloc, hdr.fwd_cnt);
        self.conns.insert(token, conn);
        self.ports.insert((hdr.dst_port, hdr.src_port), token);
        let response = self.header(token, op::RESPONSE, 0, 0);
        self.push_control(response);
    }

    fn host_connection_accepted(&mut self, token: u32, reg: &mut dyn Registry) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        let reply = format!("OK {}\n", conn.local_port);
        // A fresh stream's send buffer is empty, so this short write cannot block.
        if conn.stream.write_all(reply.as_bytes()).is_err() {
            return self.reset(token, reg);
        }
        conn.state = State::Established;
    }

    fn guest_data(&mut self, token: u32, data: &[u8], reg: &mut dyn Registry) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        if conn.peer_shutdown & SHUTDOWN_SEND != 0 || conn.pending.len() + data.len() > BUF_ALLOC as usize {
            crate::warn_limited!("vsock: guest sent beyond its credit or after shutdown; connection reset");
            return self.reset(token, reg);
        }
        conn.pending.extend(data);
        self.flush(token, reg);
    }

    /// Writes buffered guest bytes to the host stream; handles close once drained.
    fn flush(&mut self, token: u32, reg: &mut dyn Registry) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        while !conn.pending.is_empty() {
            let (front, _) = conn.pending.as_slices();
            match conn.stream.write(front) {
                Ok(n) if n > 0 => {
                    conn.pending.drain(..n);
                    conn.fwd_cnt = conn.fwd_cnt.wrapping_add(n as u32);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                _ => return self.reset(token, reg),
            }
        }
        let drained = conn.pending.is_empty();
        if drained && conn.peer_shutdown & SHUTDOWN_SEND != 0 && !conn.write_shut {
            let _ = conn.stream.shutdown(Shutdown::Write);
            conn.write_shut = true;
        }
        if drained && conn.peer_shutdown == SHUTDOWN_RCV | SHUTDOWN_SEND {
            return self.reset(token, reg);
        }
        if conn.fwd_cnt.wrapping_sub(conn.last_fwd_sent) >= CREDIT_UPDATE_THRESHOLD {
            let update = self.header(token, op::CREDIT_UPDATE, 0, 0);
            self.push_control(update);
        }
    }

    /// The next packet for the guest, with at most `max_payload` payload bytes
    /// written to `buf`. Returns the header; the payload is `buf[..header.len]`.
    pub fn produce(&mut self, max_payload: usize, buf: &mut [u8], reg: &mut dyn Registry) -> Option<Header> {
        if let Some(header) = self.control.pop_front() {
            return Some(header);
        }
        let ready: Vec<u32> = self
            .conns
            .iter()
            .filter(|(_, c)| c.wants_rx())
            .map(|(t, _)| *t)
            .collect();
        for token in ready {
            if let Some(header) = self.read_host(token, max_payload, buf, reg) {
                return Some(header);
            }
        }
        None
    }

    fn read_host(&mut self, token: u32, max_payload: usize, buf: &mut [u8], reg: &mut dyn Registry) -> Option<Header> {
        let conn = self.conns.get_mut(&token)?;
        let n = max_payload
            .min(conn.peer_credit() as usize)
            .min(MAX_PKT_PAYLOAD)
            .min(buf.len());
        if n == 0 {
            return None;
        }
        match conn.stream.read(&mut buf[..n]) {
            Ok(0) => {
                conn.host_eof = true;
                conn.note_host_gone();
                Some(self.header(token, op::SHUTDOWN, 0, SHUTDOWN_SEND))
            }
            Ok(read) => {
                conn.rx_cnt = conn.rx_cnt.wrapping_add(read as u32);
                Some(self.header(token, op::RW, read as u32, 0))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                conn.readable = false;
                self.update_interest(token, reg);
                None
            }
            Err(_) => {
                self.reset(token, reg);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests;
