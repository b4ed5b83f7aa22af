//! AF_VSOCK stream sockets, which std does not offer.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

pub struct Listener {
    fd: OwnedFd,
}

impl Listener {
    /// Listens on `port` for connections from the host.
    pub fn bind(port: u32) -> io::Result<Listener> {
        // SAFETY: socket(2) returns a new descriptor or -1.
        let raw = unsafe { libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_vm is plain data; all-zero is a valid starting value.
        let mut addr: libc::sockaddr_vm = unsafe { std::mem::zeroed() };
        addr.svm_family = libc::AF_VSOCK as libc::sa_family_t;
        addr.svm_port = port;
        addr.svm_cid = libc::VMADDR_CID_ANY;
        // SAFETY: the pointer and length describe `addr`.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_vm).cast(),
                std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: listen on our bound socket.
        if unsafe { libc::listen(fd.as_raw_fd(), 64) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Listener { fd })
    }

    /// Waits for the next connection from the host; the stream reads and writes
    /// like a file. Connections from inside the guest (the vsock loopback: CID 1 or
    /// the guest's own CID) are closed at once: only the host speaks to the agent, so
    /// a workload can neither drive the agent nor pose as the host.
    pub fn accept(&self) -> io::Result<File> {
        loop {
            // SAFETY: sockaddr_vm is plain data; accept4 fills it.
            let mut peer: libc::sockaddr_vm = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t;
            // SAFETY: the pointers describe `peer` and its length.
            let raw = unsafe {
                libc::accept4(
                    self.fd.as_raw_fd(),
                    (&mut peer as *mut libc::sockaddr_vm).cast(),
                    &mut len,
                    libc::SOCK_CLOEXEC,
                )
            };
            if raw >= 0 {
                // SAFETY: a fresh descriptor we own.
                let conn = unsafe { File::from_raw_fd(raw) };
                if peer.svm_cid == libc::VMADDR_CID_HOST {
                    return Ok(conn);
                }
                continue; // dropping `conn` closes it
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }
}
