//! The listener: start-up (state, certificates, bind), the accept loop with a bounded number of
//! connection threads, each connection's request loop (TLS or plain), and a clean stop that
//! closes every connection and joins every thread.

use crate::http::{self, ReadError};
use crate::service::Service;
use crate::state::Store;
use crate::{Config, EmulatorError, Info, Running, Transport, TrustMode};
use rustls::{ServerConfig, ServerConnection, StreamOwned};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;
use zeroize::Zeroizing;

/// A connection idle this long (no complete request) is closed; it frees its thread.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The connections being served: how many, and a handle on each socket to close it at stop.
struct Connections {
    max: usize,
    state: Mutex<ConnectionState>,
    changed: Condvar,
}

#[derive(Default)]
struct ConnectionState {
    next_id: u64,
    sockets: HashMap<u64, TcpStream>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Connections {
    /// Waits for a free slot; false when the server is stopping.
    fn wait_for_slot(&self, stopping: &AtomicBool) -> bool {
        let mut state = lock(&self.state);
        while state.sockets.len() >= self.max && !stopping.load(Ordering::SeqCst) {
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        !stopping.load(Ordering::SeqCst)
    }

    fn register(&self, socket: TcpStream) -> u64 {
        let mut state = lock(&self.state);
        state.next_id += 1;
        let id = state.next_id;
        state.sockets.insert(id, socket);
        id
    }

    fn release(&self, id: u64) {
        lock(&self.state).sockets.remove(&id);
        self.changed.notify_all();
    }

    /// Closes every socket and waits until every connection thread has released its slot.
    fn close_all(&self) {
        let mut state = lock(&self.state);
        for socket in state.sockets.values() {
            let _ = socket.shutdown(Shutdown::Both);
        }
        while !state.sockets.is_empty() {
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// A running listener.
pub(crate) struct Server {
    addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    connections: Arc<Connections>,
    accept: Option<JoinHandle<()>>,
}

impl Server {
    /// Stops accepting, closes all connections, joins the threads.
    pub(crate) fn stop(mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.connections.changed.notify_all();
        // Wake the blocking accept() with a connection of our own; it sees `stopping`.
        let _ = TcpStream::connect(self.addr);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        self.connections.close_all();
    }
}

/// Builds the state, the TLS configuration and the listener, then starts the accept thread.
pub(crate) fn start(config: Config) -> Result<Running, EmulatorError> {
    let trust = config.trust.roots()?;
    let policy = match &config.policy {
        Some(text) => Some(crate::state::PolicyDoc::parse(text).map_err(EmulatorError::Policy)?),
        None => None,
    };
    let account_policy = match &config.account_policy {
        Some(text) => {
            Some(crate::state::PolicyDoc::parse_account(text).map_err(EmulatorError::Policy)?)
        }
        None => policy.clone(),
    };
    let (mut store, created) = Store::open(&config.state_path, config.region.as_deref())?;
    let changed = !config.credentials.is_empty() || policy.is_some() || account_policy.is_some();
    if changed {
        store
            .update(|state| {
                for credential in &config.credentials {
                    state
                        .credentials
                        .retain(|c| c.access_key_id() != credential.access_key_id());
                    state.credentials.push(credential.clone());
                }
                if let Some(account_policy) = &account_policy {
                    state.account_policy = account_policy.clone();
                }
                if let Some(policy) = &policy {
                    let id = state.default_key_id.clone();
                    if let Some(key) = state.keys.get_mut(&id) {
                        Arc::make_mut(key).policy = policy.clone();
                    }
                }
                Ok(())
            })
            .map_err(|f| EmulatorError::State {
                path: config.state_path.clone(),
                problem: f.message,
            })?;
    }
    let state = &store.state;
    let host = ccc_sdk::kms::endpoint_host(&state.region);
    let ca_der = crate::tls::ca_der(&state.ca)?;
    let ca_path = ca_path(&config.state_path);
    write_public_file(&ca_path, state.ca.certificate_pem.as_bytes())?;
    let tls = match config.transport {
        Transport::Https => Some(crate::tls::server_config(&state.ca, &host)?),
        Transport::InsecureHttp => None,
    };
    let credential = state
        .credentials
        .first()
        .cloned()
        .ok_or_else(|| EmulatorError::State {
            path: config.state_path.clone(),
            problem: "it lists no credentials".into(),
        })?;
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, config.port)).map_err(|source| {
        EmulatorError::Io {
            what: format!("binding 127.0.0.1:{}", config.port),
            source,
        }
    })?;
    let addr = listener.local_addr().map_err(|source| EmulatorError::Io {
        what: "reading the bound address".into(),
        source,
    })?;
    let info = Info {
        addr,
        https: tls.is_some(),
        host: host.clone(),
        region: state.region.clone(),
        account_id: state.account_id.clone(),
        ca_pem: state.ca.certificate_pem.clone(),
        ca_der,
        ca_path,
        state_path: config.state_path.clone(),
        credential,
        default_key_id: state.default_key_id.clone(),
        default_key_arn: state.key_arn(&state.default_key_id),
        trust: config.trust.clone(),
        clock: config.clock.clone(),
    };
    if config.log {
        announce(&config, &info, created);
    }
    let service = Arc::new(Service::new(
        store,
        trust,
        config.trust.clone(),
        config.clock.clone(),
        config.log,
    ));
    let stopping = Arc::new(AtomicBool::new(false));
    let connections = Arc::new(Connections {
        max: config.max_connections.max(1),
        state: Mutex::new(ConnectionState::default()),
        changed: Condvar::new(),
    });
    let accept = {
        let (stopping, connections) = (stopping.clone(), connections.clone());
        std::thread::Builder::new()
            .name("kms-emulator-accept".into())
            .spawn(move || accept_loop(&listener, &service, tls, &stopping, &connections))
            .map_err(|source| EmulatorError::Io {
                what: "starting the accept thread".into(),
                source,
            })?
    };
    Ok(Running {
        server: Some(Server {
            addr,
            stopping,
            connections,
            accept: Some(accept),
        }),
        info,
    })
}

/// `<state>.ca.pem` next to the state file.
fn ca_path(state_path: &std::path::Path) -> std::path::PathBuf {
    let mut name = state_path
        .file_name()
        .map(std::ffi::OsStr::to_os_string)
        .unwrap_or_default();
    name.push(".ca.pem");
    state_path.with_file_name(name)
}

/// Writes a non-secret file (the CA certificate) atomically, mode 0644.
fn write_public_file(path: &std::path::Path, bytes: &[u8]) -> Result<(), EmulatorError> {
    let temporary = path.with_extension(format!("tmp-{}", std::process::id()));
    let written =
        std::fs::write(&temporary, bytes).and_then(|()| std::fs::rename(&temporary, path));
    written.map_err(|source| EmulatorError::Io {
        what: format!("writing {}", path.display()),
        source,
    })
}

fn announce(config: &Config, info: &Info, created: bool) {
    let verb = if created { "created" } else { "loaded" };
    eprintln!(
        "kms-emulator: DEVELOPMENT ONLY: keys, credentials and the CA key are stored in \
         PLAINTEXT in {} ({verb})",
        info.state_path.display()
    );
    if config.transport == Transport::InsecureHttp {
        eprintln!(
            "kms-emulator: WARNING: INSECURE PLAIN HTTP on {}: requests, plaintexts and data \
             keys cross the loopback interface unencrypted",
            info.addr
        );
    }
    announce_trust(&config.trust);
}

fn announce_trust(trust: &TrustMode) {
    match trust {
        TrustMode::AnyOf(members) => {
            eprintln!(
                "kms-emulator: trust mode any-of: a Recipient document may chain to any of {} \
                 roots:",
                members.len()
            );
            for member in members {
                announce_trust(member);
            }
        }
        TrustMode::InsecureQemuUnsigned => eprintln!(
            "kms-emulator: WARNING: TRUST MODE INSECURE-qemu-unsigned: Recipient attestation \
             documents are NOT SIGNED and prove nothing; any process can forge one. Local \
             emulation only."
        ),
        TrustMode::DevelopmentRoot { .. } => eprintln!(
            "kms-emulator: trust mode development-root: Recipient documents must chain to the \
             given development root (e.g. the NSM simulator's), not AWS"
        ),
        TrustMode::AwsNitro => eprintln!(
            "kms-emulator: trust mode aws: Recipient documents must chain to AWS Nitro \
             Enclaves Root G1"
        ),
    }
}

fn accept_loop(
    listener: &TcpListener,
    service: &Arc<Service>,
    tls: Option<Arc<ServerConfig>>,
    stopping: &AtomicBool,
    connections: &Arc<Connections>,
) {
    while connections.wait_for_slot(stopping) {
        let (stream, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(e) => {
                if service.logging() {
                    eprintln!("kms-emulator: accept failed: {e}");
                }
                continue;
            }
        };
        if stopping.load(Ordering::SeqCst) {
            break;
        }
        let Ok(handle) = stream.try_clone() else {
            continue;
        };
        let id = connections.register(handle);
        let (service, tls, finished) = (service.clone(), tls.clone(), connections.clone());
        let spawned = std::thread::Builder::new()
            .name("kms-emulator-conn".into())
            .spawn(move || {
                serve(stream, peer, &service, tls);
                // Let go of the service (and with the last reference, the state file's lock)
                // before `stop` can see this connection gone.
                drop(service);
                finished.release(id);
            });
        if spawned.is_err() {
            connections.release(id);
        }
    }
}

fn serve(stream: TcpStream, peer: SocketAddr, service: &Service, tls: Option<Arc<ServerConfig>>) {
    let _ = stream.set_read_timeout(Some(IDLE_TIMEOUT));
    let _ = stream.set_nodelay(true);
    match tls {
        Some(config) => {
            let Ok(connection) = ServerConnection::new(config) else {
                return;
            };
            let mut tls_stream = StreamOwned::new(connection, stream);
            requests(&mut tls_stream, peer, service, true);
            tls_stream.conn.send_close_notify();
            let _ = tls_stream.flush();
        }
        None => {
            let mut plain = stream;
            requests(&mut plain, peer, service, false);
        }
    }
}

fn requests<S: Read + Write>(stream: &mut S, peer: SocketAddr, service: &Service, tls: bool) {
    let mut buffer = Zeroizing::new(Vec::new());
    let mut served = 0u64;
    loop {
        match http::read_request(stream, &mut buffer) {
            Ok(request) => {
                served += 1;
                let reply = service.handle(&request);
                let headers = [
                    ("x-amzn-RequestId", reply.request_id.as_str()),
                    ("Content-Type", "application/x-amz-json-1.1"),
                    ("Date", reply.date.as_str()),
                ];
                let sent = http::write_response(
                    stream,
                    reply.status,
                    &headers,
                    &reply.body,
                    request.keep_alive,
                );
                if sent.is_err() || !request.keep_alive {
                    return;
                }
            }
            Err(ReadError::Closed) => return,
            Err(ReadError::Io(e)) => {
                // A failed handshake on the first read usually means the client does not
                // trust the emulator's CA; say so once.
                if tls
                    && served == 0
                    && service.logging()
                    && e.kind() == std::io::ErrorKind::InvalidData
                {
                    eprintln!(
                        "kms-emulator: TLS with {peer} failed: {e} (does the client trust the \
                         emulator's CA, and use the name kms.<region>.amazonaws.com, localhost \
                         or 127.0.0.1?)"
                    );
                }
                return;
            }
            Err(ReadError::Refused(status, why)) => {
                let fault = crate::fault::Fault {
                    code: "ValidationException",
                    message: format!("the emulator refused the HTTP request: {why}"),
                    status,
                };
                let reply = service.refusal(&fault);
                let headers = [
                    ("x-amzn-RequestId", reply.request_id.as_str()),
                    ("Content-Type", "application/x-amz-json-1.1"),
                    ("Date", reply.date.as_str()),
                ];
                let _ = http::write_response(stream, status, &headers, &reply.body, false);
                return;
            }
        }
    }
}
