//! The bounded accept loop of CCC's small servers (the parent's credentials service, the
//! template enclave's API): one thread per connection, at most a fixed number at once; a
//! connection over the bound is closed at once instead of queueing behind the others.

use super::{Listener, Stream};
use alloc::string::String;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Gives a connection's slot back when its thread ends (or is never started).
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Accepts on `listener` until `accept` fails for good, and returns that error. Each
/// connection runs `handle(stream, peer)` on a thread of its own named `thread_name`; while
/// `max_connections` of them are running, a new connection is closed at once and
/// `turned_away(peer)` is called instead. An aborted connection (`ECONNABORTED`) or a signal
/// (`EINTR`) does not end the loop. Run it on a thread of its own.
pub fn accept_loop<H>(
    listener: &dyn Listener,
    max_connections: usize,
    thread_name: &str,
    turned_away: &dyn Fn(&str),
    handle: H,
) -> io::Error
where
    H: Fn(Stream, &str) + Send + Sync + 'static,
{
    let handle = Arc::new(handle);
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        let stream = match listener.accept_stream() {
            Ok(stream) => stream,
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::ConnectionAborted | io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(error) => return error,
        };
        let peer = stream.describe_peer();
        if open.fetch_add(1, Ordering::SeqCst) >= max_connections {
            open.fetch_sub(1, Ordering::SeqCst);
            drop(stream);
            turned_away(&peer);
            continue;
        }
        let slot = Slot(Arc::clone(&open));
        let handle = Arc::clone(&handle);
        let spawned = std::thread::Builder::new()
            .name(String::from(thread_name))
            .spawn(move || {
                let _slot = slot;
                handle(stream, &peer);
            });
        if let Err(error) = spawned {
            return error;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::VecDeque;
    use alloc::format;
    use alloc::vec::Vec;
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};
    use std::sync::Mutex;
    use std::sync::mpsc::channel;

    /// A listener that plays a script: accepted streams and errors, in order.
    struct Scripted(Mutex<VecDeque<io::Result<Stream>>>);

    impl Listener for Scripted {
        fn accept_stream(&self) -> io::Result<Stream> {
            self.0
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or_else(|| Err(io::Error::other("the script is over")))
        }

        fn describe(&self) -> String {
            "scripted".into()
        }
    }

    #[test]
    fn connections_over_the_bound_are_turned_away_and_accept_errors_end_the_loop() {
        // Two real connections, accepted up front.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let clients: Vec<TcpStream> = (0..2)
            .map(|_| TcpStream::connect(address).unwrap())
            .collect();
        let mut script: VecDeque<io::Result<Stream>> = (0..2)
            .map(|_| Ok(Stream::Tcp(listener.accept().unwrap().0)))
            .collect();
        script.extend([
            Err(io::Error::from(io::ErrorKind::Interrupted)),
            Err(io::Error::from(io::ErrorKind::ConnectionAborted)),
            Err(io::Error::from(io::ErrorKind::PermissionDenied)),
        ]);

        let (started, started_rx) = channel::<(String, Option<String>)>();
        let (release, release_rx) = channel::<()>();
        let release_rx = Mutex::new(release_rx);
        let turned_away = Mutex::new(Vec::new());
        let error = accept_loop(
            &Scripted(Mutex::new(script)),
            1,
            "test-connection",
            &|peer| turned_away.lock().unwrap().push(String::from(peer)),
            move |_stream, peer| {
                let name = std::thread::current().name().map(String::from);
                started.send((String::from(peer), name)).unwrap();
                // Hold the one slot until the test is done.
                let _ = release_rx.lock().unwrap().recv();
            },
        );
        // A signal and an aborted connection are skipped; the next error ends the loop.
        assert_eq!(error.kind(), io::ErrorKind::PermissionDenied);

        // The first connection got the slot and its own named thread ...
        let (peer, thread) = started_rx.recv().unwrap();
        let first = &clients[0];
        assert_eq!(peer, format!("tcp://{}", first.local_addr().unwrap()));
        assert_eq!(thread.as_deref(), Some("test-connection"));
        // ... the second was turned away and closed unanswered.
        let mut second = &clients[1];
        assert_eq!(
            *turned_away.lock().unwrap(),
            [format!("tcp://{}", second.local_addr().unwrap())]
        );
        assert_eq!(second.read(&mut [0u8; 1]).unwrap(), 0);
        release.send(()).unwrap();
    }
}
