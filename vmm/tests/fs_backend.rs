//! The virtio-fs device against a real `virtiofsd`, without a guest: the test plays
//! the guest driver, putting FUSE requests on the request queue in (shared) guest
//! memory and reading the backend's replies from it. This checks the whole host
//! side — the vhost-user handshake and session, the memory file the backend maps,
//! kicks, and calls turned into the device interrupt — and the properties hull
//! relies on for volumes: `--readonly` is enforced by the backend, and `..` at the
//! shared directory's root does not lead outside it.
//!
//! virtiofsd is found as hull finds it (`$HULL_VIRTIOFSD`, `PATH`, then the usual
//! install places); it is installed by `scripts/setup.sh`. Missing, the tests fail.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
use virtio_queue::mock::MockSplitQueue;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress};
use vmm::devices::virtio::fs::Fs;
use vmm::devices::virtio::{ActivateContext, Interrupt, VirtioDevice};
use vmm::devices::IrqLine;
use vmm::event_loop::{EventLoop, WorkerSpawner};
use vmm::memory::{create_guest_memory, Backing, GuestMemory};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

const F_NEXT: u16 = 1;
const F_WRITE: u16 = 2;
const HIPRIO_RING: u64 = 0x10_0000;
const REQUEST_RING: u64 = 0x20_0000;
const BUFFERS: u64 = 0x40_0000;
const OUT_LEN: u32 = 64 << 10;
const QUEUE_LEN: u16 = 64;

const FUSE_LOOKUP: u32 = 1;
const FUSE_MKDIR: u32 = 9;
const FUSE_OPEN: u32 = 14;
const FUSE_READ: u32 = 15;
const FUSE_INIT: u32 = 26;
const ROOT: u64 = 1;

fn virtiofsd() -> PathBuf {
    if let Some(p) = std::env::var_os("HULL_VIRTIOFSD") {
        return p.into();
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("virtiofsd"))
        .chain(
            [
                "/usr/local/bin/virtiofsd",
                "/usr/libexec/virtiofsd",
                "/usr/lib/qemu/virtiofsd",
            ]
            .map(PathBuf::from),
        )
        .chain(std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo/bin/virtiofsd")))
        .find(|p| p.is_file())
        .expect("virtiofsd not found: install it with `cargo install virtiofsd` (scripts/setup.sh does)")
}

/// A virtiofsd serving `shared` on a socket in a temp dir; killed on drop.
struct Backend {
    child: Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Backend {
    fn start(shared: &Path, extra: &[&str]) -> Backend {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("fs.sock");
        let child = Command::new(virtiofsd())
            .arg("--socket-path")
            .arg(&socket)
            .arg("--shared-dir")
            .arg(shared)
            .args([
                "--sandbox",
                "namespace",
                "--cache",
                "auto",
                "--log-level",
                &std::env::var("VIRTIOFSD_LOG").unwrap_or("error".into()),
            ])
            .args(extra)
            .stdin(Stdio::null())
            .spawn()
            .expect("start virtiofsd");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !socket.exists() {
            assert!(
                Instant::now() < deadline,
                "virtiofsd did not create {}",
                socket.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Backend {
            child,
            socket,
            _dir: dir,
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The test's side of the device: guest memory, the request queue and the interrupt.
struct Driver {
    mem: GuestMemory,
    kicks: Vec<EventFd>,
    interrupt: Arc<Interrupt>,
    request_rings: (u64, u64, u64),
    next_slot: u16,
    unique: u64,
    _loop: vmm::event_loop::EventLoopHandle,
}

impl Driver {
    /// Activates `fs` as a guest driver would, with the worker on a real event loop.
    fn activate(mut fs: Fs) -> Driver {
        let mem = create_guest_memory(64 << 20, Backing::Shared).unwrap();
        let queues: Vec<Queue> = [HIPRIO_RING, REQUEST_RING]
            .iter()
            .map(|&at| {
                MockSplitQueue::create(&mem, GuestAddress(at), QUEUE_LEN)
                    .create_queue()
                    .unwrap()
            })
            .collect();
        let kicks: Vec<EventFd> = (0..2).map(|_| EventFd::new(EFD_NONBLOCK).unwrap()).collect();
        let interrupt = Interrupt::new(IrqLine::new(5).unwrap());
        let ctx = ActivateContext {
            mem: mem.clone(),
            queues,
            queue_evts: kicks.iter().map(|k| k.try_clone().unwrap()).collect(),
            interrupt: interrupt.clone(),
            driver_features: fs.features(),
        };
        let q = &ctx.queues[1];
        let request_rings = (q.desc_table(), q.avail_ring(), q.used_ring());
        let worker = fs.activate(ctx).expect("activate");
        let (event_loop, handle) = EventLoop::new().unwrap();
        std::thread::spawn(move || event_loop.run());
        handle.spawn(worker).unwrap();
        Driver {
            mem,
            kicks,
            interrupt,
            request_rings,
            next_slot: 0,
            unique: 0,
            _loop: handle,
        }
    }

    /// Ring addresses of the request queue: descriptor table, avail ring, used ring.
    fn rings(&self) -> (u64, u64, u64) {
        self.request_rings
    }

    fn used_idx(&self) -> u16 {
        self.mem.read_obj::<u16>(GuestAddress(self.rings().2 + 2)).unwrap()
    }

    /// Puts the two-descriptor chain (request, reply) at `slot` on the available ring.
    fn offer(&self, slot: u16, request: (u64, u32), reply: (u64, u32)) {
        let (desc, avail, _) = self.rings();
        let head = slot * 2;
        for (i, (addr, len, flags, next)) in [(request.0, request.1, F_NEXT, head + 1), (reply.0, reply.1, F_WRITE, 0)]
            .into_iter()
            .enumerate()
        {
            let raw = RawDescriptor::from(SplitDescriptor::new(addr, len, flags, next));
            self.mem
                .write_obj(raw, GuestAddress(desc + 16 * u64::from(head + i as u16)))
                .unwrap();
        }
        let idx = self.mem.read_obj::<u16>(GuestAddress(avail + 2)).unwrap();
        let entry = avail + 4 + 2 * u64::from(idx % QUEUE_LEN);
        self.mem.write_obj(head, GuestAddress(entry)).unwrap();
        self.mem
            .write_obj(idx.wrapping_add(1), GuestAddress(avail + 2))
            .unwrap();
    }

    /// Sends one FUSE request; returns (error, reply body).
    fn call(&mut self, opcode: u32, nodeid: u64, body: &[u8]) -> (i32, Vec<u8>) {
        self.unique += 2;
        let mut request = Vec::with_capacity(40 + body.len());
        request.extend_from_slice(&(40 + body.len() as u32).to_le_bytes());
        request.extend_from_slice(&opcode.to_le_bytes());
        request.extend_from_slice(&self.unique.to_le_bytes());
        request.extend_from_slice(&nodeid.to_le_bytes());
        request.extend_from_slice(&[0u8; 16]); // uid, gid, pid, extlen, padding: root, pid 0
        request.extend_from_slice(body);
        let slot = self.next_slot;
        self.next_slot = (slot + 1) % (QUEUE_LEN / 2);
        let inp = BUFFERS + u64::from(slot) * 0x2_0000;
        let out = inp + 0x1_0000;
        self.mem.write_slice(&request, GuestAddress(inp)).unwrap();
        self.mem.write_slice(&[0u8; 16], GuestAddress(out)).unwrap();
        let before = self.used_idx();
        self.offer(slot, (inp, request.len() as u32), (out, OUT_LEN));
        self.kicks[1].write(1).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.used_idx() == before {
            if Instant::now() > deadline {
                let (_, a, u) = self.rings();
                let mut raw = [0u8; 8];
                self.mem.read_slice(&mut raw, GuestAddress(a)).unwrap();
                let mut used = [0u8; 16];
                self.mem.read_slice(&mut used, GuestAddress(u)).unwrap();
                let mut hdr = [0u8; 16];
                self.mem.read_slice(&mut hdr, GuestAddress(out)).unwrap();
                panic!(
                    "no reply to FUSE opcode {opcode}: avail {raw:?} used {used:?} out {hdr:?} status {}",
                    self.interrupt.status()
                );
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let mut header = [0u8; 16];
        self.mem.read_slice(&mut header, GuestAddress(out)).unwrap();
        let len = u32::from_le_bytes(header[0..4].try_into().unwrap()) as usize;
        let error = i32::from_le_bytes(header[4..8].try_into().unwrap());
        assert_eq!(u64::from_le_bytes(header[8..16].try_into().unwrap()), self.unique);
        let mut reply = vec![0u8; len.saturating_sub(16)];
        self.mem.read_slice(&mut reply, GuestAddress(out + 16)).unwrap();
        (error, reply)
    }

    fn init(&mut self) {
        let mut body = Vec::new();
        for v in [7u32, 31, 128 << 10, 0] {
            body.extend_from_slice(&v.to_le_bytes());
        }
        let (error, reply) = self.call(FUSE_INIT, 0, &body);
        assert_eq!(error, 0, "FUSE_INIT failed");
        assert_eq!(
            u32::from_le_bytes(reply[0..4].try_into().unwrap()),
            7,
            "FUSE major version"
        );
    }

    /// LOOKUP `name` in `parent`: (error, nodeid, size).
    fn lookup(&mut self, parent: u64, name: &str) -> (i32, u64, u64) {
        let mut body = name.as_bytes().to_vec();
        body.push(0);
        let (error, reply) = self.call(FUSE_LOOKUP, parent, &body);
        if error != 0 {
            return (error, 0, 0);
        }
        let u64_at = |o: usize| u64::from_le_bytes(reply[o..o + 8].try_into().unwrap());
        // fuse_entry_out: nodeid, generation, entry_valid, attr_valid, 2 x u32, then fuse_attr (ino, size, ...).
        (0, u64_at(0), u64_at(48))
    }

    fn read_file(&mut self, nodeid: u64, size: u32) -> Vec<u8> {
        let (error, reply) = self.call(FUSE_OPEN, nodeid, &[0u8; 8]); // O_RDONLY
        assert_eq!(error, 0, "FUSE_OPEN failed");
        let fh = u64::from_le_bytes(reply[0..8].try_into().unwrap());
        let mut body = Vec::new();
        body.extend_from_slice(&fh.to_le_bytes());
        body.extend_from_slice(&0u64.to_le_bytes());
        body.extend_from_slice(&size.to_le_bytes());
        body.extend_from_slice(&[0u8; 20]);
        let (error, data) = self.call(FUSE_READ, nodeid, &body);
        assert_eq!(error, 0, "FUSE_READ failed");
        data
    }

    fn mkdir(&mut self, parent: u64, name: &str) -> i32 {
        let mut body = Vec::new();
        body.extend_from_slice(&0o755u32.to_le_bytes());
        body.extend_from_slice(&0o022u32.to_le_bytes());
        body.extend_from_slice(name.as_bytes());
        body.push(0);
        self.call(FUSE_MKDIR, parent, &body).0
    }
}

/// A shared directory `share/` with `hello`, beside a `secret` outside it.
fn tree() -> (tempfile::TempDir, PathBuf) {
    let top = tempfile::tempdir().unwrap();
    std::fs::set_permissions(top.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let share = top.path().join("share");
    std::fs::create_dir(&share).unwrap();
    std::fs::write(share.join("hello"), b"hello from the host\n").unwrap();
    std::fs::write(top.path().join("secret"), b"outside the volume\n").unwrap();
    (top, share)
}

#[test]
fn fuse_requests_in_guest_memory_reach_virtiofsd_and_replies_come_back() {
    let (_top, share) = tree();
    let backend = Backend::start(&share, &[]);
    let fs = Fs::connect("hullfs0", &backend.socket).expect("handshake with virtiofsd");
    assert_ne!(fs.features() & (1 << 32), 0, "VERSION_1 offered");
    assert_eq!(&fs.config_space()[..7], b"hullfs0");
    let mut driver = Driver::activate(fs);
    driver.init();
    assert_ne!(
        driver.interrupt.status() & 1,
        0,
        "the backend's call raised the used-ring interrupt"
    );

    let (error, node, size) = driver.lookup(ROOT, "hello");
    assert_eq!((error, size), (0, 20));
    assert_eq!(driver.read_file(node, 4096), b"hello from the host\n");

    assert_eq!(driver.mkdir(ROOT, "made-in-guest"), 0);
    assert!(
        share.join("made-in-guest").is_dir(),
        "a guest mkdir shows on the host at once"
    );
}

#[test]
fn dot_dot_at_the_shared_root_stays_inside_it() {
    let (_top, share) = tree();
    let backend = Backend::start(&share, &[]);
    let mut driver = Driver::activate(Fs::connect("t", &backend.socket).unwrap());
    driver.init();
    let (error, parent, _) = driver.lookup(ROOT, "..");
    if error == 0 {
        let (error, ..) = driver.lookup(parent, "secret");
        assert_ne!(error, 0, "`..` of the shared root reached a file outside it");
        let (error, _, size) = driver.lookup(parent, "hello");
        assert_eq!((error, size), (0, 20), "`..` of the shared root is the root itself");
    }
}

#[test]
fn a_readonly_backend_refuses_writes_whatever_the_guest_asks() {
    let (_top, share) = tree();
    let backend = Backend::start(&share, &["--readonly"]);
    let mut driver = Driver::activate(Fs::connect("t", &backend.socket).unwrap());
    driver.init();
    assert_eq!(driver.mkdir(ROOT, "nope"), -libc::EROFS);
    assert!(!share.join("nope").exists());
    let (error, node, _) = driver.lookup(ROOT, "hello");
    assert_eq!(error, 0);
    assert_eq!(
        driver.read_file(node, 4096),
        b"hello from the host\n",
        "reads still work"
    );
}

#[test]
fn a_backend_that_dies_marks_the_device_broken_and_the_vmm_goes_on() {
    let (_top, share) = tree();
    let mut backend = Backend::start(&share, &[]);
    let mut driver = Driver::activate(Fs::connect("t", &backend.socket).unwrap());
    driver.init();
    backend.child.kill().unwrap();
    backend.child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !driver.interrupt.is_broken() {
        assert!(
            Instant::now() < deadline,
            "device not marked broken after the backend died"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_ne!(
        driver.interrupt.status() & 2,
        0,
        "the driver is told through a config interrupt"
    );
}

#[test]
fn connecting_to_a_socket_that_is_not_a_vhost_user_backend_fails_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("silent.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    // A peer that accepts and hangs up at once.
    let t = std::thread::spawn(move || drop(listener.accept()));
    let err = match Fs::connect("t", &path) {
        Err(e) => e,
        Ok(_) => panic!("handshake with a silent peer succeeded"),
    };
    t.join().unwrap();
    assert!(err.to_string().contains("silent.sock"), "{err}");
}
