//! `poll(2)` over a few borrowed descriptors.

use crate::check;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

/// A set of `poll` event bits (`POLLIN`, `POLLOUT`, ...).
pub type Events = libc::c_short;

/// Data can be read (or a listener has a connection to accept).
pub const READABLE: Events = libc::POLLIN;
/// Data can be written without blocking (or a non-blocking `connect` finished).
pub const WRITABLE: Events = libc::POLLOUT;
/// The peer hung up (reported whether asked for or not).
pub const HANG_UP: Events = libc::POLLHUP;
/// An error is pending (reported whether asked for or not).
pub const ERROR: Events = libc::POLLERR;

/// Most descriptors one [`poll`] call takes (a relay waits on two sockets and a wake-up pipe).
pub const MAX_DESCRIPTORS: usize = 8;

/// One descriptor for [`poll`]: `None` (or no `events`) leaves it out of the call, so a
/// hung-up socket nobody waits on does not wake the caller again and again.
#[derive(Debug, Clone, Copy)]
pub struct PollFd<'a> {
    /// The descriptor.
    pub fd: Option<BorrowedFd<'a>>,
    /// [`READABLE`] and/or [`WRITABLE`] wanted.
    pub events: Events,
    /// What happened ([`READABLE`], [`WRITABLE`], [`HANG_UP`], [`ERROR`]...), set by [`poll`].
    pub revents: Events,
}

impl<'a> PollFd<'a> {
    /// Waits on `fd` for `events`.
    #[must_use]
    pub fn new(fd: BorrowedFd<'a>, events: Events) -> Self {
        Self {
            fd: Some(fd),
            events,
            revents: 0,
        }
    }
}

/// Waits until one of `fds` has an event or `timeout` passes (`None`: no timeout); returns
/// how many have events (0: the timeout passed). Retries on `EINTR` with the whole timeout.
///
/// # Errors
/// The `poll` failure; more than [`MAX_DESCRIPTORS`] descriptors (`InvalidInput`).
pub fn poll(fds: &mut [PollFd<'_>], timeout: Option<Duration>) -> io::Result<usize> {
    let mut raw = [libc::pollfd {
        fd: -1,
        events: 0,
        revents: 0,
    }; MAX_DESCRIPTORS];
    if fds.len() > raw.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "poll: more than MAX_DESCRIPTORS descriptors",
        ));
    }
    for (slot, fd) in raw.iter_mut().zip(fds.iter()) {
        slot.fd = match fd.fd {
            Some(borrowed) if fd.events != 0 => borrowed.as_raw_fd(),
            _ => -1,
        };
        slot.events = fd.events;
    }
    // Round up, so a sub-millisecond remainder still waits rather than spinning.
    let millis = timeout.map_or(-1, |t| {
        let rounded = t.as_micros().div_ceil(1000);
        libc::c_int::try_from(rounded).unwrap_or(libc::c_int::MAX)
    });
    let count = libc::nfds_t::try_from(fds.len()).unwrap_or(0);
    let ready = loop {
        // SAFETY: `raw` is a live, writable array of at least `count` `pollfd`s (checked
        // above); the descriptors in it are borrowed (through `fds`) for the call; -1 entries
        // are ignored by the kernel.
        let status = unsafe { libc::poll(raw.as_mut_ptr(), count, millis) };
        match check(status) {
            Ok(ready) => break ready,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    };
    for (fd, slot) in fds.iter_mut().zip(raw.iter()) {
        fd.revents = slot.revents;
    }
    Ok(usize::try_from(ready).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn poll_reports_which_descriptor_is_ready() {
        let (mut a_tx, a_rx) = UnixStream::pair().unwrap();
        let (_b_tx, b_rx) = UnixStream::pair().unwrap();
        let mut fds = [
            PollFd::new(a_rx.as_fd(), READABLE),
            PollFd::new(b_rx.as_fd(), READABLE),
        ];
        assert_eq!(poll(&mut fds, Some(Duration::from_millis(1))).unwrap(), 0);
        assert_eq!(fds.map(|fd| fd.revents), [0, 0]);

        a_tx.write_all(b"x").unwrap();
        assert_eq!(poll(&mut fds, None).unwrap(), 1);
        assert_eq!(fds.map(|fd| fd.revents), [READABLE, 0]);

        // An idle socket is writable at once.
        let mut fds = [PollFd::new(b_rx.as_fd(), WRITABLE)];
        assert_eq!(poll(&mut fds, None).unwrap(), 1);
        assert_eq!(fds[0].revents & WRITABLE, WRITABLE);
    }

    #[test]
    fn a_hang_up_is_reported_and_left_out_descriptors_are_not() {
        let (a, a_peer) = UnixStream::pair().unwrap();
        let (b, b_peer) = UnixStream::pair().unwrap();
        drop((a_peer, b_peer));
        let mut fds = [
            PollFd::new(a.as_fd(), READABLE),
            PollFd {
                fd: Some(b.as_fd()),
                events: 0,
                revents: 0,
            },
        ];
        assert_eq!(poll(&mut fds, None).unwrap(), 1);
        assert_ne!(fds[0].revents & HANG_UP, 0);
        assert_eq!(fds[1].revents, 0);
    }

    #[test]
    fn too_many_descriptors_are_refused() {
        let (a, _peer) = UnixStream::pair().unwrap();
        let mut fds = [PollFd::new(a.as_fd(), READABLE); MAX_DESCRIPTORS + 1];
        let error = poll(&mut fds, None).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    }
}
