//! The proxy's allowlist: nitro-cli vsock-proxy's YAML format, and the rule deciding whether
//! one connection may go to one address.
//!
//! # File format (vsock-proxy's `--config`)
//! ```yaml
//! allowlist:
//! - {address: kms.eu-west-1.amazonaws.com, port: 443}
//! - address: kms-fips.eu-west-1.amazonaws.com
//!   port: 443
//! - {address: 10.0.0.12, port: 8443}
//! ```
//! Read with a small YAML subset parser: one top-level key `allowlist`, a sequence (block or
//! flow `[...]`) of mappings with `address` and `port`, written as flow mappings `{...}` or
//! block mappings; comments, quoted scalars and `---` are accepted. Anything else is an error
//! naming the line, never silently skipped: a mistyped key must not leave the proxy open.
//!
//! # The rule
//! A connection to `host:port` is admitted through an address `ip` when an entry has the same
//! `port` and
//! 1. the entry's address is the same host name (case-insensitive, trailing dot ignored), or
//! 2. the entry's address is the IP address `ip`, or
//! 3. the entry's address is a host name that resolves (now) to `ip`,
//!
//! except that an address reached through a name (1, 3) may not be loopback, link-local
//! (IMDS is 169.254.169.254), unspecified, in `0.0.0.0/8`, multicast or broadcast, nor one of
//! the services EC2 puts on the instance's IPv6 link (IMDS `fd00:ec2::254`, DNS
//! `fd00:ec2::253`, NTP `fd00:ec2::123`): DNS must not turn an allowed name into a path to
//! the parent's own services ([`special`]). Such addresses need an entry with the literal IP. Names are resolved again for every connection (as vsock-proxy re-resolves
//! when a record expires), and only admitted addresses are connected to, so a name whose
//! records change to something not allowed is refused on the next connection.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

/// Why an allowlist cannot be used: the file, a line that breaks vsock-proxy's format, or an
/// address. A mistyped allowlist is refused whole, never half-read.
#[derive(Debug)]
#[non_exhaustive]
pub enum AllowlistError {
    /// The file cannot be read.
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        error: io::Error,
    },
    /// The file is larger than [`MAX_FILE_LEN`].
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its length.
        len: usize,
    },
    /// The file is not UTF-8.
    NotUtf8 {
        /// The file.
        path: PathBuf,
    },
    /// A line breaks the format (see the module docs).
    Syntax {
        /// The file, when read from one.
        path: Option<PathBuf>,
        /// The line (1-based; 0 for the file as a whole).
        line: usize,
        /// What is wrong.
        problem: String,
    },
    /// Text that is neither a host name nor an IP address.
    Address {
        /// The text.
        text: String,
    },
}

impl fmt::Display for AllowlistError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read { path, error } => write!(f, "cannot read {}: {error}", path.display()),
            Self::TooLarge { path, len } => write!(
                f,
                "{}: {len} bytes, more than the {MAX_FILE_LEN} read; an allowlist is a few \
                 KiB",
                path.display()
            ),
            Self::NotUtf8 { path } => write!(f, "{}: not UTF-8", path.display()),
            Self::Syntax {
                path,
                line,
                problem,
            } => {
                if let Some(path) = path {
                    write!(f, "{}: ", path.display())?;
                }
                if *line > 0 {
                    write!(f, "line {line}: ")?;
                }
                write!(
                    f,
                    "{problem} (vsock-proxy's allowlist format: `allowlist:` then a list of \
                     `{{address: HOST, port: PORT}}`)"
                )
            }
            Self::Address { text } => {
                write!(f, "`{text}` is not a host name or IP address")
            }
        }
    }
}

impl core::error::Error for AllowlistError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Read { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// Largest allowlist file read (vsock-proxy's default file, every region's KMS and KMS-FIPS
/// endpoint, is about 3 KiB).
pub const MAX_FILE_LEN: usize = 1 << 20;

/// Longest host name (RFC 1035 §2.3.4: 255 octets on the wire, 253 as text).
pub const MAX_HOST_LEN: usize = 253;

/// An entry's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// A host name (lower case, no trailing dot).
    Name(String),
    /// An IP address.
    Ip(IpAddr),
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Name(name) => f.write_str(name),
            Self::Ip(ip) => ip.fmt(f),
        }
    }
}

impl Address {
    /// Parses a host name or IP address (IPv6 with or without brackets).
    ///
    /// # Errors
    /// [`AllowlistError::Address`] for an empty, over-long or malformed name.
    pub fn parse(text: &str) -> Result<Self, AllowlistError> {
        let bare = text
            .strip_prefix('[')
            .and_then(|t| t.strip_suffix(']'))
            .unwrap_or(text);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(Self::Ip(ip));
        }
        let name = text.strip_suffix('.').unwrap_or(text).to_ascii_lowercase();
        let valid = !name.is_empty()
            && name.len() <= MAX_HOST_LEN
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if valid {
            Ok(Self::Name(name))
        } else {
            Err(AllowlistError::Address {
                text: text.to_owned(),
            })
        }
    }
}

/// One allowed destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Host name or IP.
    pub address: Address,
    /// TCP port.
    pub port: u16,
    /// The line it was read from (0 when built in code).
    pub line: usize,
}

/// Resolves host names (the system resolver in the binary; a table in tests).
pub trait Resolver: Send + Sync + fmt::Debug {
    /// The addresses of `host`.
    ///
    /// # Errors
    /// The resolver's failure.
    fn resolve(&self, host: &str) -> io::Result<Vec<IpAddr>>;
}

/// The system resolver (`getaddrinfo`), asked afresh each time.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl Resolver for SystemResolver {
    fn resolve(&self, host: &str) -> io::Result<Vec<IpAddr>> {
        Ok((host, 0u16).to_socket_addrs()?.map(|a| a.ip()).collect())
    }
}

/// Fixed answers for some names, the system resolver for the rest (`--resolve`, tests).
#[derive(Debug, Default)]
pub struct TableResolver {
    table: std::sync::RwLock<std::collections::BTreeMap<String, Vec<IpAddr>>>,
}

impl TableResolver {
    /// Makes `host` resolve to `addresses` (replacing earlier answers; empty: "no such name").
    pub fn set(&self, host: &str, addresses: Vec<IpAddr>) {
        self.table
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(host.to_ascii_lowercase(), addresses);
    }
}

impl Resolver for TableResolver {
    fn resolve(&self, host: &str) -> io::Result<Vec<IpAddr>> {
        let table = self
            .table
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match table.get(&host.to_ascii_lowercase()) {
            Some(addresses) if addresses.is_empty() => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{host}: no such name (resolver table)"),
            )),
            Some(addresses) => Ok(addresses.clone()),
            None => SystemResolver.resolve(host),
        }
    }
}

/// Why a destination was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// No entry has this port.
    Port {
        /// The destination host.
        host: String,
        /// The port.
        port: u16,
    },
    /// The destination is not a valid host name or address.
    BadHost {
        /// What was asked for.
        host: String,
    },
    /// The host name did not resolve.
    Resolve {
        /// The host.
        host: String,
        /// The resolver's message.
        error: String,
    },
    /// The host (or what it resolves to now) matches no entry for the port.
    NotAllowed {
        /// The host.
        host: String,
        /// The port.
        port: u16,
        /// What it resolved to, each with why it was refused.
        addresses: Vec<(IpAddr, Unadmitted)>,
    },
}

/// Why one address of a destination was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unadmitted {
    /// No entry for the port names it, or a name resolving to it.
    NoEntry,
    /// It was reached through a name, and it is of a kind (see [`special`]) that only an
    /// entry with the literal IP admits.
    Special(&'static str),
}

impl fmt::Display for Unadmitted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoEntry => f.write_str("matches no allowlist entry for this port"),
            Self::Special(kind) => write!(
                f,
                "is {kind}: reachable only through an entry with that literal IP"
            ),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Port { host, port } => write!(
                f,
                "{host}:{port} is not allowed: no allowlist entry has port {port}"
            ),
            Self::BadHost { host } => write!(
                f,
                "`{}` is not a host name or IP address",
                host.chars().take(80).collect::<String>()
            ),
            Self::Resolve { host, error } => {
                write!(f, "{host} does not resolve ({error}); refused")
            }
            Self::NotAllowed {
                host,
                port,
                addresses,
            } => {
                write!(f, "{host}:{port} is not allowed:")?;
                for (i, (ip, why)) in addresses.iter().enumerate() {
                    write!(f, "{} {ip} {why}", if i == 0 { "" } else { ";" })?;
                }
                Ok(())
            }
        }
    }
}

/// The EC2 instance metadata service on the instance's IPv6 link (Nitro instances; the IPv4
/// address is link-local, 169.254.169.254). EC2 User Guide, "Access instance metadata for an
/// EC2 instance": `http://[fd00:ec2::254]`.
pub const EC2_IMDS_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);

/// The Amazon DNS server (Route 53 Resolver) on the instance's IPv6 link: `fd00:ec2::253`
/// (Amazon VPC User Guide, "Amazon DNS server"; IPv4: 169.254.169.253).
pub const EC2_DNS_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x253);

/// The Amazon Time Sync Service on the instance's IPv6 link: `fd00:ec2::123` (EC2 User Guide,
/// "Set the time for your EC2 instance"; IPv4: 169.254.169.123).
pub const EC2_NTP_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x123);

/// What kind of address a name may never lead to (rule exceptions in the module docs), or
/// `None` for an ordinary one. IPv4-mapped IPv6 addresses are judged as the IPv4 address.
///
/// Besides the ranges every host has (loopback, link-local, unspecified, multicast,
/// broadcast), this refuses `0.0.0.0/8` ("this network", RFC 1122 §3.2.1.3, which Linux
/// connects to the local host) and the three services EC2 puts on the instance's IPv6 link,
/// which are unique-local addresses and not link-local ones: IMDS ([`EC2_IMDS_V6`]) would hand
/// the enclave the parent's role credentials, DNS and NTP the parent's view of names and time.
#[must_use]
pub fn special(ip: IpAddr) -> Option<&'static str> {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 @ IpAddr::V4(_) => v4,
    };
    match ip {
        IpAddr::V4(v4) if v4.is_loopback() => Some("loopback"),
        IpAddr::V4(v4) if v4.is_link_local() => {
            Some("link-local (EC2 serves IMDS, DNS and NTP on 169.254.169.0/24)")
        }
        IpAddr::V4(v4) if v4.is_unspecified() => Some("unspecified"),
        IpAddr::V4(v4) if v4.octets().first() == Some(&0) => {
            Some("in 0.0.0.0/8 (\"this network\": Linux connects it to the local host)")
        }
        IpAddr::V4(v4) if v4.is_multicast() => Some("multicast"),
        IpAddr::V4(v4) if v4.is_broadcast() => Some("broadcast"),
        IpAddr::V4(_) => None,
        IpAddr::V6(v6) if v6 == EC2_IMDS_V6 => {
            Some("the EC2 instance metadata service (IMDS) on the IPv6 link")
        }
        IpAddr::V6(v6) if v6 == EC2_DNS_V6 => Some("the Amazon DNS server on the IPv6 link"),
        IpAddr::V6(v6) if v6 == EC2_NTP_V6 => {
            Some("the Amazon Time Sync Service (NTP) on the IPv6 link")
        }
        IpAddr::V6(v6) if v6.is_loopback() => Some("loopback"),
        IpAddr::V6(v6) if v6.is_unspecified() => Some("unspecified"),
        IpAddr::V6(v6) if v6.is_multicast() => Some("multicast"),
        IpAddr::V6(v6) if v6.is_unicast_link_local() => Some("link-local"),
        IpAddr::V6(_) => None,
    }
}

/// The allowlist.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Allowlist {
    entries: Vec<Entry>,
}

impl Allowlist {
    /// An allowlist of these entries.
    #[must_use]
    pub fn new(entries: Vec<Entry>) -> Self {
        Self { entries }
    }

    /// The entries.
    #[must_use]
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Reads vsock-proxy's YAML format (see the module docs).
    ///
    /// # Errors
    /// [`AllowlistError::Syntax`] naming the line and what is wrong.
    pub fn parse(text: &str) -> Result<Self, AllowlistError> {
        Self::parse_from(text, None)
    }

    fn parse_from(text: &str, path: Option<&Path>) -> Result<Self, AllowlistError> {
        yaml::parse(text)
            .map(Self::new)
            .map_err(|e| AllowlistError::Syntax {
                path: path.map(Path::to_path_buf),
                line: e.line,
                problem: e.problem,
            })
    }

    /// Reads and parses a file.
    ///
    /// # Errors
    /// The file cannot be read, is over [`MAX_FILE_LEN`], is not UTF-8, or does not parse.
    pub fn load(path: &Path) -> Result<Self, AllowlistError> {
        let text = std::fs::read(path).map_err(|error| AllowlistError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        if text.len() > MAX_FILE_LEN {
            return Err(AllowlistError::TooLarge {
                path: path.to_path_buf(),
                len: text.len(),
            });
        }
        let text = String::from_utf8(text).map_err(|_| AllowlistError::NotUtf8 {
            path: path.to_path_buf(),
        })?;
        Self::parse_from(&text, Some(path))
    }

    /// The addresses a connection to `host:port` may use, now (see the rule in the module
    /// docs). Names are resolved with `resolver` on every call.
    ///
    /// # Errors
    /// [`Refusal`] naming why.
    pub fn admit(
        &self,
        host: &str,
        port: u16,
        resolver: &dyn Resolver,
    ) -> Result<Vec<SocketAddr>, Refusal> {
        let candidates: Vec<&Entry> = self.entries.iter().filter(|e| e.port == port).collect();
        if candidates.is_empty() {
            return Err(Refusal::Port {
                host: host.to_owned(),
                port,
            });
        }
        let wanted = Address::parse(host).map_err(|_| Refusal::BadHost {
            host: host.to_owned(),
        })?;
        let resolved = match &wanted {
            Address::Ip(ip) => vec![*ip],
            Address::Name(name) => {
                let addresses = resolver.resolve(name).map_err(|e| Refusal::Resolve {
                    host: name.clone(),
                    error: e.to_string(),
                })?;
                if addresses.is_empty() {
                    return Err(Refusal::Resolve {
                        host: name.clone(),
                        error: "no addresses".into(),
                    });
                }
                addresses
            }
        };
        // Entries naming other hosts are resolved only if needed, once per call.
        let mut entry_addresses: Vec<Option<Vec<IpAddr>>> = vec![None; candidates.len()];
        let mut admitted = Vec::new();
        let mut refused = Vec::new();
        for &ip in &resolved {
            let mut verdict = Err(Unadmitted::NoEntry);
            for (entry, cache) in candidates.iter().zip(entry_addresses.iter_mut()) {
                let by_name = match (&entry.address, &wanted) {
                    (Address::Ip(allowed), _) if *allowed == ip => {
                        verdict = Ok(());
                        break;
                    }
                    (Address::Ip(_), _) => continue,
                    (Address::Name(allowed), Address::Name(name)) if allowed == name => true,
                    (Address::Name(allowed), _) => {
                        let addresses = cache
                            .get_or_insert_with(|| resolver.resolve(allowed).unwrap_or_default());
                        addresses.contains(&ip)
                    }
                };
                if by_name {
                    if let Some(kind) = special(ip) {
                        verdict = Err(Unadmitted::Special(kind));
                    } else {
                        verdict = Ok(());
                        break;
                    }
                }
            }
            match verdict {
                Ok(()) => admitted.push(SocketAddr::new(ip, port)),
                Err(why) => refused.push((ip, why)),
            }
        }
        if admitted.is_empty() {
            return Err(Refusal::NotAllowed {
                host: host.to_owned(),
                port,
                addresses: refused,
            });
        }
        Ok(admitted)
    }
}

/// The YAML subset parser.
mod yaml {
    use super::{Address, Entry};

    /// A line that breaks the format (line 0: the file as a whole).
    #[derive(Debug)]
    pub(super) struct Syntax {
        pub(super) line: usize,
        pub(super) problem: String,
    }

    /// A [`Syntax`] error at `line`, its problem `format!`ted.
    macro_rules! at {
        ($line:expr, $($format:tt)*) => {
            Syntax { line: $line, problem: format!($($format)*) }
        };
    }

    /// Removes a comment: `#` at the start or after whitespace, outside quotes.
    fn strip_comment(line: &str) -> &str {
        let mut quote = None;
        let mut previous = ' ';
        for (i, c) in line.char_indices() {
            match (quote, c) {
                (None, '\'' | '"') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (None, '#') if previous.is_whitespace() => return line.get(..i).unwrap_or(line),
                _ => {}
            }
            previous = c;
        }
        line
    }

    /// A scalar: plain, 'single' ('' is a quote) or "double" (\" and \\ escapes).
    fn scalar(text: &str, line: usize) -> Result<String, Syntax> {
        let text = text.trim();
        if let Some(inner) = text.strip_prefix('\'').and_then(|t| t.strip_suffix('\'')) {
            return Ok(inner.replace("''", "'"));
        }
        if let Some(inner) = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
            let mut out = String::new();
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                if c == '\\' {
                    match chars.next() {
                        Some(e @ ('"' | '\\')) => out.push(e),
                        _ => {
                            return Err(at!(
                                line,
                                "only \\\" and \\\\ escapes are read in quoted \
                                 values"
                            ));
                        }
                    }
                } else {
                    out.push(c);
                }
            }
            return Ok(out);
        }
        if text.starts_with(['\'', '"', '{', '[', '&', '*', '!', '|', '>']) {
            return Err(at!(line, "`{text}` is not a plain value"));
        }
        Ok(text.to_owned())
    }

    /// Splits on `sep` outside quotes and brackets.
    fn split_top(text: &str, sep: char) -> Vec<&str> {
        let mut parts = Vec::new();
        let mut depth = 0i32;
        let mut quote = None;
        let mut start = 0;
        for (i, c) in text.char_indices() {
            match (quote, c) {
                (None, '\'' | '"') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (None, '{' | '[') => depth += 1,
                (None, '}' | ']') => depth -= 1,
                (None, c) if c == sep && depth == 0 => {
                    parts.push(text.get(start..i).unwrap_or_default());
                    start = i + c.len_utf8();
                }
                _ => {}
            }
        }
        parts.push(text.get(start..).unwrap_or_default());
        parts
    }

    /// `key: value` (the value may be empty).
    fn key_value(text: &str, line: usize) -> Result<(String, String), Syntax> {
        let parts = split_top(text, ':');
        let (key, value) = match parts.as_slice() {
            [key, rest @ ..] if !rest.is_empty() => (*key, text.get(key.len() + 1..).unwrap_or("")),
            _ => {
                return Err(at!(line, "expected `key: value`, found `{text}`"));
            }
        };
        if !value.is_empty() && !value.starts_with(' ') {
            return Err(at!(line, "expected a space after `{key}:`"));
        }
        Ok((scalar(key, line)?, value.trim().to_owned()))
    }

    /// An entry being read.
    #[derive(Default)]
    struct Partial {
        address: Option<String>,
        port: Option<String>,
        line: usize,
    }

    impl Partial {
        fn set(&mut self, key: &str, value: String, line: usize) -> Result<(), Syntax> {
            let slot = match key {
                "address" => &mut self.address,
                "port" => &mut self.port,
                other => {
                    return Err(at!(
                        line,
                        "unknown key `{other}` in an allowlist entry (entries have \
                         `address` and `port`)"
                    ));
                }
            };
            if slot.replace(value).is_some() {
                return Err(at!(line, "`{key}` given twice in one entry"));
            }
            Ok(())
        }

        fn finish(self) -> Result<Entry, Syntax> {
            let line = self.line;
            let address = self
                .address
                .ok_or_else(|| at!(line, "the entry has no `address`"))?;
            let port = self
                .port
                .ok_or_else(|| at!(line, "the entry has no `port`"))?;
            let port = port
                .parse::<u16>()
                .ok()
                .filter(|&p| p > 0)
                .ok_or_else(|| at!(line, "port `{port}` is not 1..=65535"))?;
            let address = Address::parse(&address).map_err(|e| at!(line, "{e}"))?;
            Ok(Entry {
                address,
                port,
                line,
            })
        }
    }

    fn flow_map(text: &str, line: usize) -> Result<Entry, Syntax> {
        let inner = text
            .trim()
            .strip_prefix('{')
            .and_then(|t| t.strip_suffix('}'))
            .ok_or_else(|| at!(line, "expected `{{address: ..., port: ...}}`"))?;
        let mut partial = Partial {
            line,
            ..Partial::default()
        };
        for pair in split_top(inner, ',') {
            if pair.trim().is_empty() {
                continue;
            }
            let (key, value) = key_value(pair.trim(), line)?;
            partial.set(&key, scalar(&value, line)?, line)?;
        }
        partial.finish()
    }

    fn flow_list(text: &str, line: usize) -> Result<Vec<Entry>, Syntax> {
        let inner = text
            .strip_prefix('[')
            .and_then(|t| t.strip_suffix(']'))
            .ok_or_else(|| at!(line, "expected a list `[...]`"))?;
        split_top(inner, ',')
            .into_iter()
            .filter(|item| !item.trim().is_empty())
            .map(|item| flow_map(item, line))
            .collect()
    }

    pub(super) fn parse(text: &str) -> Result<Vec<Entry>, Syntax> {
        let mut entries = Vec::new();
        let mut seen_key = false;
        let mut in_list = false;
        let mut content_seen = false;
        // A block mapping entry being read, with the column of its keys.
        let mut block: Option<(Partial, Option<usize>)> = None;
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let stripped = strip_comment(raw).trim_end();
            if stripped.trim().is_empty() {
                continue;
            }
            if stripped.contains('\t') {
                return Err(at!(line, "tabs are not YAML indentation"));
            }
            let indent = stripped.len() - stripped.trim_start().len();
            let content = stripped.trim_start();
            if !content_seen && content == "---" {
                content_seen = true;
                continue;
            }
            content_seen = true;
            if content == "..." {
                break;
            }
            let dash = content == "-" || content.starts_with("- ");
            if indent == 0 && !dash {
                if let Some((partial, _)) = block.take() {
                    entries.push(partial.finish()?);
                }
                let (key, value) = key_value(content, line)?;
                if key != "allowlist" {
                    return Err(at!(
                        line,
                        "unknown top-level key `{key}` (the file has one key, \
                         `allowlist`)"
                    ));
                }
                if seen_key {
                    return Err(at!(line, "`allowlist` given twice"));
                }
                seen_key = true;
                if value.is_empty() {
                    in_list = true;
                } else {
                    entries.extend(flow_list(&value, line)?);
                    in_list = false;
                }
                continue;
            }
            if dash {
                if !in_list {
                    return Err(at!(line, "a list item outside `allowlist:`"));
                }
                if let Some((partial, _)) = block.take() {
                    entries.push(partial.finish()?);
                }
                let rest = content.get(1..).unwrap_or("").trim_start();
                let partial = Partial {
                    line,
                    ..Partial::default()
                };
                if rest.starts_with('{') {
                    entries.push(flow_map(rest, line)?);
                } else if rest.is_empty() {
                    block = Some((partial, None));
                } else {
                    let column = indent + (content.len() - rest.len());
                    let mut partial = partial;
                    let (key, value) = key_value(rest, line)?;
                    partial.set(&key, scalar(&value, line)?, line)?;
                    block = Some((partial, Some(column)));
                }
                continue;
            }
            // An indented `key: value` continuing a block entry.
            let Some((partial, column)) = block.as_mut() else {
                return Err(at!(line, "`{content}` is not inside an allowlist entry"));
            };
            match column {
                Some(c) if *c != indent => {
                    return Err(at!(
                        line,
                        "indented {indent} spaces, the entry's keys are at {c}"
                    ));
                }
                Some(_) => {}
                None => *column = Some(indent),
            }
            let (key, value) = key_value(content, line)?;
            partial.set(&key, scalar(&value, line)?, line)?;
        }
        if let Some((partial, _)) = block.take() {
            entries.push(partial.finish()?);
        }
        if !seen_key {
            return Err(Syntax {
                line: 0,
                problem: "no `allowlist:` key (vsock-proxy's format: `allowlist:` then a list \
                          of `{address, port}`)"
                    .into(),
            });
        }
        Ok(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const NITRO_STYLE: &str = "\
# vsock-proxy's own layout
allowlist:
- {address: kms.us-east-1.amazonaws.com, port: 443}
- {address: kms-fips.us-east-1.amazonaws.com, port: 443}
";

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn both_yaml_layouts_are_read() {
        let list = Allowlist::parse(NITRO_STYLE).unwrap();
        assert_eq!(list.entries().len(), 2);
        assert_eq!(
            list.entries()[0],
            Entry {
                address: Address::Name("kms.us-east-1.amazonaws.com".into()),
                port: 443,
                line: 3
            }
        );
        let block = "---\nallowlist:\n  - address: \"Example.COM.\"  # a comment\n    port: 8443\n  - address: '10.0.0.1'\n    port: 80\n  -\n    address: ::1\n    port: 22\n";
        let list = Allowlist::parse(block).unwrap();
        let addresses: Vec<String> = list
            .entries()
            .iter()
            .map(|e| e.address.to_string())
            .collect();
        assert_eq!(addresses, ["example.com", "10.0.0.1", "::1"]);
        assert_eq!(list.entries()[2].port, 22);
        let flow = "allowlist: [{address: a.example, port: 1}, {port: 2, address: \"b.example\"}]";
        assert_eq!(Allowlist::parse(flow).unwrap().entries().len(), 2);
        assert!(
            Allowlist::parse("allowlist: []")
                .unwrap()
                .entries()
                .is_empty()
        );
    }

    #[test]
    fn malformed_files_name_the_line() {
        let cases = [
            ("", "no `allowlist:` key"),
            (
                "alowlist:\n- {address: a, port: 1}",
                "unknown top-level key `alowlist`",
            ),
            (
                "allowlist:\n- {address: a, prot: 1}",
                "line 2: unknown key `prot`",
            ),
            (
                "allowlist:\n- {address: a}",
                "line 2: the entry has no `port`",
            ),
            (
                "allowlist:\n- {address: a, port: 70000}",
                "line 2: port `70000`",
            ),
            ("allowlist:\n- {address: a, port: 0}", "line 2: port `0`"),
            (
                "allowlist:\n- {address: 'a b', port: 1}",
                "line 2: `a b` is not a host name",
            ),
            (
                "allowlist:\n- address: a\n   port: 1",
                "line 3: indented 3 spaces",
            ),
            (
                "allowlist:\n- address: a\n  address: b",
                "line 3: `address` given twice",
            ),
            ("allowlist:\n\t- {address: a, port: 1}", "line 2: tabs"),
            ("- {address: a, port: 1}", "line 1: a list item outside"),
            ("allowlist:\n  port: 1", "line 2: `port: 1` is not inside"),
            (
                "allowlist:\n- {address: a, port: 1}\nallowlist:",
                "line 3: `allowlist` given twice",
            ),
            (
                "allowlist:\n- {address: &x a, port: 1}",
                "not a plain value",
            ),
        ];
        for (text, needle) in cases {
            let error = Allowlist::parse(text).unwrap_err();
            assert!(
                matches!(error, AllowlistError::Syntax { path: None, .. }),
                "{error:?}"
            );
            assert!(error.to_string().contains(needle), "{text:?}: {error}");
        }
    }

    fn list(entries: &[(&str, u16)]) -> Allowlist {
        Allowlist::new(
            entries
                .iter()
                .map(|(a, p)| Entry {
                    address: Address::parse(a).unwrap(),
                    port: *p,
                    line: 0,
                })
                .collect(),
        )
    }

    #[test]
    fn the_rule_admits_names_ips_and_resolved_names() {
        let resolver = TableResolver::default();
        resolver.set("kms.example", vec![ip("52.0.0.1"), ip("52.0.0.2")]);
        resolver.set("alias.example", vec![ip("52.0.0.2")]);
        resolver.set("rebound.example", vec![ip("127.0.0.1")]);
        let allow = list(&[
            ("kms.example", 443),
            ("10.1.2.3", 8443),
            ("127.0.0.1", 9999),
        ]);

        // 1. The same name: every address it resolves to.
        assert_eq!(
            allow.admit("KMS.example.", 443, &resolver).unwrap(),
            vec![
                SocketAddr::new(ip("52.0.0.1"), 443),
                SocketAddr::new(ip("52.0.0.2"), 443)
            ]
        );
        // 2. A literal IP entry.
        assert_eq!(allow.admit("10.1.2.3", 8443, &resolver).unwrap().len(), 1);
        // 3. Another name resolving to an allowed name's address.
        assert_eq!(
            allow.admit("alias.example", 443, &resolver).unwrap(),
            vec![SocketAddr::new(ip("52.0.0.2"), 443)]
        );
        // An IP that an allowed name resolves to.
        assert!(allow.admit("52.0.0.1", 443, &resolver).is_ok());
        // Loopback only through its literal entry.
        assert!(allow.admit("127.0.0.1", 9999, &resolver).is_ok());
    }

    #[test]
    fn every_other_destination_is_refused() {
        let resolver = TableResolver::default();
        resolver.set("kms.example", vec![ip("52.0.0.1")]);
        resolver.set("evil.example", vec![ip("6.6.6.6")]);
        resolver.set("metadata.example", vec![ip("169.254.169.254")]);
        resolver.set("gone.example", vec![]);
        let allow = list(&[
            ("kms.example", 443),
            ("10.1.2.3", 8443),
            ("rebind.example", 443),
        ]);
        resolver.set("rebind.example", vec![ip("127.0.0.1")]);
        let cases: [(&str, u16, &str); 9] = [
            ("kms.example", 80, "no allowlist entry has port 80"),
            ("evil.example", 443, "6.6.6.6 matches no allowlist entry"),
            ("6.6.6.6", 443, "6.6.6.6 matches no allowlist entry"),
            ("10.1.2.3", 443, "10.1.2.3 matches no allowlist entry"),
            ("10.1.2.4", 8443, "10.1.2.4 matches no allowlist entry"),
            ("metadata.example", 443, "169.254.169.254 matches no"),
            ("rebind.example", 443, "127.0.0.1 is loopback"),
            ("gone.example", 443, "does not resolve"),
            ("bad host!", 443, "not a host name"),
        ];
        for (host, port, needle) in cases {
            let refusal = allow.admit(host, port, &resolver).unwrap_err();
            assert!(
                refusal.to_string().contains(needle),
                "{host}:{port}: {refusal}"
            );
        }
        // IPv4-mapped IPv6 loopback through a name is loopback too.
        resolver.set(
            "rebind.example",
            vec![IpAddr::V6(Ipv4Addr::LOCALHOST.to_ipv6_mapped())],
        );
        assert!(allow.admit("rebind.example", 443, &resolver).is_err());
    }

    /// Every special address, reached through an allowed name (or as a literal IP that an
    /// allowed name resolves to), is refused naming its kind; the same address with an entry
    /// of its own literal IP is admitted. Ordinary neighbours of each range are admitted
    /// through the name.
    #[test]
    fn names_never_lead_to_special_addresses() {
        let table: [(&str, Option<&str>); 24] = [
            ("127.0.0.1", Some("is loopback")),
            ("127.255.0.9", Some("is loopback")),
            ("169.254.169.254", Some("is link-local")),
            ("169.254.169.253", Some("is link-local")),
            ("169.254.169.123", Some("is link-local")),
            ("0.0.0.0", Some("is unspecified")),
            ("0.0.0.1", Some("in 0.0.0.0/8")),
            ("0.255.255.255", Some("in 0.0.0.0/8")),
            ("224.0.0.1", Some("is multicast")),
            ("255.255.255.255", Some("is broadcast")),
            (
                "fd00:ec2::254",
                Some("instance metadata service (IMDS) on the IPv6 link"),
            ),
            ("fd00:ec2::253", Some("Amazon DNS server on the IPv6 link")),
            (
                "fd00:ec2::123",
                Some("Time Sync Service (NTP) on the IPv6 link"),
            ),
            ("::1", Some("is loopback")),
            ("::", Some("is unspecified")),
            ("ff02::1", Some("is multicast")),
            ("fe80::1", Some("is link-local")),
            ("::ffff:169.254.169.254", Some("is link-local")),
            ("::ffff:0.0.0.7", Some("in 0.0.0.0/8")),
            // Neighbours that are ordinary addresses.
            ("1.0.0.1", None),
            ("169.255.0.1", None),
            ("fd00:ec2::255", None),
            ("fd00:ec3::254", None),
            ("2600:1f18::1", None),
        ];
        for (text, kind) in table {
            let address = ip(text);
            let resolver = TableResolver::default();
            resolver.set("service.example", vec![address]);
            let by_name = list(&[("service.example", 443)]);
            for asked in ["service.example", text] {
                let outcome = by_name.admit(asked, 443, &resolver);
                let Some(kind) = kind else {
                    assert_eq!(
                        outcome.unwrap(),
                        vec![SocketAddr::new(address, 443)],
                        "{asked}"
                    );
                    continue;
                };
                let refusal = outcome.unwrap_err();
                let shown = refusal.to_string();
                assert!(
                    shown.contains(kind) && shown.contains("literal IP"),
                    "{asked}: {shown}"
                );
                let expected = [(address, Unadmitted::Special(special(address).unwrap()))];
                assert!(
                    matches!(&refusal, Refusal::NotAllowed { addresses, .. } if addresses == &expected),
                    "{refusal:?}"
                );
            }
            // An entry with the literal IP admits it (the operator said so explicitly).
            let literal = list(&[(text, 443)]);
            assert_eq!(
                literal.admit(text, 443, &resolver).unwrap(),
                vec![SocketAddr::new(address, 443)],
                "{text}"
            );
        }
    }
}
