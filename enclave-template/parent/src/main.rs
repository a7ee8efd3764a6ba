//! `ccc-template-parent`: the parent instance's side of the enclave template. `run` starts
//! the KMS proxy, the credentials service and the log channel together (plus the metrics
//! endpoint with `--metrics-listen`); `proxy` and `credentials` start one; `client` calls the
//! enclave's API. SIGHUP reloads the allowlist; SIGTERM drains.
// Bytes from peers (the enclave, the parent, KMS clients, the kernel command line) are read
// with get()/split_first()/cursors: indexing that could panic is an error outside tests.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use anyhow::{Context, Result, bail};
use ccc_sdk::credentials::parent::AllowedPeers;
use ccc_template_parent::allowlist::{Allowlist, Resolver, SystemResolver, TableResolver};
use ccc_template_parent::client::{self, Outcome};
use ccc_template_parent::credentials::{self, Source};
use ccc_template_parent::heartbeat;
use ccc_template_parent::logs::{self, Journal};
use ccc_template_parent::metrics::{self, Health};
use ccc_template_parent::net::Family;
use ccc_template_parent::proxy::{Limits, Proxy, Route};
use ccc_template_parent::service::{Log, Services};
use clap::{Parser, Subcommand};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// vsock-proxy's default allowlist file.
const DEFAULT_ALLOWLIST: &str = "/etc/nitro_enclaves/vsock-proxy.yaml";

#[derive(Debug, Parser)]
#[command(
    name = "ccc-template-parent",
    about = "The parent side of a CCC enclave: KMS proxy, credentials service, API client",
    version
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The proxy and the credentials service together (what a parent instance runs), plus
    /// the heartbeat with --heartbeat (QEMU emulation). Stops cleanly on SIGINT/SIGTERM.
    Run {
        #[command(flatten)]
        listen: ListenArgs,
        #[command(flatten)]
        proxy: ProxyArgs,
        #[command(flatten)]
        credentials: CredentialsArgs,
        /// Do not serve credentials.
        #[arg(long)]
        no_credentials: bool,
        #[command(flatten)]
        observe: ObserveArgs,
        /// Answer the enclave-ready heartbeat on port 9000 (QEMU emulation; on Nitro,
        /// nitro-cli does).
        #[arg(long)]
        heartbeat: bool,
    },
    /// Only the proxy.
    Proxy {
        #[command(flatten)]
        listen: ListenArgs,
        #[command(flatten)]
        proxy: ProxyArgs,
    },
    /// Only the credentials service.
    Credentials {
        #[command(flatten)]
        listen: ListenArgs,
        #[command(flatten)]
        credentials: CredentialsArgs,
    },
    /// Call the enclave's API and print the answer as JSON.
    Client(client::Args),
}

#[derive(Debug, clap::Args)]
struct ListenArgs {
    /// Where to listen: `vsock` (a Nitro parent), `uds:<uds-path>` (vhost-device-vsock's
    /// Unix-socket backend: port P is `<uds-path>_P`), or `tcp:<address>` (development).
    #[arg(long, default_value = "vsock", value_name = "FAMILY")]
    listen: Family,
    /// Seconds that connections in flight may take to finish after SIGINT/SIGTERM.
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS")]
    drain_timeout: f64,
    /// Log only refusals and errors, not every connection.
    #[arg(long)]
    quiet: bool,
}

#[derive(Debug, clap::Args)]
struct ProxyArgs {
    /// The region: adds the route 8000=kms.<region>.amazonaws.com:443 (vsock-proxy's KMS
    /// service), unless a --route for port 8000 is given.
    #[arg(long)]
    region: Option<String>,
    /// A route, LOCAL_PORT=HOST:PORT (repeatable): connections to LOCAL_PORT go to
    /// HOST:PORT, which the allowlist must admit.
    #[arg(long = "route", value_name = "PORT=HOST:PORT")]
    routes: Vec<Route>,
    /// Also serve HTTP CONNECT on this port; every CONNECT target is checked against the
    /// allowlist.
    #[arg(long, value_name = "PORT")]
    connect_port: Option<u32>,
    /// The allowlist, vsock-proxy's YAML format.
    #[arg(long, default_value = DEFAULT_ALLOWLIST, value_name = "FILE")]
    allowlist: PathBuf,
    /// Proxied connections at once; more are refused.
    #[arg(long, default_value_t = 1024)]
    max_connections: usize,
    /// Seconds to connect upstream.
    #[arg(long, default_value_t = 5.0, value_name = "SECONDS")]
    connect_timeout: f64,
    /// Seconds a connection may be idle (nothing moving either way) before it is closed.
    #[arg(long, default_value_t = 300.0, value_name = "SECONDS")]
    idle_timeout: f64,
    /// Event-loop threads holding the proxied connections (0: one per core).
    #[arg(long, default_value_t = 0, value_name = "N")]
    relay_threads: usize,
    /// Resolve HOST to these addresses instead of asking DNS (repeatable; like curl's
    /// --resolve): HOST=IP[,IP...].
    #[arg(long = "resolve", value_name = "HOST=IP,...")]
    resolve: Vec<String>,
}

#[derive(Debug, clap::Args)]
struct ObserveArgs {
    /// The log channel's port (the enclave's CCC_APP_LOG_PORT): the enclave's records arrive
    /// there and are written to stdout as JSON lines.
    #[arg(long, default_value_t = ccc_sdk::log::DEFAULT_PORT, value_name = "PORT")]
    log_port: u32,
    /// Do not listen for the enclave's records.
    #[arg(long)]
    no_log_channel: bool,
    /// Serve /metrics (Prometheus text), /healthz and /livez on this loopback address
    /// (e.g. 127.0.0.1:9110; port 0 picks one and prints it).
    #[arg(long, value_name = "ADDRESS:PORT")]
    metrics_listen: Option<SocketAddr>,
    /// /healthz: the longest time without a record from the enclave (it sends a heartbeat
    /// every 10 s).
    #[arg(long, default_value_t = 30.0, value_name = "SECONDS")]
    health_heartbeat_max: f64,
    /// /healthz: how far back the last KMS call counts; a failure in it makes the enclave not
    /// ready.
    #[arg(long, default_value_t = 300.0, value_name = "SECONDS")]
    health_kms_window: f64,
}

#[derive(Debug, clap::Args)]
struct CredentialsArgs {
    /// Where credentials come from: auto (environment if AWS_ACCESS_KEY_ID is set, else
    /// IMDS), imds, imds:http://HOST:PORT, environment, file:PATH (IMDS-style JSON).
    #[arg(long = "credentials", default_value = "auto", value_name = "SOURCE")]
    source: Source,
    /// The credentials service's port (the enclave's CCC_APP_CREDENTIALS_PORT).
    #[arg(long, default_value_t = ccc_sdk::credentials::protocol::DEFAULT_PORT)]
    credentials_port: u32,
    /// Which vsock peers get credentials: `any` enclave (CID 4 or more; 0-2 are the
    /// hypervisor, loopback and host, 3 the parent itself), or one enclave's CID (from
    /// `nitro-cli describe-enclaves`). Others are logged and closed unanswered. A CID also tags
    /// the log channel's records arriving where it cannot be read from the connection
    /// (vhost-device-vsock's Unix sockets, TCP); on vsock the connection's own CID is used.
    #[arg(long, default_value = "any", value_name = "CID")]
    enclave_cid: AllowedPeers,
}

fn seconds(value: f64, flag: &str) -> Result<Duration> {
    Duration::try_from_secs_f64(value).with_context(|| format!("{flag} {value}"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("ccc-parent: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Client(args) => match client::run(&args)? {
            Outcome::Answer(value) => {
                println!("{value}");
                Ok(ExitCode::SUCCESS)
            }
            Outcome::Refused(value) => {
                println!("{value}");
                Ok(ExitCode::from(2))
            }
        },
        Command::Run {
            listen,
            proxy,
            credentials,
            no_credentials,
            observe,
            heartbeat,
        } => {
            // One `--enclave-cid` for both: the credentials service's allowed peer and the tag
            // of log records whose connection shows no CID (also with --no-credentials).
            let record_cid = match credentials.enclave_cid {
                AllowedPeers::Cid(cid) => Some(cid),
                _ => None,
            };
            serve(
                &listen,
                Some(&proxy),
                (!no_credentials).then_some(&credentials),
                Some((&observe, record_cid)),
                heartbeat,
            )
        }
        Command::Proxy { listen, proxy } => serve(&listen, Some(&proxy), None, None, false),
        Command::Credentials {
            listen,
            credentials,
        } => serve(&listen, None, Some(&credentials), None, false),
    }
}

fn resolver(pins: &[String]) -> Result<Arc<dyn Resolver>> {
    if pins.is_empty() {
        return Ok(Arc::new(SystemResolver));
    }
    let table = TableResolver::default();
    for pin in pins {
        let (host, addresses) = pin
            .split_once('=')
            .with_context(|| format!("--resolve {pin}: expected HOST=IP[,IP...]"))?;
        let addresses = addresses
            .split(',')
            .map(|a| a.parse::<IpAddr>())
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("--resolve {pin}: not an IP address"))?;
        table.set(host, addresses);
    }
    Ok(Arc::new(table))
}

fn serve(
    listen: &ListenArgs,
    proxy: Option<&ProxyArgs>,
    credentials: Option<&CredentialsArgs>,
    observe: Option<(&ObserveArgs, Option<u32>)>,
    heartbeat: bool,
) -> Result<ExitCode> {
    let log = Log::stderr(!listen.quiet);
    match ccc_sys::process::raise_open_files_limit() {
        Ok((before, after)) if after > before => log.line(format_args!(
            "open-file limit raised from {before} to {after}"
        )),
        Ok(_) => {}
        Err(e) => log.line(format_args!("cannot raise the open-file limit: {e}")),
    }
    let mut services = Services::new(log.clone())?;
    services.shutdown().on_signals(&log)?;

    if let Some(args) = proxy {
        let mut routes = args.routes.clone();
        if let Some(region) = &args.region
            && !routes
                .iter()
                .any(|r| r.port == ccc_sdk::net::KMS_PROXY_PORT)
        {
            routes.push(Route {
                port: ccc_sdk::net::KMS_PROXY_PORT,
                host: ccc_sdk::kms::endpoint_host(region),
                remote_port: 443,
            });
        }
        if routes.is_empty() && args.connect_port.is_none() {
            bail!(
                "the proxy has nothing to serve: give --region REGION (KMS on port 8000), \
                 --route PORT=HOST:PORT or --connect-port PORT"
            );
        }
        let allowlist = Allowlist::load(&args.allowlist).context("the allowlist")?;
        let limits = Limits {
            max_connections: args.max_connections.max(1),
            connect_timeout: seconds(args.connect_timeout, "--connect-timeout")?,
            idle_timeout: seconds(args.idle_timeout, "--idle-timeout")?,
            relay_threads: args.relay_threads,
        };
        let proxy = Proxy::new(allowlist, resolver(&args.resolve)?, limits, &services);
        let reloading = Arc::clone(&proxy);
        let path = args.allowlist.clone();
        let reload_log = log.clone();
        services.shutdown().on_reload(Box::new(move || {
            let previous = reloading.allowlist().entries().len();
            match reloading.reload(&path) {
                Ok((_, after)) => reload_log.line(format_args!(
                    "SIGHUP: allowlist reloaded from {}: {after} entries (was {previous})",
                    path.display()
                )),
                Err(e) => reload_log.line(format_args!(
                    "SIGHUP: allowlist {} NOT reloaded, keeping the previous {previous} \
                     entries: {e}",
                    path.display()
                )),
            }
        }));
        for route in routes {
            let admitted = proxy.check_route(&route).map_err(|refusal| {
                anyhow::anyhow!(
                    "route {route} is refused by {}: {refusal}",
                    args.allowlist.display()
                )
            })?;
            let listener = listen.listen.bind(route.port)?;
            log.line(format_args!(
                "proxy {route} on {} (admitted now: {})",
                listener.describe(),
                admitted
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            proxy.serve_route(&mut services, listener, route)?;
        }
        if let Some(port) = args.connect_port {
            let listener = listen.listen.bind(port)?;
            log.line(format_args!(
                "proxy CONNECT on {} (targets checked against {})",
                listener.describe(),
                args.allowlist.display()
            ));
            proxy.serve_connect(&mut services, listener)?;
        }
    }
    if let Some(args) = credentials {
        let source = args.source.open().map_err(|e| anyhow::anyhow!("{e}"))?;
        log.line(format_args!("credentials from {}", source.describe()));
        let listener = listen.listen.bind(args.credentials_port)?;
        let peers = match &listen.listen {
            Family::Vsock => format!("for {}", args.enclave_cid),
            Family::Uds(_) => "for the guest of vhost-device-vsock (its guest-cid; no CID \
                               reaches this socket, whose mode 0600 admits this user only)"
                .to_owned(),
            Family::Tcp(_) => "for any TCP peer (development: no CID to check)".to_owned(),
        };
        log.line(format_args!(
            "credentials on {} {peers}",
            listener.describe()
        ));
        let provider = credentials::counted_provider(source, Arc::clone(services.metrics()));
        credentials::serve(&mut services, listener, provider, args.enclave_cid)?;
    }
    if let Some((args, record_cid)) = observe {
        if !args.no_log_channel {
            let listener = listen.listen.bind(args.log_port)?;
            log.line(format_args!(
                "log channel on {} (the enclave's records, as JSON lines on stdout)",
                listener.describe()
            ));
            logs::serve(
                &mut services,
                listener,
                Arc::new(Journal::stdout()),
                record_cid,
            )?;
        }
        if let Some(address) = args.metrics_listen {
            let address = metrics::check_listen(address).map_err(|e| anyhow::anyhow!(e))?;
            let listener = TcpListener::bind(address)
                .with_context(|| format!("--metrics-listen {address}"))?;
            log.line(format_args!(
                "metrics on http://{}/metrics (and /healthz, /livez)",
                listener.local_addr()?
            ));
            let health = Health {
                heartbeat_max: seconds(args.health_heartbeat_max, "--health-heartbeat-max")?,
                kms_window: seconds(args.health_kms_window, "--health-kms-window")?,
            };
            metrics::serve(&mut services, listener, health)?;
        }
    }
    if heartbeat {
        let listener = listen.listen.bind(heartbeat::PORT)?;
        log.line(format_args!("heartbeat on {}", listener.describe()));
        heartbeat::serve(&mut services, listener)?;
    }
    log.line(format_args!("ready"));
    let drain = seconds(listen.drain_timeout, "--drain-timeout")?;
    let _cut = services.run_until_stopped(drain);
    Ok(ExitCode::SUCCESS)
}
