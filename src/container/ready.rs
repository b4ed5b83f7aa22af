//! How a monitor tells the command that started it how the start goes: one end of a
//! socket pair, inherited as a file descriptor named in `HULL_READY_FD`. The monitor
//! writes one byte per event ([`Event`]); the command waits on its end, with a
//! deadline, and reads the container's state (the record stays the truth) only when
//! something happened. End of file means the monitor is gone: it exited, or died
//! before it could say more.
//!
//! Both ends are hull's own processes (the guest never sees this channel), but an
//! unknown byte is still skipped, not trusted.

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Instant;

/// The environment variable that names the monitor's end.
pub const READY_FD_ENV: &str = "HULL_READY_FD";
/// The descriptor number the monitor gets its end as.
const CHILD_FD: RawFd = 3;

/// What the monitor reports, in the order it can happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// The attach socket is listening.
    AttachReady,
    /// The main process runs (the state says `running`).
    Running,
    /// The run is over and recorded (exit code, error), or the start failed.
    Ended,
}

impl Event {
    fn byte(self) -> u8 {
        match self {
            Event::AttachReady => b'a',
            Event::Running => b'r',
            Event::Ended => b'e',
        }
    }

    fn from_byte(b: u8) -> Option<Event> {
        match b {
            b'a' => Some(Event::AttachReady),
            b'r' => Some(Event::Running),
            b'e' => Some(Event::Ended),
            _ => None,
        }
    }
}

/// The starting command's end.
pub struct Waiter(UnixStream);

/// Makes the pair, and arranges for `cmd`'s child to get its end as
/// [`CHILD_FD`] named in [`READY_FD_ENV`]. The parent's copy of the child's end is
/// closed when `cmd` is dropped after spawning (keep `cmd` only until then).
pub fn pair_for(cmd: &mut Command) -> io::Result<Waiter> {
    let (ours, theirs) = UnixStream::pair()?;
    let theirs = OwnedFd::from(theirs);
    cmd.env(READY_FD_ENV, CHILD_FD.to_string());
    // SAFETY: the closure only calls dup2 and fcntl (async-signal-safe) on descriptors
    // it owns, and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            let fd = theirs.as_raw_fd();
            if fd == CHILD_FD {
                // Already in place: only drop FD_CLOEXEC.
                if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                    return Err(io::Error::last_os_error());
                }
            } else if libc::dup2(fd, CHILD_FD) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        })
    };
    Ok(Waiter(ours))
}

impl Waiter {
    /// The next event, `Ok(None)` at end of file (the monitor is gone), or a
    /// `TimedOut` error at `deadline`.
    pub fn next(&mut self, deadline: Instant) -> io::Result<Option<Event>> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            self.0.set_read_timeout(Some(left))?;
            let mut byte = [0u8];
            match self.0.read(&mut byte) {
                Ok(0) => return Ok(None),
                Ok(_) => match Event::from_byte(byte[0]) {
                    Some(event) => return Ok(Some(event)),
                    None => continue,
                },
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    return Err(io::ErrorKind::TimedOut.into())
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Waits for `wanted` (or for any later event, or for the end); `Ok(None)` at end
    /// of file.
    pub fn until(&mut self, wanted: Event, deadline: Instant) -> io::Result<Option<Event>> {
        loop {
            match self.next(deadline)? {
                Some(event) if rank(event) >= rank(wanted) => return Ok(Some(event)),
                Some(_) => continue,
                None => return Ok(None),
            }
        }
    }
}

fn rank(event: Event) -> u8 {
    match event {
        Event::AttachReady => 0,
        Event::Running => 1,
        Event::Ended => 2,
    }
}

/// The monitor's end; does nothing when the monitor was started without one.
#[derive(Default)]
pub struct Notifier(Option<UnixStream>);

impl Notifier {
    /// Takes the end named in [`READY_FD_ENV`], if any, and keeps it from the
    /// monitor's own children.
    pub fn from_env() -> Notifier {
        let Some(fd) = std::env::var(READY_FD_ENV).ok().and_then(|v| v.parse::<RawFd>().ok()) else {
            return Notifier(None);
        };
        std::env::remove_var(READY_FD_ENV);
        // SAFETY: F_GETFD only asks whether the descriptor is open, touching no memory.
        if fd <= 2 || unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            return Notifier(None);
        }
        // SAFETY: the descriptor is open (checked above), was handed to this process for
        // this purpose, and nothing else in it takes ownership of it.
        let stream = unsafe { UnixStream::from_raw_fd(fd) };
        // SAFETY: setting FD_CLOEXEC on a descriptor this process owns.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        Notifier(Some(stream))
    }

    /// Reports `event`; a starter that went away is not an error.
    pub fn send(&self, event: Event) {
        if let Some(mut stream) = self.0.as_ref() {
            let _ = stream.write_all(&[event.byte()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn pair() -> (Waiter, Notifier) {
        let (a, b) = UnixStream::pair().unwrap();
        (Waiter(a), Notifier(Some(b)))
    }

    #[test]
    fn events_arrive_in_order_and_the_end_is_end_of_file() {
        let (mut waiter, notifier) = pair();
        notifier.send(Event::AttachReady);
        notifier.send(Event::Running);
        let deadline = Instant::now() + Duration::from_secs(5);
        assert_eq!(waiter.next(deadline).unwrap(), Some(Event::AttachReady));
        assert_eq!(waiter.next(deadline).unwrap(), Some(Event::Running));
        drop(notifier);
        assert_eq!(waiter.next(deadline).unwrap(), None);
    }

    #[test]
    fn waiting_for_running_takes_a_later_end_and_skips_unknown_bytes() {
        let (mut waiter, notifier) = pair();
        notifier.0.as_ref().unwrap().write_all(b"?a").unwrap();
        notifier.send(Event::Ended);
        let deadline = Instant::now() + Duration::from_secs(5);
        assert_eq!(waiter.until(Event::Running, deadline).unwrap(), Some(Event::Ended));
    }

    #[test]
    fn a_silent_monitor_times_out_at_the_deadline() {
        let (mut waiter, _notifier) = pair();
        let started = Instant::now();
        let err = waiter.next(started + Duration::from_millis(100)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(100));
    }

    #[test]
    fn a_child_gets_its_end_as_fd_3_and_the_parent_sees_it_close() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "[ \"$HULL_READY_FD\" = 3 ] && printf r >&3"]);
        let mut waiter = pair_for(&mut cmd).unwrap();
        let mut child = cmd.spawn().unwrap();
        drop(cmd);
        let deadline = Instant::now() + Duration::from_secs(10);
        assert_eq!(waiter.next(deadline).unwrap(), Some(Event::Running));
        assert_eq!(waiter.next(deadline).unwrap(), None);
        assert!(child.wait().unwrap().success());
    }

    #[test]
    fn without_the_variable_the_notifier_does_nothing() {
        Notifier::default().send(Event::Running);
    }
}
