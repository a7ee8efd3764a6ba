//! The enclave's settings: compiled defaults (`app.rs`), the image's environment (`/env`,
//! variables `CCC_APP_*`) and, for emulation only, the kernel command line (`ccc_app.*`).
//!
//! # Where each source comes from, and what it proves
//! - The defaults in `app.rs` are compiled into the binary, which sits in the image's
//!   ramdisk: measured into PCR2.
//! - `/env` is written into the same ramdisk by the image build: measured into PCR2 as well.
//!   So a KMS key policy pinning PCR2 pins these settings; changing the region, the trusted
//!   key or a port gives a new PCR2. The trusted key is one of them, as a full key ARN
//!   (`CCC_APP_KEY_ARN` / `KEY_ARN`): an alias or a bare key id is refused here, because it
//!   resolves in whatever account signs the request, and the parent supplies the credentials.
//! - The kernel command line is NOT covered by PCR2. On Nitro it is the one inside the EIF,
//!   measured into PCR0 and PCR1 (nitro-cli cannot add to it); a parent that rebuilds the EIF
//!   with other words keeps PCR2 and changes PCR0 and PCR1, so a key policy pinning PCR2 alone
//!   would still release keys to it. Under QEMU, `-append` adds words that are not measured at
//!   all. The `ccc_app.*` switches (the emulator's CA as base64 DER, region, trusted key,
//!   port, exit after N requests, a production console) and `ccc.emulation=1` exist for QEMU
//!   emulation only: they are accepted here only together with `ccc.emulation=1` and a
//!   mistyped one stops the enclave (as the init does for `ccc.*`), and at start
//!   (`crate::start`) the enclave honours them only if its own NSM attestation document is
//!   QEMU's unsigned one. With a signed
//!   document (real Nitro, or the signed simulator) their mere presence stops the start
//!   ([`crate::StartError::EmulationSwitchesOnSignedDocument`]): a parent that rebuilt the EIF
//!   with its own CA on the command line cannot read the enclave's KMS traffic, whatever the
//!   key policy pins.
//! - `ccc.parent_cid` is the init's switch (the heartbeat's CID); the app uses the same value
//!   so both always talk to the same parent (3 on Nitro, 2 under QEMU's vhost-user vsock).
//!
//! Precedence, highest first: `ccc_app.*` (emulation) > `CCC_APP_*` > `app.rs` defaults.
//! An unknown `CCC_APP_*` variable is an error, so a typo never silently keeps a default.

use ccc_sdk::kms::{KeyArn, KeyArnError};
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
const ENV_KNOWN: &str = "CCC_APP_REGION, CCC_APP_KEY_ARN, CCC_APP_PORT, CCC_APP_PARENT_CID, \
     CCC_APP_KMS_PROXY_PORT, CCC_APP_CREDENTIALS_PORT, CCC_APP_KMS_HOST, CCC_APP_KMS_CA_FILE, \
     CCC_APP_NSM, CCC_APP_LISTEN, CCC_APP_KMS_ENDPOINT, CCC_APP_CREDENTIALS_ENDPOINT, \
     CCC_APP_MAX_CONNECTIONS, CCC_APP_LOG_PORT, CCC_APP_LOG_ENDPOINT";

/// The command-line switches read, for error messages.
const CMDLINE_KNOWN: &str = "ccc_app.kms_ca=<base64 DER>, ccc_app.region=, ccc_app.key_arn=, \
     ccc_app.port=, ccc_app.exit_after=<requests>, ccc_app.console=production";

/// Settings that were renamed, with what to write instead.
const RENAMED: [(&str, &str); 2] = [
    (
        "CCC_APP_KEY_ID",
        "CCC_APP_KEY_ARN, with the key's full ARN (arn:aws:kms:<region>:<account>:key/<id>)",
    ),
    (
        "ccc_app.key_id",
        "ccc_app.key_arn, with the key's full ARN (arn:aws:kms:<region>:<account>:key/<id>)",
    ),
];

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
    /// The KMS key the enclave trusts: every seal, unseal, data key and hmac uses it, and
    /// nothing else. `None`: only attest and random work.
    pub key_arn: Option<KeyArn>,
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
    /// Where the log records go (default the parent's log port, `vsock://<parent>:8003`;
    /// docs/log-protocol.md).
    pub log_endpoint: Endpoint,
    /// Emulation only (`ccc_app.console=production`): the console behaves as a production
    /// enclave's even under QEMU (one start line), so a harness can show that everything an
    /// operator needs arrives through the log channel.
    pub console_production: bool,
    /// Which NSM.
    pub nsm: NsmChoice,
    /// Connections served at once.
    pub max_connections: usize,
    /// `ccc.emulation=1` was on the command line.
    pub emulation: bool,
    /// Every emulation-only word on the command line (`ccc.emulation=1`, `ccc_app.*`), as
    /// written up to its `=`: honoured only with a QEMU-unsigned NSM document (checked at
    /// start).
    pub emulation_switches: Vec<String>,
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
    /// A setting that was renamed.
    Renamed {
        /// The old name.
        old: &'static str,
        /// What to write instead.
        new: &'static str,
    },
    /// The trusted key is not a key ARN (an alias, a bare key id, a malformed ARN).
    KeyArn {
        /// The variable or switch.
        name: String,
        /// Why, and what to write.
        error: KeyArnError,
    },
    /// The trusted key is in another region than the enclave's.
    KeyRegion {
        /// The key ARN.
        key: String,
        /// The enclave's region.
        region: String,
    },
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
            Self::Renamed { old, new } => write!(f, "{old} was renamed: write {new}"),
            Self::KeyArn { name, error } => write!(f, "{name}: {error}"),
            Self::KeyRegion { key, region } => write!(
                f,
                "the trusted key {key} is not in the enclave's region {region} (KMS keys are \
                 regional): set CCC_APP_REGION to the key's region, or use a key in {region}"
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
    /// `ccc.emulation=1` and every `ccc_app.*` word, up to its `=`, in order.
    emulation_words: Vec<String>,
}

fn parse_cmdline(text: &str) -> Result<Cmdline, ConfigError> {
    let mut cmdline = Cmdline::default();
    let mut app_words = Vec::new();
    for word in ccc_cmdline::words(text) {
        let (key, value) = ccc_cmdline::parameter(&word);
        match key {
            "ccc.parent_cid" => cmdline.parent_cid = Some(value.to_owned()),
            "ccc.emulation" => {
                cmdline.emulation = value == "1";
                if cmdline.emulation {
                    cmdline.emulation_words.push("ccc.emulation=1".to_owned());
                }
            }
            _ => {
                if let Some(name) = key.strip_prefix(CMDLINE_PREFIX) {
                    if let Some((old, new)) = RENAMED.iter().find(|(old, _)| *old == key) {
                        return Err(ConfigError::Renamed { old, new });
                    }
                    if !matches!(
                        name,
                        "kms_ca" | "region" | "key_arn" | "port" | "exit_after" | "console"
                    ) {
                        return Err(ConfigError::UnknownSwitch(word));
                    }
                    app_words.push(key.to_owned());
                    cmdline.emulation_words.push(key.to_owned());
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
            if let Some((old, new)) = RENAMED.iter().find(|(old, _)| old == name) {
                return Err(ConfigError::Renamed { old, new });
            }
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
        let key_arn = match sources.pick(
            "KEY_ARN",
            Some("key_arn"),
            crate::app::KEY_ARN.map(str::to_owned),
        ) {
            None => None,
            Some((text, origin)) => {
                let name = match origin {
                    Origin::Default => "KEY_ARN in app.rs".to_owned(),
                    Origin::Environment => "CCC_APP_KEY_ARN".to_owned(),
                    Origin::Cmdline => "ccc_app.key_arn".to_owned(),
                };
                let key =
                    KeyArn::parse(&text).map_err(|error| ConfigError::KeyArn { name, error })?;
                if key.region() != region {
                    return Err(ConfigError::KeyRegion {
                        key: key.to_string(),
                        region,
                    });
                }
                Some(key)
            }
        };
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
        let log_port = sources.port("LOG_PORT", None, ccc_sdk::log::DEFAULT_PORT)?;
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
        let log_endpoint = match sources.pick("LOG_ENDPOINT", None, None) {
            Some((v, _)) => endpoint("CCC_APP_LOG_ENDPOINT", &v)?,
            None => Endpoint::Vsock(VsockAddr::new(parent_cid, log_port)),
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
        let console_production = match sources.pick("CONSOLE", Some("console"), None) {
            // Only the command line can set it, and only with ccc.emulation=1.
            Some((v, Origin::Cmdline)) if v == "production" => true,
            Some((_, Origin::Cmdline)) => {
                return Err(ConfigError::BadValue {
                    name: "ccc_app.console".into(),
                    expected: "`production` (the console of a production enclave: one start \
                               line; records go to the log channel)",
                });
            }
            _ => false,
        };
        if cmdline.emulation {
            sources
                .report
                .push(("ccc.emulation".into(), "1".into(), Origin::Cmdline));
        }
        Ok(Self {
            region,
            key_arn,
            listen,
            kms_endpoint,
            kms_host,
            kms_trust,
            credentials_endpoint,
            log_endpoint,
            console_production,
            nsm,
            max_connections,
            emulation: cmdline.emulation,
            emulation_switches: cmdline.emulation_words,
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
        assert_eq!(s.log_endpoint.to_string(), "vsock://3:8003");
        assert!(!s.console_production);
        assert_eq!(s.kms_trust, TrustAnchors::AmazonRoots);
        assert_eq!(s.nsm, NsmChoice::Device);
        assert_eq!(
            s.kms_host(),
            format!("kms.{}.amazonaws.com", crate::app::REGION)
        );
        assert!(!s.emulation);
    }

    const ENV_KEY: &str =
        "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    const QEMU_KEY: &str =
        "arn:aws:kms:eu-west-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab";

    #[test]
    fn env_then_cmdline_override() {
        let vars = env(&[
            ("CCC_APP_REGION", "eu-west-1"),
            ("CCC_APP_PORT", "6000"),
            ("CCC_APP_KEY_ARN", ENV_KEY),
        ]);
        let s = Settings::from_sources(&vars, "").unwrap();
        assert_eq!(s.region, "eu-west-1");
        assert_eq!(s.listen.to_string(), "vsock://4294967295:6000");
        assert_eq!(s.key_arn.as_ref().map(KeyArn::as_str), Some(ENV_KEY));
        assert!(s.emulation_switches.is_empty());

        // QEMU: the init's parent CID and emulation switches, plus the app's own.
        let ca = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, b"der");
        let line = format!(
            "console=ttyS0 ccc.emulation=1 ccc.parent_cid=2 ccc_app.key_arn={QEMU_KEY} \
             ccc_app.kms_ca={ca}"
        );
        let s = Settings::from_sources(&vars, &line).unwrap();
        assert!(s.emulation);
        assert_eq!(
            s.emulation_switches,
            ["ccc.emulation=1", "ccc_app.key_arn", "ccc_app.kms_ca"]
        );
        assert_eq!(s.kms_endpoint.to_string(), "vsock://2:8000");
        assert_eq!(s.credentials_endpoint.to_string(), "vsock://2:8002");
        assert_eq!(s.log_endpoint.to_string(), "vsock://2:8003");
        assert_eq!(s.key_arn.as_ref().map(KeyArn::as_str), Some(QEMU_KEY));
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
            s.report
                .iter()
                .any(|(n, v, o)| n == "ccc_app.key_arn" && v == QEMU_KEY && *o == Origin::Cmdline)
        );
    }

    /// The trusted key is a full key ARN in the enclave's region: aliases, bare ids and the
    /// old setting names are refused at start with what to write.
    #[test]
    fn the_trusted_key_must_be_a_full_arn() {
        for (vars, line, needles) in [
            (
                vec![("CCC_APP_KEY_ARN", "alias/ccc-enclave")],
                "",
                vec!["CCC_APP_KEY_ARN", "is an alias", "parent supplies"],
            ),
            (
                vec![(
                    "CCC_APP_KEY_ARN",
                    "arn:aws:kms:us-east-1:111122223333:alias/ccc-enclave",
                )],
                "",
                vec![
                    "is an alias",
                    "arn:aws:kms:<region>:<12-digit account>:key/",
                ],
            ),
            (
                vec![("CCC_APP_KEY_ARN", "1234abcd-12ab-34cd-56ef-1234567890ab")],
                "",
                vec!["bare key id"],
            ),
            (
                vec![("CCC_APP_KEY_ID", "alias/x")],
                "",
                vec!["CCC_APP_KEY_ID was renamed", "CCC_APP_KEY_ARN"],
            ),
            (
                vec![],
                "ccc.emulation=1 ccc_app.key_id=alias/x",
                vec!["ccc_app.key_id was renamed", "ccc_app.key_arn"],
            ),
            (
                vec![
                    ("CCC_APP_REGION", "us-east-1"),
                    ("CCC_APP_KEY_ARN", ENV_KEY),
                ],
                "",
                vec!["not in the enclave's region us-east-1"],
            ),
        ] {
            let error = Settings::from_sources(&env(&vars), line).unwrap_err();
            let text = error.to_string();
            for needle in needles {
                assert!(text.contains(needle), "{needle}: {text}");
            }
        }
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

    /// The log channel follows the parent's CID and its own port; `ccc_app.console=production`
    /// is an emulation-only switch with one value.
    #[test]
    fn the_log_channel_and_the_production_console_switch() {
        let s = Settings::from_sources(&env(&[("CCC_APP_LOG_PORT", "9100")]), "").unwrap();
        assert_eq!(s.log_endpoint.to_string(), "vsock://3:9100");
        let s = Settings::from_sources(
            &env(&[("CCC_APP_LOG_ENDPOINT", "tcp://127.0.0.1:7000")]),
            "",
        )
        .unwrap();
        assert_eq!(s.log_endpoint.to_string(), "tcp://127.0.0.1:7000");

        let s = Settings::from_sources(
            &env(&[]),
            "ccc.emulation=1 ccc.parent_cid=2 ccc_app.console=production",
        )
        .unwrap();
        assert!(s.console_production);
        assert!(s.emulation_switches.contains(&"ccc_app.console".to_owned()));
        assert_eq!(s.log_endpoint.to_string(), "vsock://2:8003");
        assert_eq!(
            Settings::from_sources(&env(&[]), "ccc_app.console=production").unwrap_err(),
            ConfigError::SwitchOutsideEmulation("ccc_app.console".into())
        );
        let error =
            Settings::from_sources(&env(&[]), "ccc.emulation=1 ccc_app.console=full").unwrap_err();
        assert!(
            matches!(&error, ConfigError::BadValue { name, .. } if name == "ccc_app.console"),
            "{error}"
        );
        // No environment variable sets it: an image's /env cannot silence a debug console.
        assert_eq!(
            Settings::from_sources(&env(&[("CCC_APP_CONSOLE", "production")]), "").unwrap_err(),
            ConfigError::UnknownVariable("CCC_APP_CONSOLE".into())
        );
    }
}
