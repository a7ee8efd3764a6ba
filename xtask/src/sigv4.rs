//! `cargo xtask sigv4 sign --request FILE.json`: signs a request described in the shape of the
//! project's KMS SigV4 vectors (`sigv4-test-suite/kms-extra/*/request.json`) and prints the
//! canonical request, the string to sign and the headers to add, for comparing with what a
//! server or another signer computed. The secret access key is never printed; the session
//! token only with `--show-token`.

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use ccc_sdk::crypto::AwsLc;
use ccc_sdk::sigv4::{Credentials, Request, Settings, SigV4, SigningParams};
use ccc_sdk::time::UnixMillis;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// `cargo xtask sigv4 ...`
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Sign a request and print the canonical request, string to sign and Authorization.
    Sign {
        /// JSON with method, path, query, headers ([name, value] pairs), body or body_base64,
        /// region, service, and optionally date (YYYYMMDDTHHMMSSZ; default: now),
        /// add_x_amz_content_sha256_header, and credentials {access_key_id,
        /// secret_access_key, session_token} (default: AWS_ACCESS_KEY_ID,
        /// AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN from the environment).
        #[arg(long, value_name = "FILE.json")]
        request: PathBuf,
        /// Print the session token instead of a placeholder (it is a credential).
        #[arg(long)]
        show_token: bool,
    },
}

/// Runs `cargo xtask sigv4`.
pub(crate) fn run(args: &Args) -> Result<()> {
    match &args.command {
        Command::Sign {
            request,
            show_token,
        } => {
            let out = sign_file(request, *show_token)?;
            eprintln!("{}", out.source);
            print!("{}", out.report);
            Ok(())
        }
    }
}

/// The result of signing a request file.
pub(crate) struct Output {
    /// Where the credentials came from (for stderr).
    pub(crate) source: String,
    /// What goes to stdout.
    pub(crate) report: String,
}

fn text<'a>(request: &'a Value, field: &str) -> Result<&'a str> {
    request[field]
        .as_str()
        .with_context(|| format!("request file: \"{field}\" must be a string"))
}

fn parse_amz_date(date: &str) -> Result<UnixMillis> {
    let d = date.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        date.get(range)
            .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
            .context("date must be YYYYMMDDTHHMMSSZ, e.g. 20150830T123600Z")
    };
    if d.len() != 16 || d[8] != b'T' || d[15] != b'Z' {
        bail!("date must be YYYYMMDDTHHMMSSZ, e.g. 20150830T123600Z (got {date:?})");
    }
    let rfc3339 = format!(
        "{}-{}-{}T{}:{}:{}Z",
        digits(0..4)?,
        digits(4..6)?,
        digits(6..8)?,
        digits(9..11)?,
        digits(11..13)?,
        digits(13..15)?
    );
    UnixMillis::parse(&rfc3339).map_err(|e| anyhow::anyhow!("date {date:?}: {e}"))
}

fn credentials(request: &Value, file: &Path) -> Result<(Credentials, String)> {
    let (akid, secret, token, source) = if let Some(c) = request.get("credentials") {
        (
            c["access_key_id"].as_str().map(String::from),
            c["secret_access_key"].as_str().map(String::from),
            c["session_token"].as_str().map(String::from),
            format!("credentials: from {}", file.display()),
        )
    } else {
        (
            std::env::var("AWS_ACCESS_KEY_ID").ok(),
            std::env::var("AWS_SECRET_ACCESS_KEY").ok(),
            std::env::var("AWS_SESSION_TOKEN").ok(),
            String::from(
                "credentials: from the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, \
                 AWS_SESSION_TOKEN); the request file has no \"credentials\"",
            ),
        )
    };
    let (Some(akid), Some(secret)) = (akid, secret) else {
        bail!(
            "no credentials: put \"credentials\": {{\"access_key_id\", \"secret_access_key\", \
             \"session_token\"}} in the request file or set AWS_ACCESS_KEY_ID and \
             AWS_SECRET_ACCESS_KEY"
        );
    };
    let has_token = token.is_some();
    let credentials = Credentials::new(akid, secret, token)?;
    let source = format!(
        "{source}; access key id {}, session token: {}",
        credentials.access_key_id(),
        if has_token { "yes" } else { "no" }
    );
    Ok((credentials, source))
}

/// Signs the request in `file`.
pub(crate) fn sign_file(file: &Path, show_token: bool) -> Result<Output> {
    let raw = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let request: Value =
        serde_json::from_slice(&raw).with_context(|| format!("{} is not JSON", file.display()))?;
    let body = match (request.get("body_base64"), request.get("body")) {
        (Some(b64), _) => base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().context("\"body_base64\" must be a string")?)
            .context("\"body_base64\" is not standard base64")?,
        (None, Some(body)) => body
            .as_str()
            .context("\"body\" must be a string")?
            .as_bytes()
            .to_vec(),
        (None, None) => Vec::new(),
    };
    let headers: Vec<(&str, &str)> = request["headers"]
        .as_array()
        .context("\"headers\" must be a list of [name, value] pairs")?
        .iter()
        .map(|pair| match (pair[0].as_str(), pair[1].as_str()) {
            (Some(name), Some(value)) => Ok((name, value)),
            _ => bail!("each header must be a [name, value] pair of strings"),
        })
        .collect::<Result<_>>()?;
    let time = match request.get("date").and_then(Value::as_str) {
        Some(date) => parse_amz_date(date)?,
        None => UnixMillis::now(),
    };
    let (credentials, source) = credentials(&request, file)?;
    let params = SigningParams {
        credentials: &credentials,
        region: text(&request, "region")?,
        service: text(&request, "service")?,
        time,
        settings: Settings {
            content_sha256_header: request["add_x_amz_content_sha256_header"]
                .as_bool()
                .unwrap_or(false),
            ..Settings::default()
        },
    };
    let signable = Request {
        method: request["method"].as_str().unwrap_or("POST"),
        path: request["path"].as_str().unwrap_or("/"),
        query: request["query"].as_str().unwrap_or(""),
        headers: &headers,
        body: &body,
    };
    let signed = SigV4::new().sign(&AwsLc, &params, &signable)?;

    let token = signed
        .headers()
        .find(|(name, _)| *name == "X-Amz-Security-Token")
        .map(|(_, value)| value.to_owned());
    let hide = |text: &str| match (&token, show_token) {
        (Some(token), false) => text.replace(token.as_str(), "<session token: --show-token>"),
        _ => text.to_owned(),
    };
    let mut report = String::new();
    report.push_str("canonical request:\n");
    report.push_str(&hide(&signed.canonical_request()));
    if token.is_some() && !show_token {
        report.push_str(
            "\n(the session token is hidden above, so this text does not hash to the last line \
             of the string to sign)",
        );
    }
    report.push_str("\n\nstring to sign:\n");
    report.push_str(signed.string_to_sign());
    report.push_str("\n\nheaders to add:\n");
    for (name, value) in signed.headers() {
        report.push_str(&format!("{name}: {}\n", hide(value)));
    }
    Ok(Output { source, report })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kms_extra() -> PathBuf {
        ccc_test_vectors::path("sigv4-test-suite/kms-extra")
    }

    #[test]
    fn signs_every_kms_extra_case_and_hides_secrets() {
        for case in [
            "generate-random-sdk-c-shape-content-sha256",
            "decrypt-utf8-body-no-token",
        ] {
            let dir = kms_extra().join(case);
            let out = sign_file(&dir.join("request.json"), false).unwrap();
            let expected = std::fs::read_to_string(dir.join("authorization.txt")).unwrap();
            assert!(
                out.report.contains(&format!("Authorization: {expected}\n")),
                "{case}: {}",
                out.report
            );
            let string_to_sign = std::fs::read_to_string(dir.join("string-to-sign.txt")).unwrap();
            assert!(out.report.contains(&string_to_sign), "{case}");
            assert!(out.source.contains("from"), "{}", out.source);
            for secret in ["wJalrXUtnFEMI", "IQoJb3JpZ2luX2VjEXAMPLE"] {
                assert!(!out.report.contains(secret), "{case}: {secret} printed");
                assert!(!out.source.contains(secret), "{case}: {secret} printed");
            }
        }
        let shown = sign_file(
            &kms_extra().join("generate-random-sdk-c-shape-content-sha256/request.json"),
            true,
        )
        .unwrap();
        assert!(shown.report.contains("IQoJb3JpZ2luX2VjEXAMPLE"));
        assert!(!shown.report.contains("wJalrXUtnFEMI"));
    }

    #[test]
    fn dates_must_be_amz_dates() {
        assert_eq!(
            parse_amz_date("20150830T123600Z").unwrap(),
            UnixMillis(1_440_938_160_000)
        );
        for bad in [
            "2015-08-30",
            "20150830T123600",
            "2015083xT123600Z",
            "20151330T123600Z",
        ] {
            assert!(parse_amz_date(bad).is_err(), "{bad}");
        }
    }
}
