//! `epoll(7)`: one descriptor that reports which of many registered descriptors are ready,
//! for the parent's proxy event loop. Registrations carry a `u64` token of the caller's
//! choosing, returned with each event.

use crate::check;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// A set of `epoll` event bits.
pub type Interest = u32;

/// Data can be read, end of file was reached, or a listener has a connection to accept.
// The libc constants are `c_int`; every one of these is a small positive bit.
pub const READABLE: Interest = libc::EPOLLIN as Interest;
/// Data can be written without blocking (or a non-blocking `connect` finished).
pub const WRITABLE: Interest = libc::EPOLLOUT as Interest;
/// The peer shut down its sending side (reported only when asked for).
pub const READ_HANG_UP: Interest = libc::EPOLLRDHUP as Interest;
/// Both directions are shut down (always reported).
pub const HANG_UP: Interest = libc::EPOLLHUP as Interest;
/// An error is pending on the descriptor (always reported).
pub const ERROR: Interest = libc::EPOLLERR as Interest;
/// Edge-triggered: an event is reported when readiness changes, not as long as it lasts.
pub const EDGE: Interest = libc::EPOLLET as Interest;

/// Most events one [`Epoll::wait`] returns; more ready descriptors wait for the next call.
pub const MAX_EVENTS: usize = 256;

/// One ready descriptor: its registration's token and what happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    /// The token given to [`Epoll::add`].
    pub token: u64,
    /// [`READABLE`], [`WRITABLE`], [`READ_HANG_UP`], [`HANG_UP`], [`ERROR`].
    pub events: Interest,
}

/// The events of one [`Epoll::wait`], reused from call to call.
pub struct Events {
    raw: Vec<libc::epoll_event>,
    len: usize,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Default for Events {
    fn default() -> Self {
        Self {
            raw: vec![libc::epoll_event { events: 0, u64: 0 }; MAX_EVENTS],
            len: 0,
        }
    }
}

impl Events {
    /// The events the last [`Epoll::wait`] returned.
    pub fn iter(&self) -> impl Iterator<Item = Event> + '_ {
        self.raw.iter().take(self.len).map(|raw| {
            // Copies out of the (packed, on x86_64) kernel struct: no reference to a field.
            let (token, events) = (raw.u64, raw.events);
            Event { token, events }
        })
    }

    /// How many there are.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none (the wait timed out).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// An epoll instance (close-on-exec), closed on drop. A registered descriptor leaves it when
/// [`Epoll::delete`] is called or when its last copy is closed.
#[derive(Debug)]
pub struct Epoll(OwnedFd);

impl Epoll {
    /// `epoll_create1(EPOLL_CLOEXEC)`.
    ///
    /// # Errors
    /// The `epoll_create1` failure (the open-file limit).
    pub fn new() -> io::Result<Self> {
        // SAFETY: no pointers; the flag is valid.
        let fd = check(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: `epoll_create1` has just returned `fd`: it is open and nothing else owns
        // it, so `OwnedFd` may close it on drop.
        Ok(Self(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn control(
        &self,
        operation: libc::c_int,
        fd: BorrowedFd<'_>,
        interest: Interest,
        token: u64,
    ) -> io::Result<()> {
        let mut event = libc::epoll_event {
            events: interest,
            u64: token,
        };
        // SAFETY: `event` is a live `epoll_event` the kernel only reads (and ignores for
        // `EPOLL_CTL_DEL`); both descriptors are borrowed for the call.
        let status = unsafe {
            libc::epoll_ctl(
                self.0.as_raw_fd(),
                operation,
                fd.as_raw_fd(),
                &raw mut event,
            )
        };
        check(status)?;
        Ok(())
    }

    /// Registers `fd` for `interest` (with [`EDGE`] for edge-triggered), reported with `token`.
    ///
    /// # Errors
    /// `EEXIST` when already registered; `EPERM` for a descriptor epoll cannot watch (a
    /// regular file).
    pub fn add(&self, fd: BorrowedFd<'_>, interest: Interest, token: u64) -> io::Result<()> {
        self.control(libc::EPOLL_CTL_ADD, fd, interest, token)
    }

    /// Changes the interest and token of a registered `fd`.
    ///
    /// # Errors
    /// `ENOENT` when `fd` is not registered.
    pub fn modify(&self, fd: BorrowedFd<'_>, interest: Interest, token: u64) -> io::Result<()> {
        self.control(libc::EPOLL_CTL_MOD, fd, interest, token)
    }

    /// Removes `fd` (closing it does too, when no other copy of it is open).
    ///
    /// # Errors
    /// `ENOENT` when `fd` is not registered.
    pub fn delete(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        self.control(libc::EPOLL_CTL_DEL, fd, 0, 0)
    }

    /// Waits until a registered descriptor is ready or `timeout` passes (`None`: no timeout;
    /// a sub-millisecond remainder is rounded up, so a deadline is never woken early); fills
    /// `events` and returns how many (0: the timeout passed). `EINTR` counts as a timeout: the
    /// caller looks at its deadlines again.
    ///
    /// # Errors
    /// The `epoll_wait` failure.
    pub fn wait(&self, events: &mut Events, timeout: Option<Duration>) -> io::Result<usize> {
        let millis = timeout.map_or(-1, |t| {
            libc::c_int::try_from(t.as_micros().div_ceil(1000)).unwrap_or(libc::c_int::MAX)
        });
        let capacity = libc::c_int::try_from(events.raw.len()).unwrap_or(libc::c_int::MAX);
        // SAFETY: `events.raw` is a live, writable array of `capacity` `epoll_event`s; the
        // kernel writes at most that many. The epoll descriptor is owned by `self`.
        let status = unsafe {
            libc::epoll_wait(
                self.0.as_raw_fd(),
                events.raw.as_mut_ptr(),
                capacity,
                millis,
            )
        };
        events.len = match check(status) {
            Ok(ready) => usize::try_from(ready).unwrap_or(0),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
            Err(e) => return Err(e),
        };
        Ok(events.len)
    }
}

impl AsFd for Epoll {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    #[test]
    fn abi_numbers_match_the_kernel_headers() {
        // include/uapi/linux/eventpoll.h and include/uapi/asm-generic/poll.h.
        assert_eq!(
            (READABLE, WRITABLE, ERROR, HANG_UP, READ_HANG_UP, EDGE),
            (0x1, 0x4, 0x8, 0x10, 0x2000, 1 << 31)
        );
    }

    #[test]
    fn events_carry_the_token_and_edges_fire_once_per_change() {
        let epoll = Epoll::new().unwrap();
        let (mut a, a_peer) = UnixStream::pair().unwrap();
        let (_b, b_peer) = UnixStream::pair().unwrap();
        epoll.add(a_peer.as_fd(), READABLE | EDGE, 7).unwrap();
        epoll.add(b_peer.as_fd(), READABLE, 9).unwrap();
        let mut events = Events::default();
        assert_eq!(
            epoll
                .wait(&mut events, Some(Duration::from_millis(1)))
                .unwrap(),
            0
        );
        assert!(events.is_empty());

        a.write_all(b"x").unwrap();
        assert_eq!(epoll.wait(&mut events, None).unwrap(), 1);
        assert_eq!(
            events.iter().collect::<Vec<_>>(),
            [Event {
                token: 7,
                events: READABLE
            }]
        );
        // Edge-triggered: the byte is still unread, yet no new event until more arrives.
        assert_eq!(epoll.wait(&mut events, Some(Duration::ZERO)).unwrap(), 0);
        a.write_all(b"y").unwrap();
        assert_eq!(epoll.wait(&mut events, None).unwrap(), 1);
        let mut two = [0u8; 2];
        (&a_peer).read_exact(&mut two).unwrap();
        assert_eq!(&two, b"xy");

        // Interest changed to writable: reported at once (the socket has room).
        epoll.modify(a_peer.as_fd(), WRITABLE | EDGE, 8).unwrap();
        assert_eq!(epoll.wait(&mut events, None).unwrap(), 1);
        assert_eq!(events.iter().next().map(|e| e.token), Some(8));
        // A hang-up is reported without being asked for.
        epoll.delete(a_peer.as_fd()).unwrap();
        drop(a);
        drop(b_peer);
        assert_eq!(
            epoll
                .wait(&mut events, Some(Duration::from_millis(1)))
                .unwrap(),
            0,
            "deleted and closed descriptors report nothing"
        );
        assert_eq!(
            epoll.delete(a_peer.as_fd()).unwrap_err().raw_os_error(),
            Some(libc::ENOENT)
        );
    }

    #[test]
    fn a_hang_up_is_reported_without_being_asked_for() {
        let epoll = Epoll::new().unwrap();
        let (a, a_peer) = UnixStream::pair().unwrap();
        epoll.add(a_peer.as_fd(), READABLE | EDGE, 1).unwrap();
        drop(a);
        let mut events = Events::default();
        assert_eq!(epoll.wait(&mut events, None).unwrap(), 1);
        let event = events.iter().next().unwrap();
        assert_ne!(event.events & HANG_UP, 0, "{event:?}");
    }
}
