//! `hull-vsock-probe`: a test tool, copied into a container by the end-to-end tests.
//! It acts as a hostile workload would against the runtime's vsock channel: it tries
//! to take over the agent's ports, to reach the agent through the guest itself, and
//! to reach the host's control socket. On any connection it gets it greets as the
//! host and sends a forged `Exited` for the main process, then reports whether
//! anything answered. One line per attempt: `WHAT: RESULT`.

#[cfg(target_os = "linux")]
fn main() {
    use guest_agent::protocol::{
        read_frame, write_frame, AgentMessage, ExitStatus, HostMessage, CONTROL_PORT, STDIO_PORT, VERSION,
    };
    use std::io::Write;
    use std::os::fd::{FromRawFd, OwnedFd};

    // On a connection: greet as the host would, then pose as the agent with a forged
    // `Exited`; report whether anything answered.
    let forged = |fd: OwnedFd| {
        let mut conn = std::fs::File::from(fd);
        let hello = HostMessage::Hello { version: VERSION };
        let exit = AgentMessage::Exited {
            id: 1,
            status: ExitStatus::Code(0),
            oom_killed: false,
        };
        let sent = write_frame(&mut conn, &hello)
            .and_then(|()| write_frame(&mut conn, &exit))
            .map_err(|e| e.to_string())
            .and_then(|()| conn.flush().map_err(|e| e.to_string()));
        if let Err(e) = sent {
            return format!("closed ({e})");
        }
        match read_frame::<AgentMessage>(&mut conn, 4096) {
            Ok(Some(reply)) => format!("agent answered {reply:?}"),
            Ok(None) => "closed without an answer".to_owned(),
            Err(e) => format!("closed ({e})"),
        }
    };
    for port in [CONTROL_PORT, STDIO_PORT] {
        let result = match socket().and_then(|fd| call(&fd, port, libc::VMADDR_CID_ANY, libc::bind).map(|()| fd)) {
            Ok(_) => "bound".to_owned(),
            Err(e) => format!("refused ({e})"),
        };
        println!("bind {port}: {result}");
    }
    // The host (2), the guest itself through loopback (1), and any CID the guest
    // might be given (3).
    for cid in [libc::VMADDR_CID_HOST, 1, 3] {
        for port in [CONTROL_PORT, STDIO_PORT] {
            let result = match socket().and_then(|fd| call(&fd, port, cid, libc::connect).map(|()| fd)) {
                Ok(fd) => forged(fd),
                Err(e) => format!("refused ({e})"),
            };
            println!("connect {cid}:{port}: {result}");
        }
    }

    fn socket() -> std::io::Result<OwnedFd> {
        // SAFETY: socket(2) returns a new descriptor or -1.
        let raw = unsafe { libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor we own.
        Ok(unsafe { OwnedFd::from_raw_fd(raw) })
    }

    type SockCall = unsafe extern "C" fn(libc::c_int, *const libc::sockaddr, libc::socklen_t) -> libc::c_int;

    fn call(fd: &OwnedFd, port: u32, cid: u32, f: SockCall) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        // SAFETY: sockaddr_vm is plain data; all-zero is a valid starting value.
        let mut addr: libc::sockaddr_vm = unsafe { std::mem::zeroed() };
        addr.svm_family = libc::AF_VSOCK as libc::sa_family_t;
        addr.svm_port = port;
        addr.svm_cid = cid;
        let len = std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t;
        // SAFETY: the pointer and length describe `addr`; `fd` is an open socket.
        if unsafe { f(fd.as_raw_fd(), (&addr as *const libc::sockaddr_vm).cast(), len) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("hull-vsock-probe runs only inside a Linux guest");
    std::process::exit(1);
}
