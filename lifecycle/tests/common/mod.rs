//! Scratch lifecycle files for the tests: a release history of synthetic measurements and an
//! environments file, written into a directory of their own (the repository's are never
//! touched, and nothing depends on which versions are committed).
#![allow(dead_code, unreachable_pub, reason = "each test file uses a part")]

use ccc_lifecycle::files::{Files, Paths};
use ccc_policy::expectations::{Expectations, Release};
use std::path::PathBuf;

pub fn hex_of(byte: u8) -> String {
    format!("{byte:02x}").repeat(48)
}

/// PCR8 of the signer of release 0.3.0 in [`expectations`].
pub fn signer_pcr8() -> String {
    hex_of(0x88)
}

/// Three releases: 0.1.0 (the one rolled out of every environment), 0.2.0 (the previous) and
/// 0.3.0 (the release, signed). Seeds give each PCR its own value.
pub fn expectations() -> Expectations {
    let mut e = Expectations::default();
    for (version, seed, pcr8) in [
        ("0.1.0", 0x10u8, None),
        ("0.2.0", 0x20, None),
        ("0.3.0", 0x30, Some(signer_pcr8())),
    ] {
        e.record(
            version,
            Release::new(
                [&hex_of(seed), &hex_of(seed + 1), &hex_of(seed + 2)],
                pcr8.as_deref(),
                "2026-12-01T10:00:00+00:00",
                &"ab".repeat(20),
            )
            .unwrap(),
        )
        .unwrap();
    }
    e
}

/// Emulators of every environment run in one account and region (the emulator's default
/// key lives there).
pub const ACCOUNT: &str = "111122223333";
pub const REGION: &str = "us-east-1";

fn environment(name: &str, kind: &str, allowed: &str, extra: &str) -> String {
    format!(
        r#"
[environments.{name}]
kind = "{kind}"
account = "{ACCOUNT}"
region = "{REGION}"
key_arn = "arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
enclave_role_arn = "arn:aws:iam::{ACCOUNT}:role/{name}-parent"
key_admin_role_arn = "arn:aws:iam::{ACCOUNT}:role/{name}-key-admin"
allowed_versions = [{allowed}]
{extra}
"#
    )
}

/// development allows the release and accepts debug mode and the simulator; staging rolls out
/// (previous and release); production still runs the previous; canary pins the signer.
pub fn environments_file() -> String {
    format!(
        "format = 1\n{}{}{}{}",
        environment(
            "development",
            "development",
            "\"0.3.0\"",
            "pin = \"pcrs\"\naccept_debug_mode = true\naccept_simulator = true",
        ),
        environment(
            "staging",
            "staging",
            "\"0.2.0\", \"0.3.0\"",
            "pin = \"pcrs\""
        ),
        environment("production", "production", "\"0.2.0\"", "pin = \"pcrs\""),
        environment(
            "canary",
            "production",
            "\"0.3.0\"",
            &format!(
                "pin = \"signer\"\n[environments.canary.signer]\npcr8 = \"{}\"",
                signer_pcr8()
            ),
        ),
    )
}

/// A scratch directory with `release/pcr-expectations.json` and `deploy/environments.toml`.
pub struct Scratch {
    pub root: PathBuf,
}

impl Scratch {
    pub fn new(name: &str) -> Self {
        let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join("lifecycle")
            .join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("release")).unwrap();
        std::fs::create_dir_all(root.join("deploy")).unwrap();
        std::fs::write(
            root.join("release/pcr-expectations.json"),
            expectations().to_json(),
        )
        .unwrap();
        std::fs::write(root.join("deploy/environments.toml"), environments_file()).unwrap();
        Self { root }
    }

    pub fn paths(&self) -> Paths {
        Files::default().resolve(&self.root)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// `cargo xtask policy ARGS...` (as clap parses them), run in `context`: the exit status (2 for
/// an error, whose message is appended to the output) and what it printed.
pub fn policy(context: &ccc_lifecycle::Context, args: &[&str]) -> (u8, String) {
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: ccc_lifecycle::policy::Args,
    }
    let cli = <Cli as clap::Parser>::try_parse_from(
        std::iter::once("policy").chain(args.iter().copied()),
    )
    .unwrap_or_else(|e| panic_free(&e.to_string()));
    let mut out = Vec::new();
    let code = match ccc_lifecycle::policy::execute(context, &cli.args, &mut out) {
        Ok(code) => code,
        Err(e) => {
            out.extend_from_slice(format!("error: {e}\n").as_bytes());
            2
        }
    };
    (code, String::from_utf8(out).unwrap())
}

/// `cargo xtask explain ARGS...`, as [`policy`].
pub fn explain(context: &ccc_lifecycle::Context, args: &[&str]) -> (u8, String) {
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: ccc_lifecycle::explain::Args,
    }
    let cli = <Cli as clap::Parser>::try_parse_from(
        std::iter::once("explain").chain(args.iter().copied()),
    )
    .unwrap_or_else(|e| panic_free(&e.to_string()));
    let mut out = Vec::new();
    let code = match ccc_lifecycle::explain::execute(context, &cli.args, &mut out) {
        Ok(code) => code,
        Err(e) => {
            out.extend_from_slice(format!("error: {e}\n").as_bytes());
            2
        }
    };
    (code, String::from_utf8(out).unwrap())
}

/// Fails the test with a message (clap's usage error).
fn panic_free(message: &str) -> ! {
    assert!(message.is_empty(), "bad arguments in the test: {message}");
    unreachable!("{message}")
}
