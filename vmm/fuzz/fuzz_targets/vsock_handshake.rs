//! The host side of hybrid vsock: up to four host clients connect to the device's
//! socket and send arbitrary bytes (the input cut at 0xff). A first line (within 32
//! bytes) of exactly `CONNECT <port>\n` must become one REQUEST to that guest port;
//! anything else closes the connection; an incomplete line waits. Once the guest
//! accepts, the client reads `OK <local port>\n` and then the guest's data, and every
//! byte it sent after its line reaches the guest unchanged.
#![no_main]

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::os::unix::io::RawFd;
use std::os::unix::net::UnixStream;

use libfuzzer_sys::fuzz_target;
use vmm::devices::virtio::vsock::muxer::{Muxer, Registry, LISTENER_TOKEN, LOCAL_PORT_BASE};
use vmm::devices::virtio::vsock::packet::{op, Header, TYPE_STREAM};
use vmm::devices::virtio::vsock::{HOST_CID, MAX_PKT_PAYLOAD};
use vmm::event_loop::EventSet;

const GUEST_CID: u64 = 3;
const HANDSHAKE_MAX: usize = 32;

/// Connection tokens in the order the muxer registered them.
#[derive(Default)]
struct Recorder {
    tokens: Vec<u32>,
    fds: HashMap<RawFd, u32>,
}

impl Registry for Recorder {
    fn add(&mut self, fd: RawFd, token: u32, _events: EventSet) -> std::io::Result<()> {
        if token != LISTENER_TOKEN {
            self.tokens.push(token);
        }
        self.fds.insert(fd, token);
        Ok(())
    }
    fn modify(&mut self, _fd: RawFd, _token: u32, _events: EventSet) -> std::io::Result<()> {
        Ok(())
    }
    fn remove(&mut self, fd: RawFd) {
        self.fds.remove(&fd);
    }
}

#[derive(Debug, PartialEq)]
enum Outcome {
    /// A valid line: REQUEST to this port; the bytes after the line are data.
    Connect(u32, usize),
    Closed,
    Waiting,
}

/// What the handshake must make of what a client sent (the protocol, restated).
fn expected(sent: &[u8], closed: bool) -> Outcome {
    let Some(end) = sent.iter().take(HANDSHAKE_MAX).position(|&b| b == b'\n') else {
        return if closed || sent.len() >= HANDSHAKE_MAX {
            Outcome::Closed
        } else {
            Outcome::Waiting
        };
    };
    let digits = sent[..end].strip_prefix(b"CONNECT ").unwrap_or_default();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Outcome::Closed;
    }
    match std::str::from_utf8(digits).unwrap().parse::<u32>() {
        Ok(port) => Outcome::Connect(port, end + 1),
        Err(_) => Outcome::Closed,
    }
}

fn guest(reply_to: &Header, op: u16, len: u32) -> Header {
    Header {
        src_cid: GUEST_CID,
        dst_cid: HOST_CID,
        src_port: reply_to.dst_port,
        dst_port: reply_to.src_port,
        len,
        kind: TYPE_STREAM,
        op,
        flags: 0,
        buf_alloc: 1 << 20,
        fwd_cnt: 0,
    }
}

/// What is readable now on a non-blocking client; `None` once it reads end-of-stream.
fn available(client: &mut UnixStream) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match client.read(&mut buf) {
            Ok(0) => return None,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Some(out),
            Err(_) => return None,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let uds = dir.path().join("v.sock");
    let mut reg = Recorder::default();
    let mut muxer = Muxer::new(GUEST_CID, &uds).unwrap();
    muxer.init(&mut reg);

    let mut clients = Vec::new();
    for (i, sent) in rest.split(|b| *b == 0xff).take(4).enumerate() {
        let mut client = UnixStream::connect(&uds).unwrap();
        client.write_all(sent).unwrap();
        let closed = flags & (1 << i) != 0;
        if closed {
            client.shutdown(Shutdown::Write).unwrap();
        }
        client.set_nonblocking(true).unwrap();
        clients.push((client, sent, expected(sent, closed)));
    }
    muxer.handle_event(LISTENER_TOKEN, EventSet::IN, &mut reg);
    assert_eq!(reg.tokens.len(), clients.len());
    for &token in &reg.tokens.clone() {
        muxer.handle_event(token, EventSet::IN, &mut reg);
    }

    // REQUESTs come in the order the lines were read, one per valid line.
    let mut buf = vec![0u8; MAX_PKT_PAYLOAD];
    let requests: Vec<Header> = std::iter::from_fn(|| muxer.produce(MAX_PKT_PAYLOAD, &mut buf, &mut reg)).collect();
    let wanted: Vec<u32> = clients
        .iter()
        .filter_map(|(_, _, o)| match o {
            Outcome::Connect(port, _) => Some(*port),
            _ => None,
        })
        .collect();
    let ports: Vec<u32> = requests.iter().map(|h| h.dst_port).collect();
    assert_eq!(ports, wanted, "REQUESTs differ from the valid CONNECT lines");
    for h in &requests {
        assert!(
            h.op == op::REQUEST && h.src_cid == HOST_CID && h.dst_cid == GUEST_CID && h.src_port >= LOCAL_PORT_BASE
        );
    }

    // The guest accepts each and sends a few bytes; the host clients see the reply.
    let mut requests = requests.into_iter();
    let mut local_ports = HashMap::new();
    for (i, (client, sent, outcome)) in clients.iter_mut().enumerate() {
        let got = available(client);
        match outcome {
            Outcome::Closed => assert_eq!(got, None, "client {i}: a bad handshake left the connection open"),
            Outcome::Waiting => assert_eq!(got, Some(Vec::new()), "client {i}: answered an incomplete line"),
            &mut Outcome::Connect(_, line) => {
                let sent: &[u8] = sent;
                assert_eq!(got, Some(Vec::new()), "client {i}: answered before the guest did");
                let req = requests.next().unwrap();
                muxer.on_guest_packet(&guest(&req, op::RESPONSE, 0), &[], &mut reg);
                muxer.on_guest_packet(&guest(&req, op::RW, 4), b"pong", &mut reg);
                let reply = format!("OK {}\npong", req.src_port);
                assert_eq!(available(client).unwrap_or_default(), reply.as_bytes(), "client {i}");
                local_ports.insert(req.src_port, (i, &sent[line..]));
            }
        }
    }

    // What each client sent after its line reaches the guest, byte for byte.
    for &token in &reg.tokens.clone() {
        muxer.handle_event(token, EventSet::IN, &mut reg);
    }
    let mut received: HashMap<u32, Vec<u8>> = HashMap::new();
    for _ in 0..1000 {
        let Some(h) = muxer.produce(MAX_PKT_PAYLOAD, &mut buf, &mut reg) else {
            break;
        };
        if h.op == op::RW {
            received
                .entry(h.src_port)
                .or_default()
                .extend_from_slice(&buf[..h.len as usize]);
        }
    }
    for (port, (i, after)) in local_ports {
        let got = received.remove(&port).unwrap_or_default();
        assert_eq!(
            got, after,
            "client {i}: bytes after the CONNECT line were lost or changed"
        );
    }
});
