//! The enclave's settings: compiled defaults (`app.rs`), the image's environment (`/env`,
//! variables `CCC_APP_*`) and, for emulation only, the kernel command line (`ccc_app.*`).
//!
//! # Where each source comes from, and what it proves
//! - The defaults in `app.rs` are compiled into the binary, which sits in the image's
//!   ramdisk: measured into PCR2.
//! - `/env` is written into the same ramdisk by the image build: measured into PCR2 as well.
//!   So a KMS key policy pinning PCR2 pins these settings; changing the region, the key or a
//!   port gives a new PCR2.
//! - The kernel command line on Nitro is the one inside the EIF (measured into PCR0 and PCR1;
//!   nitro-cli cannot add to it). Under QEMU, `-append` adds words that are NOT measured. The
//!   `ccc_app.*` switches are meant for that: the emulator's CA (base64 DER), region, key or
//!   port chosen when the emulation starts. They are accepted only together with
//!   `ccc.emulation=1`, are printed loudly, and a mistyped one stops the enclave (as the
//!   init does for `ccc.*`). Trusting another CA is harmless in QEMU, whose NSM documents are
//!   unsigned and which real KMS never answers; on Nitro such a switch would have to be in the
//!   measured command line, changing PCR0/PCR1, so no released image can be redirected
//!   without its measurements changing.
//! - `ccc.parent_cid` is the init's switch (the heartbeat's CID); the app uses the same value
//!   so both always talk to the same parent (3 on Nitro, 2 under QEMU's vhost-user vsock).
//!
//! Precedence, highest first: `ccc_app.*` (emulation) > `CCC_APP_*` > `app.rs` defaults.
//! An unknown `CCC_APP_*` variable is an error, so a typo never silently keeps a default.

use ccc_sdk::net::vsock::{CID_ANY, CID_PARENT};
use ccc_sdk::net::{Endpoint, KMS_PROXY_PORT, VsockAddr};
use ccc_sdk::tls::TrustAnchors;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// Prefix of the environment variables read.
pub const ENV_PREFIX: &str = "CCC_APP_";

/// Prefix of the app's own kernel command-line switches (the init owns `ccc.`).
pub const CMDLINE_PREFIX: &str = "ccc_app.";

/// Longest command line read: the init's limit (`ccc_cmdline::MAX_LEN`), so both accept the
/// same lines.
pub const MAX_CMDLINE_LEN: usize = ccc_cmdline::MAX_LEN;

/// Connections served at once by default (each is a thread; one parent needs a few).
pub const DEFAULT_MAX_CONNECTIONS: usize = 16;

/// The environment variables read, for error messages.
const ENV_KNOWN: &str = "CCC_APP_REGION, CCC_APP_KEY_ID, CCC_APP_PORT, CCC_APP_PARENT_CID, \
     CCC_APP_KMS_PROXY_PORT, CCC_APP_CREDENTIALS_PORT, CCC_APP_KMS_HOST, CCC_APP_KMS_CA_FILE, \
     CCC_APP_NSM, CCC_APP_LISTEN, CCC_APP_KMS_ENDPOINT, CCC_APP_CREDENTIALS_ENDPOINT, \
     CCC_APP_MAX_CONNECTIONS";

/// The command-line switches read, for error messages.
const CMDLINE_KNOWN: &str = "ccc_app.kms_ca=<base64 DER>, ccc_app.region=, ccc_app.key_id=, \
     ccc_app.port=, ccc_app.exit_after=<requests>";

/// Which NSM the binary opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NsmChoice {
    /// `/dev/nsm` (Nitro, or QEMU's nitro-enclave machine). The default.
    Device,
    /// The signed development simulator (`CCC_APP_NSM=simulator`; the binary must be built
    /// with the `simulator` feature).
    Simulator,
}

/// Where a setting's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// `app.rs` or a built-in default.
    Default,
    /// `/env`.
    Environment,
    /// The kernel command line.
    Cmdline,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Default => "default",
            Self::Environment => "/env",
            Self::Cmdline => "kernel command line",
        })
    }
}

/// Everything the enclave needs to start.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Settings {
    /// AWS region (SigV4 scope, default KMS host name).
    pub region: String,
    /// The KMS key for requests that name none.
    pub key_id: Option<String>,
    /// Where the API listens (default `vsock://<any>:5000`).
    pub listen: Endpoint,
    /// Where KMS is reached (default the parent's proxy, `vsock://<parent>:8000`).
    pub kms_endpoint: Endpoint,
    /// TLS server name and `Host` (default `kms.<region>.amazonaws.com`).
    pub kms_host: Option<String>,
    /// What the KMS TLS certificate must chain to (default the Amazon roots).
    pub kms_trust: TrustAnchors,
    /// Where the credentials service is (default `vsock://<parent>:8002`).
    pub credentials_endpoint: Endpoint,
    /// Which NSM.
    pub nsm: NsmChoice,
    /// Connections served at once.
    pub max_connections: usize,
    /// `ccc.emulation=1` was on the command line.
    pub emulation: bool,
    /// Emulation only (`ccc_app.exit_after=N`): answer N requests, then exit with status 0
    /// once the caller closed the connection of the Nth, so a QEMU run ends by itself. `None`
    /// (always outside emulation): serve until the enclave is stopped.
    pub exit_after: Option<u64>,
    /// Each setting as printed at start: name, value, origin. Holds nothing secret.
    pub report: Vec<(String, String, Origin)>,
}

/// A setting that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// A `CCC_APP_*` variable this enclave does not read.
    UnknownVariable(String),
    /// A `ccc_app.*` switch this enclave does not read.
    UnknownSwitch(String),
    /// A `ccc_app.*` switch without `ccc.emulation=1`.
    SwitchOutsideEmulation(String),
    /// A value that does not parse.
    BadValue {
        /// The variable or switch.
        name: String,
        /// What was expected.
        expected: &'static str,
    },
    /// A file named by a setting could not be read.
    File {
        /// The variable.
        name: String,
        /// The path.
        path: PathBuf,
        /// The OS error.
        error: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownVariable(name) => write!(
                f,
                "unknown variable {name} in the environment; this enclave reads {ENV_KNOWN}"
            ),
            Self::UnknownSwitch(word) => write!(
                f,
                "unknown switch `{word}` on the kernel command line; this enclave reads \
                 {CMDLINE_KNOWN}"
            ),
            Self::SwitchOutsideEmulation(word) => write!(
                f,
                "`{word}` on the kernel command line without ccc.emulation=1: the ccc_app.* \
                 switches are for QEMU emulation; configure an image through its /env \
                 (CCC_APP_*) or the defaults in app.rs"
            ),
            Self::BadValue { name, expected } => write!(f, "{name}: expected {expected}"),
            Self::File { name, path, error } => {
                write!(f, "{name}: cannot read {}: {error}", path.display())
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// The values given on the command line (last one wins, as for kernel parameters).
#[derive(Debug, Default)]
struct Cmdline {
    parent_cid: Option<String>,
    emulation: bool,
    app: BTreeMap<String, String>,
}

fn parse_cmdline(text: &str) -> Result<Cmdline, ConfigError> {
    let mut cmdline = Cmdline::default();
    let mut app_words = Vec::new();
    for word in ccc_cmdline::words(text) {
        let (key, value) = ccc_cmdline::parameter(&word);
        match key {
            "ccc.parent_cid" => cmdline.parent_cid = Some(value.to_owned()),
            "ccc.emulation" => cmdline.emulation = value == "1",
            _ => {
                if let Some(name) = key.strip_prefix(CMDLINE_PREFIX) {
                    if !matches!(name, "kms_ca" | "region" | "key_id" | "port" | "exit_after") {
                        return Err(ConfigError::UnknownSwitch(word));
                    }
                    app_words.push(key.to_owned());
                    cmdline.app.insert(name.to_owned(), value.to_owned());
                }
            }
        }
    }
    if let Some(word) = app_words.into_iter().next().filter(|_| !cmdline.emulation) {
        return Err(ConfigError::SwitchOutsideEmulation(word));
    }
    Ok(cmdline)
}

fn number<T: std::str::FromStr>(
    name: &str,
    value: &str,
    expected: &'static str,
) -> Result<T, ConfigError> {
    value.parse().map_err(|_| ConfigError::BadValue {
        name: name.to_owned(),
        expected,
    })
}

fn endpoint(name: &str, value: &str) -> Result<Endpoint, ConfigError> {
    value.parse().map_err(|_| ConfigError::BadValue {
        name: name.to_owned(),
        expected: "an endpoint: vsock://CID:PORT, tcp://HOST:PORT or unix:///PATH",
    })
}

/// The PEM form of one DER certificate.
fn pem(der: &[u8]) -> String {
    use base64::Engine as _;
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in text.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// The values found, and what was picked from where.
struct Sources {
    vars: BTreeMap<String, String>,
    app: BTreeMap<String, String>,
    report: Vec<(String, String, Origin)>,
}

impl Sources {
    /// One setting: the command line (emulation) over /env over the default; recorded.
    fn pick(
        &mut self,
        name: &str,
        switch: Option<&str>,
        default: Option<String>,
    ) -> Option<(String, Origin)> {
        let chosen = switch
            .and_then(|s| self.app.get(s))
            .map(|v| (v.clone(), Origin::Cmdline))
            .or_else(|| {
                self.vars
                    .get(name)
                    .map(|v| (v.clone(), Origin::Environment))
            })
            .or_else(|| default.map(|v| (v, Origin::Default)));
        if let Some((value, origin)) = &chosen {
            let shown = if name == "KMS_CA" {
                format!("{} characters of base64 DER", value.len())
            } else {
                value.clone()
            };
            let label = match (origin, switch) {
                (Origin::Cmdline, Some(switch)) => format!("{CMDLINE_PREFIX}{switch}"),
                _ => format!("{ENV_PREFIX}{name}"),
            };
            self.report.push((label, shown, *origin));
        }
        chosen
    }

    fn port(&mut self, name: &str, switch: Option<&str>, default: u32) -> Result<u32, ConfigError> {
        let value = self
            .pick(name, switch, Some(default.to_string()))
            .map(|(v, _)| v)
            .unwrap_or_default();
        number(&format!("{ENV_PREFIX}{name}"), &value, "a vsock port (u32)")
    }
}

impl Settings {
    /// Settings from `env` (the process environment; only `CCC_APP_*` is read) and `cmdline`
    /// (the contents of /proc/cmdline).
    ///
    /// # Errors
    /// [`ConfigError`] naming the variable or switch.
    pub fn from_sources(
        env: &BTreeMap<String, String>,
        cmdline: &str,
    ) -> Result<Self, ConfigError> {
        let cmdline = parse_cmdline(cmdline)?;
        let mut vars = BTreeMap::new();
        for (name, value) in env {
            let Some(short) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            if !ENV_KNOWN.split(", ").any(|known| known == name) {
                return Err(ConfigError::UnknownVariable(name.clone()));
            }
            vars.insert(short.to_owned(), value.clone());
        }
        let mut sources = Sources {
            vars,
            app: cmdline.app,
            report: Vec::new(),
        };
        let region = sources
            .pick(
                "REGION",
                Some("region"),
                Some(crate::app::REGION.to_owned()),
            )
            .map(|(v, _)| v)
            .unwrap_or_default();
        if region.is_empty() {
            return Err(ConfigError::BadValue {
                name: "CCC_APP_REGION".into(),
                expected: "an AWS region such as eu-west-1",
            });
        }
        let key_id = sources
            .pick(
                "KEY_ID",
                Some("key_id"),
                crate::app::KEY_ID.map(str::to_owned),
            )
            .map(|(v, _)| v);
        let parent_cid = match cmdline.parent_cid {
            Some(cid) => {
                sources
                    .report
                    .push(("ccc.parent_cid".into(), cid.clone(), Origin::Cmdline));
                number("ccc.parent_cid", &cid, "a vsock CID (u32)")?
            }
            None => match sources.pick("PARENT_CID", None, Some(CID_PARENT.to_string())) {
                Some((v, _)) => number("CCC_APP_PARENT_CID", &v, "a vsock CID (u32)")?,
                None => CID_PARENT,
            },
        };
        let api_port = sources.port("PORT", Some("port"), crate::protocol::DEFAULT_PORT)?;
        let kms_proxy_port = sources.port("KMS_PROXY_PORT", None, KMS_PROXY_PORT)?;
        let credentials_port = sources.port(
            "CREDENTIALS_PORT",
            None,
            ccc_sdk::credentials::protocol::DEFAULT_PORT,
        )?;
        let listen = match sources.pick("LISTEN", None, None) {
            Some((v, _)) => endpoint("CCC_APP_LISTEN", &v)?,
            None => Endpoint::Vsock(VsockAddr::new(CID_ANY, api_port)),
        };
        let kms_endpoint = match sources.pick("KMS_ENDPOINT", None, None) {
            Some((v, _)) => endpoint("CCC_APP_KMS_ENDPOINT", &v)?,
            None => Endpoint::Vsock(VsockAddr::new(parent_cid, kms_proxy_port)),
        };
        let credentials_endpoint = match sources.pick("CREDENTIALS_ENDPOINT", None, None) {
            Some((v, _)) => endpoint("CCC_APP_CREDENTIALS_ENDPOINT", &v)?,
            None => Endpoint::Vsock(VsockAddr::new(parent_cid, credentials_port)),
        };
        let kms_host = sources.pick("KMS_HOST", None, None).map(|(v, _)| v);
        let kms_trust = match (
            sources.pick("KMS_CA", Some("kms_ca"), None),
            sources.pick("KMS_CA_FILE", None, None),
        ) {
            (Some((b64, _)), _) => {
                use base64::Engine as _;
                let der = base64::engine::general_purpose::STANDARD
                    .decode(b64.as_bytes())
                    .map_err(|_| ConfigError::BadValue {
                        name: "ccc_app.kms_ca".into(),
                        expected: "base64 (RFC 4648, padded) of the CA certificate's DER",
                    })?;
                TrustAnchors::CustomCaPem(pem(&der))
            }
            (None, Some((path, _))) => {
                let path = PathBuf::from(path);
                let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::File {
                    name: "CCC_APP_KMS_CA_FILE".into(),
                    path: path.clone(),
                    error: e.to_string(),
                })?;
                TrustAnchors::CustomCaPem(text)
            }
            (None, None) => TrustAnchors::AmazonRoots,
        };
        let nsm = match sources.pick("NSM", None, Some("device".into())) {
            Some((v, _)) if v == "simulator" => NsmChoice::Simulator,
            Some((v, _)) if v == "device" => NsmChoice::Device,
            _ => {
                return Err(ConfigError::BadValue {
                    name: "CCC_APP_NSM".into(),
                    expected: "`device` (/dev/nsm) or `simulator` (development builds only)",
                });
            }
        };
        let max_connections = match sources.pick(
            "MAX_CONNECTIONS",
            None,
            Some(DEFAULT_MAX_CONNECTIONS.to_string()),
        ) {
            Some((v, _)) => number::<usize>("CCC_APP_MAX_CONNECTIONS", &v, "a count")?.max(1),
            None => DEFAULT_MAX_CONNECTIONS,
        };
        let exit_after = match sources.pick("EXIT_AFTER", Some("exit_after"), None) {
            // Only the command line can set it (no CCC_APP_EXIT_AFTER), and only with
            // ccc.emulation=1 (checked with the other switches).
            Some((v, Origin::Cmdline)) => Some(
                number::<u64>("ccc_app.exit_after", &v, "a number of requests, at least 1")
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| ConfigError::BadValue {
                        name: "ccc_app.exit_after".into(),
                        expected: "a number of requests, at least 1",
                    })?,
            ),
            _ => None,
        };
        if cmdline.emulation {
            sources
                .report
                .push(("ccc.emulation".into(), "1".into(), Origin::Cmdline));
        }
        Ok(Self {
            region,
            key_id,
            listen,
            kms_endpoint,
            kms_host,
            kms_trust,
            credentials_endpoint,
            nsm,
            max_connections,
            emulation: cmdline.emulation,
            exit_after,
            report: sources.report,
        })
    }

    /// Settings from this process's environment and `/proc/cmdline` (absent outside Linux
    /// or without /proc: treated as empty).
    ///
    /// # Errors
    /// As [`Settings::from_sources`]; a command line longer than [`MAX_CMDLINE_LEN`].
    pub fn from_process() -> Result<Self, ConfigError> {
        let env: BTreeMap<String, String> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        let cmdline = std::fs::read("/proc/cmdline").unwrap_or_default();
        if cmdline.len() > MAX_CMDLINE_LEN {
            return Err(ConfigError::BadValue {
                name: "/proc/cmdline".into(),
                expected: "at most 64 KiB",
            });
        }
        let cmdline = String::from_utf8(cmdline).map_err(|_| ConfigError::BadValue {
            name: "/proc/cmdline".into(),
            expected: "UTF-8",
        })?;
        Self::from_sources(&env, &cmdline)
    }

    /// The KMS host name requests carry.
    #[must_use]
    pub fn kms_host(&self) -> String {
        self.kms_host
            .clone()
            .unwrap_or_else(|| ccc_sdk::kms::endpoint_host(&self.region))
    }
}

#[cfg(test)]
#[expect(clippy::panic, reason = "test code: a panic is the test failure")]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> BTreeMap<String, String> {
        vars.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_are_the_nitro_conventions() {
        let s = Settings::from_sources(&env(&[("PATH", "/bin")]), "console=ttyS0").unwrap();
        assert_eq!(s.region, crate::app::REGION);
        assert_eq!(s.listen.to_string(), "vsock://4294967295:5000");
        assert_eq!(s.kms_endpoint.to_string(), "vsock://3:8000");
        assert_eq!(s.credentials_endpoint.to_string(), "vsock://3:8002");
        assert_eq!(s.kms_trust, TrustAnchors::AmazonRoots);
        assert_eq!(s.nsm, NsmChoice::Device);
        assert_eq!(
            s.kms_host(),
            format!("kms.{}.amazonaws.com", crate::app::REGION)
        );
        assert!(!s.emulation);
    }

    #[test]
    fn env_then_cmdline_override() {
        let vars = env(&[
            ("CCC_APP_REGION", "eu-west-1"),
            ("CCC_APP_PORT", "6000"),
            ("CCC_APP_KEY_ID", "alias/env"),
        ]);
        let s = Settings::from_sources(&vars, "").unwrap();
        assert_eq!(s.region, "eu-west-1");
        assert_eq!(s.listen.to_string(), "vsock://4294967295:6000");
        assert_eq!(s.key_id.as_deref(), Some("alias/env"));

        // QEMU: the init's parent CID and emulation switches, plus the app's own.
        let ca = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, b"der");
        let line = format!(
            "console=ttyS0 ccc.emulation=1 ccc.parent_cid=2 ccc_app.key_id=alias/qemu \
             ccc_app.kms_ca={ca}"
        );
        let s = Settings::from_sources(&vars, &line).unwrap();
        assert!(s.emulation);
        assert_eq!(s.kms_endpoint.to_string(), "vsock://2:8000");
        assert_eq!(s.credentials_endpoint.to_string(), "vsock://2:8002");
        assert_eq!(s.key_id.as_deref(), Some("alias/qemu"));
        match &s.kms_trust {
            TrustAnchors::CustomCaPem(pem) => {
                assert!(
                    pem.starts_with("-----BEGIN CERTIFICATE-----\nZGVy\n"),
                    "{pem}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(
            s.report.iter().any(|(n, v, o)| n == "ccc_app.key_id"
                && v == "alias/qemu"
                && *o == Origin::Cmdline)
        );
    }

    #[test]
    fn mistakes_are_refused_by_name() {
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
        let cases: [Case<'_>; 7] = [
            (&[("CCC_APP_REGON", "x")], "", "CCC_APP_REGON"),
            (&[("CCC_APP_PORT", "http")], "", "CCC_APP_PORT"),
            (&[("CCC_APP_NSM", "fake")], "", "CCC_APP_NSM"),
            (
                &[("CCC_APP_KMS_ENDPOINT", "localhost:1")],
                "",
                "CCC_APP_KMS_ENDPOINT",
            ),
            (&[], "ccc_app.kms_ca=AAAA", "without ccc.emulation=1"),
            (&[], "ccc.emulation=1 ccc_app.colour=red", "ccc_app.colour"),
            (&[], "ccc.emulation=1 ccc_app.kms_ca=!!", "ccc_app.kms_ca"),
        ];
        for (vars, line, needle) in cases {
            let error = Settings::from_sources(&env(vars), line).unwrap_err();
            assert!(error.to_string().contains(needle), "{error}");
        }
    }

    /// `ccc_app.exit_after` is emulation's way to end a QEMU run: only on the command line,
    /// only with `ccc.emulation=1`, a positive count, reported with its origin.
    #[test]
    fn exit_after_is_an_emulation_only_positive_count() {
        let s = Settings::from_sources(&env(&[]), "console=ttyS0").unwrap();
        assert_eq!(s.exit_after, None);

        let s = Settings::from_sources(&env(&[]), "ccc.emulation=1 ccc_app.exit_after=2").unwrap();
        assert_eq!(s.exit_after, Some(2));
        assert!(
            s.report
                .iter()
                .any(|(n, v, o)| n == "ccc_app.exit_after" && v == "2" && *o == Origin::Cmdline),
            "{:?}",
            s.report
        );

        let outside = Settings::from_sources(&env(&[]), "ccc_app.exit_after=2").unwrap_err();
        assert_eq!(
            outside,
            ConfigError::SwitchOutsideEmulation("ccc_app.exit_after".into())
        );
        for bad in ["0", "-1", "two", ""] {
            let line = format!("ccc.emulation=1 ccc_app.exit_after={bad}");
            let error = Settings::from_sources(&env(&[]), &line).unwrap_err();
            assert!(
                matches!(&error, ConfigError::BadValue { name, .. } if name == "ccc_app.exit_after"),
                "{bad}: {error}"
            );
        }
        // No environment variable sets it: an image's /env cannot make a release exit.
        let error = Settings::from_sources(&env(&[("CCC_APP_EXIT_AFTER", "1")]), "").unwrap_err();
        assert_eq!(
            error,
            ConfigError::UnknownVariable("CCC_APP_EXIT_AFTER".into())
        );
    }
}
