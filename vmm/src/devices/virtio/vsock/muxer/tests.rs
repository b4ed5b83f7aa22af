use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Duration;

use proptest::prelude::*;

use super::*;

const GUEST_CID: u64 = 3;

#[derive(Default)]
struct FakeRegistry {
    fds: HashMap<RawFd, (u32, EventSet)>,
}

impl Registry for FakeRegistry {
    fn add(&mut self, fd: RawFd, token: u32, events: EventSet) -> io::Result<()> {
        self.fds.insert(fd, (token, events));
        Ok(())
    }
    fn modify(&mut self, fd: RawFd, token: u32, events: EventSet) -> io::Result<()> {
        self.fds.insert(fd, (token, events));
        Ok(())
    }
    fn remove(&mut self, fd: RawFd) {
        self.fds.remove(&fd);
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    uds: PathBuf,
    mux: Muxer,
    reg: FakeRegistry,
    buf: Vec<u8>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let uds = dir.path().join("v.sock");
    let mut mux = Muxer::new(GUEST_CID, &uds).unwrap();
    let mut reg = FakeRegistry::default();
    mux.init(&mut reg);
    Fixture {
        _dir: dir,
        uds,
        mux,
        reg,
        buf: vec![0; MAX_PKT_PAYLOAD],
    }
}

fn guest(op: u16, src_port: u32, dst_port: u32, len: u32) -> Header {
    Header {
        src_cid: GUEST_CID,
        dst_cid: HOST_CID,
        src_port,
        dst_port,
        len,
        kind: TYPE_STREAM,
        op,
        flags: 0,
        buf_alloc: 64 * 1024,
        fwd_cnt: 0,
    }
}

impl Fixture {
    fn send(&mut self, hdr: Header, data: &[u8]) {
        self.mux.on_guest_packet(&hdr, data, &mut self.reg);
    }

    fn produce(&mut self, max: usize) -> Option<(Header, Vec<u8>)> {
        let h = self.mux.produce(max, &mut self.buf, &mut self.reg)?;
        Some((h, self.buf[..h.len as usize].to_vec()))
    }

    /// Delivers readiness for every registered connection, as epoll would.
    fn poll_streams(&mut self) {
        let fds: Vec<(u32, EventSet)> = self
            .reg
            .fds
            .values()
            .copied()
            .filter(|(t, _)| *t >= FIRST_CONN_TOKEN)
            .collect();
        for (token, events) in fds {
            self.mux.handle_event(token, events, &mut self.reg);
        }
    }
}

fn listen(path: &Path) -> UnixListener {
    UnixListener::bind(path).unwrap()
}

fn accept(listener: &UnixListener) -> UnixStream {
    let (s, _) = listener.accept().unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s
}

#[test]
fn port_path_appends_the_port() {
    assert_eq!(
        port_path(Path::new("/run/x/v.sock"), 52),
        PathBuf::from("/run/x/v.sock_52")
    );
}

#[test]
fn parse_connect_accepts_only_the_exact_form() {
    assert_eq!(parse_connect(b"CONNECT 52\n"), Some(52));
    for bad in [
        &b"CONNECT 52"[..],
        b"CONNECT \n",
        b"CONNECT -1\n",
        b"connect 1\n",
        b"CONNECT 99999999999\n",
        b"CONNECT 1 2\n",
    ] {
        assert_eq!(parse_connect(bad), None, "{:?}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn guest_connection_reaches_the_port_socket_and_carries_data_both_ways() {
    let mut f = fixture();
    let listener = listen(&port_path(&f.uds, 1234));
    f.send(guest(op::REQUEST, 5000, 1234, 0), &[]);
    let (h, _) = f.produce(4096).unwrap();
    assert_eq!(
        (h.op, h.src_port, h.dst_port, h.dst_cid),
        (op::RESPONSE, 1234, 5000, GUEST_CID)
    );
    let mut host = accept(&listener);
    f.send(guest(op::RW, 5000, 1234, 5), b"hello");
    let mut got = [0u8; 5];
    host.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hello");
    host.write_all(b"world").unwrap();
    f.poll_streams();
    let (h, data) = f.produce(4096).unwrap();
    assert_eq!((h.op, data.as_slice()), (op::RW, &b"world"[..]));
    assert!(f.produce(4096).is_none());
}

#[test]
fn guest_connection_to_a_port_without_listener_is_reset() {
    let mut f = fixture();
    f.send(guest(op::REQUEST, 5000, 77, 0), &[]);
    let (h, _) = f.produce(4096).unwrap();
    assert_eq!((h.op, h.src_port, h.dst_port), (op::RST, 77, 5000));
    assert_eq!(f.mux.connections(), 0);
}

#[test]
fn host_connect_handshake_requests_the_guest_port_and_replies_ok() {
    let mut f = fixture();
    let mut client = UnixStream::connect(&f.uds).unwrap();
    client.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    f.mux.handle_event(LISTENER_TOKEN, EventSet::IN, &mut f.reg);
    client.write_all(b"CONNECT 52\n").unwrap();
    f.poll_streams();
    let (h, _) = f.produce(4096).unwrap();
    assert_eq!((h.op, h.dst_port, h.src_port), (op::REQUEST, 52, LOCAL_PORT_BASE));
    f.send(guest(op::RESPONSE, 52, LOCAL_PORT_BASE, 0), &[]);
    let mut line = [0u8; 14];
    client.read_exact(&mut line).unwrap();
    assert_eq!(&line, format!("OK {LOCAL_PORT_BASE}\n").as_bytes());
    f.send(guest(op::RW, 52, LOCAL_PORT_BASE, 3), b"abc");
    let mut got = [0u8; 3];
    client.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"abc");
}

#[test]
fn host_connect_with_a_bad_line_is_closed() {
    let mut f = fixture();
    let mut client = UnixStream::connect(&f.uds).unwrap();
    client.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    f.mux.handle_event(LISTENER_TOKEN, EventSet::IN, &mut f.reg);
    client.write_all(b"HELLO THERE\n").unwrap();
    f.poll_streams();
    assert_eq!(f.mux.connections(), 0);
    assert!(f.produce(4096).is_none());
    let mut rest = Vec::new();
    assert_eq!(client.read_to_end(&mut rest).unwrap(), 0);
}

#[test]
fn host_connect_refused_by_the_guest_closes_the_client() {
    let mut f = fixture();
    let mut client = UnixStream::connect(&f.uds).unwrap();
    client.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    f.mux.handle_event(LISTENER_TOKEN, EventSet::IN, &mut f.reg);
    client.write_all(b"CONNECT 9\n").unwrap();
    f.poll_streams();
    f.produce(4096).unwrap();
    f.send(guest(op::RST, 9, LOCAL_PORT_BASE, 0), &[]);
    assert_eq!(f.mux.connections(), 0);
    let mut rest = Vec::new();
    assert_eq!(client.read_to_end(&mut rest).unwrap(), 0);
}

#[test]
fn connection_flood_above_the_cap_is_reset() {
    let mut f = fixture();
    let listener = listen(&port_path(&f.uds, 80));
    let mut accepted = Vec::new();
    for port in 0..MAX_CONNECTIONS as u32 {
        f.send(guest(op::REQUEST, 10_000 + port, 80, 0), &[]);
        accepted.push(accept(&listener));
        assert_eq!(f.produce(4096).unwrap().0.op, op::RESPONSE);
    }
    f.send(guest(op::REQUEST, 9, 80, 0), &[]);
    assert_eq!(f.produce(4096).unwrap().0.op, op::RST);
    assert_eq!(f.mux.connections(), MAX_CONNECTIONS);
    for _ in 0..10 {
        let _ = UnixStream::connect(&f.uds).unwrap();
    }
    f.mux.handle_event(LISTENER_TOKEN, EventSet::IN, &mut f.reg);
    assert_eq!(f.mux.connections(), MAX_CONNECTIONS);
}

#[test]
fn guest_sending_beyond_its_credit_is_reset_with_bounded_buffering() {
    let mut f = fixture();
    let listener = listen(&port_path(&f.uds, 81));
    f.send(guest(op::REQUEST, 1, 81, 0), &[]);
    f.produce(4096).unwrap();
    let _host = accept(&listener); // never reads
    let chunk = vec![0xab; MAX_PKT_PAYLOAD];
    let mut sent = 0;
    while f.mux.connections() == 1 && sent < 100 {
        f.send(guest(op::RW, 1, 81, chunk.len() as u32), &chunk);
        sent += 1;
    }
    assert_eq!(
        f.mux.connections(),
        0,
        "connection must be reset once credit is exceeded"
    );
    let ops: Vec<u16> = std::iter::from_fn(|| f.produce(4096).map(|(h, _)| h.op)).collect();
    assert_eq!(ops.last(), Some(&op::RST));
}

#[test]
fn guest_that_never_reads_gets_only_its_credit_and_host_reads_stop() {
    let mut f = fixture();
    let listener = listen(&port_path(&f.uds, 82));
    let mut req = guest(op::REQUEST, 2, 82, 0);
    req.buf_alloc = 8192;
    f.send(req, &[]);
    f.produce(4096).unwrap();
    let mut host = accept(&listener);
    host.set_nonblocking(true).unwrap();
    let big = vec![1u8; 100_000];
    let _ = host.write(&big);
    f.poll_streams();
    let mut delivered = 0;
    while let Some((h, data)) = f.produce(4096) {
        assert_eq!(h.op, op::RW);
        delivered += data.len();
    }
    assert_eq!(delivered, 8192);
    assert!(!f.mux.has_rx());
    let fd_events: Vec<EventSet> = f
        .reg
        .fds
        .values()
        .filter(|(t, _)| *t >= FIRST_CONN_TOKEN)
        .map(|(_, e)| *e)
        .collect();
    assert_eq!(
        fd_events,
        vec![EventSet::empty()],
        "stream must not be polled while the guest has no credit"
    );
    let mut update = guest(op::CREDIT_UPDATE, 2, 82, 0);
    (update.buf_alloc, update.fwd_cnt) = (8192, 8192);
    f.send(update, &[]);
    f.poll_streams();
    assert!(f.mux.has_rx());
}

#[test]
fn packets_with_bad_addressing_type_or_op_are_answered_with_reset() {
    let mut f = fixture();
    let mut bad_cid = guest(op::REQUEST, 1, 2, 0);
    bad_cid.src_cid = 99;
    let mut bad_type = guest(op::REQUEST, 1, 2, 0);
    bad_type.kind = 2;
    for hdr in [
        bad_cid,
        bad_type,
        guest(op::RW, 1, 2, 0),
        guest(0, 1, 2, 0),
        guest(0xffff, 1, 2, 0),
    ] {
        f.send(hdr, &[]);
        assert_eq!(f.produce(4096).unwrap().0.op, op::RST, "{hdr:?}");
    }
    f.send(guest(op::RST, 1, 2, 0), &[]);
    assert!(f.produce(4096).is_none());
}

#[test]
fn unknown_op_on_a_live_connection_resets_it() {
    let mut f = fixture();
    let _listener = listen(&port_path(&f.uds, 83));
    f.send(guest(op::REQUEST, 3, 83, 0), &[]);
    f.produce(4096).unwrap();
    f.send(guest(42, 3, 83, 0), &[]);
    assert_eq!(f.produce(4096).unwrap().0.op, op::RST);
    assert_eq!(f.mux.connections(), 0);
}

#[test]
fn guest_full_shutdown_flushes_then_resets() {
    let mut f = fixture();
    let listener = listen(&port_path(&f.uds, 84));
    f.send(guest(op::REQUEST, 4, 84, 0), &[]);
    f.produce(4096).unwrap();
    let mut host = accept(&listener);
    f.send(guest(op::RW, 4, 84, 4), b"last");
    let mut shutdown = guest(op::SHUTDOWN, 4, 84, 0);
    shutdown.flags = SHUTDOWN_RCV | SHUTDOWN_SEND;
    f.send(shutdown, &[]);
    let mut all = Vec::new();
    host.read_to_end(&mut all).unwrap();
    assert_eq!(all, b"last");
    assert_eq!(f.produce(4096).unwrap().0.op, op::RST);
    assert_eq!(f.mux.connections(), 0);
}

#[test]
fn host_eof_becomes_a_send_shutdown() {
    let mut f = fixture();
    let listener = listen(&port_path(&f.uds, 85));
    f.send(guest(op::REQUEST, 5, 85, 0), &[]);
    f.produce(4096).unwrap();
    drop(accept(&listener));
    f.poll_streams();
    let (h, _) = f.produce(4096).unwrap();
    assert_eq!((h.op, h.flags), (op::SHUTDOWN, SHUTDOWN_SEND));
}

/// A guest connection to port 85 whose host side hung up and was read to its end.
fn connection_whose_host_is_gone(f: &mut Fixture, src_port: u32, listener: &UnixListener) {
    f.send(guest(op::REQUEST, src_port, 85, 0), &[]);
    f.produce(4096).unwrap();
    drop(accept(listener));
    let token = *f.mux.ports.get(&(85, src_port)).unwrap();
    f.mux.handle_event(token, EventSet::IN | EventSet::HANG_UP, &mut f.reg);
    let (h, _) = f.produce(4096).unwrap();
    assert_eq!((h.op, h.flags), (op::SHUTDOWN, SHUTDOWN_SEND));
}

#[test]
fn a_connection_whose_host_left_is_reaped_when_the_guest_never_closes() {
    let mut f = fixture();
    let listener = listen(&port_path(&f.uds, 85));
    connection_whose_host_is_gone(&mut f, 5, &listener);
    assert_eq!(f.mux.connections(), 1, "kept while the guest may still close it");
    // The guest ignores the shutdown; past the grace the next connection reaps it.
    f.mux.close_grace = Duration::ZERO;
    f.send(guest(op::REQUEST, 6, 85, 0), &[]);
    let _second = accept(&listener);
    let ops: Vec<u16> = std::iter::from_fn(|| f.produce(4096).map(|(h, _)| h.op)).collect();
    assert!(ops.contains(&op::RST) && ops.contains(&op::RESPONSE), "{ops:?}");
    assert_eq!(f.mux.connections(), 1);
    assert!(!f.mux.ports.contains_key(&(85, 5)));
}

#[test]
fn at_the_cap_connections_whose_host_left_make_room() {
    let mut f = fixture();
    let listener = listen(&port_path(&f.uds, 85));
    let mut live = Vec::new();
    for port in 0..MAX_CONNECTIONS as u32 - 1 {
        f.send(guest(op::REQUEST, 10_000 + port, 85, 0), &[]);
        live.push(accept(&listener));
        f.produce(4096).unwrap();
    }
    connection_whose_host_is_gone(&mut f, 5, &listener);
    assert_eq!(f.mux.connections(), MAX_CONNECTIONS);
    // Within the grace, but the cap is reached: the gone one goes, the new one comes.
    f.send(guest(op::REQUEST, 6, 85, 0), &[]);
    let _new = accept(&listener);
    assert_eq!(f.mux.connections(), MAX_CONNECTIONS);
    assert!(f.mux.ports.contains_key(&(85, 6)));
}

#[test]
fn control_queue_is_bounded() {
    let mut f = fixture();
    for port in 0..(CONTROL_QUEUE_MAX as u32 + 50) {
        f.send(guest(op::RW, port, 1, 0), &[]);
    }
    assert!(!f.mux.control_room());
    let n = std::iter::from_fn(|| f.produce(4096)).count();
    assert_eq!(n, CONTROL_QUEUE_MAX);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn random_guest_packets_never_panic(pkts in proptest::collection::vec((0u16..9, 0u32..4, 0u32..4, any::<u32>(), any::<u32>(), 0u32..4), 0..60)) {
        let mut f = fixture();
        let _l1 = listen(&port_path(&f.uds, 1));
        let _l2 = listen(&port_path(&f.uds, 2));
        for (op, src, dst, buf_alloc, fwd_cnt, flags) in pkts {
            let mut h = guest(op, src, dst, 0);
            (h.buf_alloc, h.fwd_cnt, h.flags) = (buf_alloc, fwd_cnt, flags);
            f.send(h, &[]);
            f.poll_streams();
            let _ = f.produce(100);
        }
        prop_assert!(f.mux.connections() <= MAX_CONNECTIONS);
    }
}

proptest! {
    #[test]
    fn connect_lines_parse_to_their_port_and_nothing_else_parses(
        port in any::<u32>(),
        zeros in 0usize..3,
        junk in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        let line = format!("CONNECT {}{port}\n", "0".repeat(zeros));
        prop_assert_eq!(parse_connect(line.as_bytes()), Some(port));
        if let Some(p) = parse_connect(&junk) {
            let digits = junk.strip_prefix(b"CONNECT ").and_then(|d| d.strip_suffix(b"\n")).unwrap();
            prop_assert!(!digits.is_empty() && digits.iter().all(u8::is_ascii_digit));
            prop_assert_eq!(std::str::from_utf8(digits).unwrap().parse::<u32>().unwrap(), p);
        }
    }
}
