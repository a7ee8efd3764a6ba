//! The kernel command line: the `ccc.*` switches that steer the init.
//!
//! The command line the EIF carries is measured (PCR0 and PCR1), so on Nitro these switches are
//! part of the image's identity. QEMU's `-append` adds words after it without changing any PCR;
//! that is how emulation turns `ccc.emulation=1` on. When a key appears twice the last value wins,
//! as for the kernel's own parameters, so an appended value overrides the image's.
//!
//! The kernel hands parameters containing a dot to no one but /proc/cmdline (it treats them as
//! options of a module and drops unknown ones), so the init reads them from there, split into
//! words by `ccc_cmdline` (the splitter the template enclave uses too).

use std::fmt;

/// The parent instance's vsock CID on Nitro (AWS: "the parent instance always uses CID 3";
/// nitro-cli listens for the heartbeat there).
pub(crate) const NITRO_PARENT_CID: u32 = 3;

/// Prefix of every switch this init reads.
const PREFIX: &str = "ccc.";

/// The switches the init understands, for error messages.
const KNOWN: &str = "ccc.parent_cid=<CID>, ccc.emulation=<0|1>";

/// What the kernel command line asks of the init.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BootOptions {
    /// vsock CID of the parent, where the heartbeat goes (`ccc.parent_cid`, default 3).
    pub(crate) parent_cid: u32,
    /// Emulation requested (`ccc.emulation=1`): a failed heartbeat is reported, not fatal.
    pub(crate) emulation: bool,
}

impl Default for BootOptions {
    fn default() -> Self {
        Self {
            parent_cid: NITRO_PARENT_CID,
            emulation: false,
        }
    }
}

/// A `ccc.*` switch the init cannot accept.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) enum CmdlineError {
    /// The command line cannot be read as text (too long, not UTF-8).
    Text(ccc_cmdline::CmdlineError),
    /// A switch starting with `ccc.` that this init does not know (a typo would otherwise
    /// silently keep the default).
    UnknownKey { word: String },
    /// A known switch with a value it cannot take.
    BadValue {
        key: &'static str,
        value: String,
        expected: &'static str,
    },
}

impl fmt::Display for CmdlineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Text(error) => error.fmt(f),
            Self::UnknownKey { word } => write!(
                f,
                "unknown switch `{word}` on the kernel command line; this init knows {KNOWN}. \
                 Fix the EIF's command line (or QEMU's -append)"
            ),
            Self::BadValue {
                key,
                value,
                expected,
            } => write!(
                f,
                "`{key}={value}` on the kernel command line: expected {expected}"
            ),
        }
    }
}

/// Parses the `ccc.*` switches out of the contents of /proc/cmdline.
///
/// # Errors
/// An unknown `ccc.*` key, a bad value, or a command line that is too long or not UTF-8.
pub(crate) fn parse(raw: &[u8]) -> Result<BootOptions, CmdlineError> {
    let text = ccc_cmdline::text(raw).map_err(CmdlineError::Text)?;
    let mut options = BootOptions::default();
    for word in ccc_cmdline::words(text) {
        let Some(rest) = word.strip_prefix(PREFIX) else {
            continue;
        };
        let (key, value) = ccc_cmdline::parameter(rest);
        match key {
            "parent_cid" => options.parent_cid = parse_cid(value)?,
            "emulation" => options.emulation = parse_flag("ccc.emulation", value)?,
            _ => return Err(CmdlineError::UnknownKey { word }),
        }
    }
    Ok(options)
}

fn parse_cid(value: &str) -> Result<u32, CmdlineError> {
    let bad = || CmdlineError::BadValue {
        key: "ccc.parent_cid",
        value: value.to_owned(),
        expected: "a decimal vsock CID from 2 to 4294967294 (3 on Nitro, 2 for QEMU's \
                   vhost-device-vsock Unix-socket backend)",
    };
    // Digits only: `u32::from_str` would also take a leading `+`.
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let cid: u32 = value.parse().map_err(|_| bad())?;
    // 0 (hypervisor) and 1 (local loopback) are reserved, u32::MAX is VMADDR_CID_ANY.
    if cid < 2 || cid == u32::MAX {
        return Err(bad());
    }
    Ok(cid)
}

fn parse_flag(key: &'static str, value: &str) -> Result<bool, CmdlineError> {
    match value {
        "1" => Ok(true),
        "0" => Ok(false),
        _ => Err(CmdlineError::BadValue {
            key,
            value: value.to_owned(),
            expected: "0 or 1",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// nitro-cli's default x86_64 command line (blobs/x86_64/cmdline).
    const AWS_CMDLINE: &str = "reboot=k panic=30 pci=off nomodules console=ttyS0 i8042.noaux \
                               i8042.nomux i8042.nopnp i8042.dumbkbd random.trust_cpu=on";

    #[test]
    fn defaults_on_nitros_command_line() {
        let options = parse(format!("{AWS_CMDLINE}\n").as_bytes()).unwrap();
        assert_eq!(
            options,
            BootOptions {
                parent_cid: 3,
                emulation: false
            }
        );
    }

    #[test]
    fn appended_switches_as_qemu_adds_them() {
        // QEMU appends -append after the EIF's line, then the virtio_mmio.device entries.
        let line = format!(
            "{AWS_CMDLINE} tsc_early_khz=2600000 reboot=t ccc.emulation=1 ccc.parent_cid=2 \
             virtio_mmio.device=512@0xfeb00e00:12 virtio_mmio.device=512@0xfeb00c00:11\n"
        );
        let options = parse(line.as_bytes()).unwrap();
        assert_eq!(options.parent_cid, 2);
        assert!(options.emulation);
    }

    #[test]
    fn last_value_wins() {
        let options =
            parse(b"ccc.parent_cid=7 ccc.emulation=1 ccc.parent_cid=5 ccc.emulation=0").unwrap();
        assert_eq!(options.parent_cid, 5);
        assert!(!options.emulation);
    }

    #[test]
    fn quoted_switches_are_recognised() {
        assert_eq!(parse(b"\"ccc.parent_cid=9\"").unwrap().parent_cid, 9);
        assert_eq!(parse(b"ccc.parent_cid=\"10\"").unwrap().parent_cid, 10);
    }

    #[test]
    fn unknown_ccc_switch_is_an_error() {
        let err = parse(b"ccc.emulaton=1").unwrap_err();
        assert_eq!(
            err,
            CmdlineError::UnknownKey {
                word: "ccc.emulaton=1".into()
            }
        );
        assert!(err.to_string().contains("ccc.emulation=<0|1>"), "{err}");
    }

    #[test]
    fn bad_cids_are_rejected() {
        for value in [
            "",
            "0",
            "1",
            "4294967295",
            "4294967296",
            "+3",
            "-3",
            "0x3",
            "3a",
        ] {
            let line = format!("ccc.parent_cid={value}");
            let err = parse(line.as_bytes()).unwrap_err();
            assert!(
                matches!(
                    err,
                    CmdlineError::BadValue {
                        key: "ccc.parent_cid",
                        ..
                    }
                ),
                "{value}: {err:?}"
            );
        }
        assert_eq!(
            parse(b"ccc.parent_cid=4294967294").unwrap().parent_cid,
            u32::MAX - 1
        );
    }

    #[test]
    fn bad_flags_are_rejected() {
        for line in [
            "ccc.emulation",
            "ccc.emulation=",
            "ccc.emulation=yes",
            "ccc.emulation=2",
        ] {
            let err = parse(line.as_bytes()).unwrap_err();
            assert!(
                matches!(
                    err,
                    CmdlineError::BadValue {
                        key: "ccc.emulation",
                        ..
                    }
                ),
                "{line}: {err:?}"
            );
        }
    }

    #[test]
    fn limits() {
        let long = ccc_cmdline::MAX_LEN + 1;
        assert_eq!(
            parse(&vec![b' '; long]),
            Err(CmdlineError::Text(ccc_cmdline::CmdlineError::TooLong {
                len: long
            }))
        );
        assert_eq!(
            parse(b"ccc.emulation=\xff"),
            Err(CmdlineError::Text(ccc_cmdline::CmdlineError::NotUtf8))
        );
    }
}
