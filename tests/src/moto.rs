//! moto (PyPI `moto[server]`) as an independent SigV4-verifying KMS on loopback: installed
//! once into a virtualenv under `target/tools/`, started per test on a kernel-chosen port
//! (ready when it prints its `Running on http://127.0.0.1:<port>` line), with IAM
//! authentication switched on after an IAM user, its access key, its policy and a KMS key
//! were created through the first unauthenticated calls (research notes §3.3).
//!
//! Every call here is made with CCC's own SigV4 signer and HTTP client, so the setup itself
//! is interop.

use ccc_sdk::crypto::AwsLc;
use ccc_sdk::http;
use ccc_sdk::net::{Endpoint, Stream, Timeouts};
use ccc_sdk::sigv4::{Credentials, Request, Settings, SigV4, SigningParams};
use ccc_sdk::time::UnixMillis;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::Duration;

/// The moto release tested against (the research notes verified 5.2.5's behaviour).
pub const MOTO_VERSION: &str = "5.2.5";

/// The region the tests use.
pub const REGION: &str = "us-east-1";

/// How long moto may take to print its readiness line (it imports every backend first).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(120);

/// Serializes installs within one test process (tests run on parallel threads).
static INSTALL: Mutex<()> = Mutex::new(());

/// The virtualenv for [`MOTO_VERSION`] under `tools_dir`, created on first use:
/// `python3 -m venv` into a temporary directory, `pip install moto[server]==<version>`, then
/// an atomic rename (a concurrent process that loses the race uses the winner's).
///
/// # Errors
/// A message naming the failed command and the fix (the Debian package `python3-venv`).
pub fn ensure_installed(tools_dir: &Path) -> Result<PathBuf, String> {
    let _one_at_a_time = INSTALL
        .lock()
        .map_err(|_| "install lock poisoned".to_owned())?;
    let venv = tools_dir.join(format!("moto-venv-{MOTO_VERSION}"));
    let python = venv.join("bin/python");
    if python.exists() {
        return Ok(python);
    }
    std::fs::create_dir_all(tools_dir)
        .map_err(|e| format!("cannot create {}: {e}", tools_dir.display()))?;
    let staging = tools_dir.join(format!(
        "moto-venv-{MOTO_VERSION}.tmp-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&staging);
    let system_python = std::env::var("CCC_PYTHON").unwrap_or_else(|_| "python3".into());
    eprintln!(
        "moto: installing moto[server]=={MOTO_VERSION} into {} (first run only)",
        venv.display()
    );
    run(
        Command::new(&system_python)
            .args(["-m", "venv"])
            .arg(&staging),
        "create the moto virtualenv (on Debian: apt-get install python3-venv)",
    )?;
    run(
        Command::new(staging.join("bin/python"))
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .arg(format!("moto[server]=={MOTO_VERSION}")),
        "pip install moto[server] (needs access to PyPI)",
    )?;
    match std::fs::rename(&staging, &venv) {
        Ok(()) => Ok(python),
        Err(_) if python.exists() => {
            let _ = std::fs::remove_dir_all(&staging);
            Ok(python)
        }
        Err(e) => Err(format!(
            "cannot move {} to {}: {e}",
            staging.display(),
            venv.display()
        )),
    }
}

fn run(command: &mut Command, what: &str) -> Result<(), String> {
    let output = command
        .output()
        .map_err(|e| format!("cannot {what}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "cannot {what}: {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// What the setup created in moto.
#[derive(Debug)]
pub struct Account {
    /// The IAM user's access key (long-term: moto refuses session tokens with IAM keys).
    pub credentials: Credentials,
    /// A symmetric KMS key id.
    pub key_id: String,
    /// The same key's ARN.
    pub key_arn: String,
}

/// moto's answer to one request.
#[derive(Debug)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The body.
    pub body: Vec<u8>,
    /// The headers, in order.
    pub headers: Vec<(String, String)>,
}

impl Answer {
    /// The headers as borrowed pairs (what `ccc_sdk::kms::parse_error` takes).
    #[must_use]
    pub fn header_pairs(&self) -> Vec<(&str, &str)> {
        self.headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect()
    }
}

/// A running moto server; killed on drop.
#[derive(Debug)]
pub struct Moto {
    child: Child,
    /// The loopback port it listens on.
    pub port: u16,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    /// Installs (if needed) and starts moto on 127.0.0.1 with a port the kernel picks,
    /// returning once moto has printed the line with that port.
    ///
    /// # Errors
    /// Install failures, or moto exiting / staying silent past the startup timeout.
    pub fn start(tools_dir: &Path) -> Result<Self, String> {
        let python = ensure_installed(tools_dir)?;
        let mut child = Command::new(&python)
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {} -m moto.server: {e}", python.display()))?;
        let stderr = child.stderr.take().ok_or("moto has no stderr pipe")?;
        let (sender, receiver) = mpsc::channel();
        // Reads moto's log until it exits; the first "Running on" line is the signal.
        std::thread::spawn(move || {
            let mut announced = false;
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if !announced && let Some(url) = line.trim().strip_prefix("* Running on ") {
                    announced = true;
                    let _ = sender.send(Ok(url.to_owned()));
                } else if !announced {
                    let _ = sender.send(Err(line));
                }
            }
        });
        let mut early = Vec::new();
        let url = loop {
            match receiver.recv_timeout(STARTUP_TIMEOUT) {
                Ok(Ok(url)) => break url,
                Ok(Err(line)) => early.push(line),
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "moto did not announce its port within {STARTUP_TIMEOUT:?}; its output:\n{}",
                        early.join("\n")
                    ));
                }
            }
        };
        let port = url
            .rsplit_once(':')
            .and_then(|(_, port)| port.trim_end_matches('/').parse().ok())
            .ok_or_else(|| format!("moto announced {url:?}, not http://127.0.0.1:<port>"))?;
        Ok(Self { child, port })
    }

    /// The endpoint.
    #[must_use]
    pub fn endpoint(&self) -> Endpoint {
        Endpoint::tcp("127.0.0.1", self.port)
    }

    /// One HTTP exchange with moto.
    ///
    /// # Errors
    /// The transport failure, as text.
    pub fn exchange(&self, request: &::http::Request<&[u8]>) -> Result<Answer, String> {
        let mut stream =
            Stream::connect(&self.endpoint(), &Timeouts::default()).map_err(|e| e.to_string())?;
        let received = http::exchange(&mut stream, request, 1 << 20)
            .map_err(|e| e.at(&self.endpoint(), Duration::from_secs(10)).to_string())?;
        let response = received.response;
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect();
        Ok(Answer {
            status: response.status().as_u16(),
            body: response.body().expose().to_vec(),
            headers,
        })
    }

    /// Signs `signed_body` for `service` with `credentials` and sends `sent_body` (the same
    /// bytes, unless a test tampers with them).
    ///
    /// # Errors
    /// Signing or transport failures, as text.
    pub fn signed(
        &self,
        credentials: &Credentials,
        service: &str,
        host: &str,
        headers: &[(&str, &str)],
        signed_body: &[u8],
        sent_body: &[u8],
    ) -> Result<Answer, String> {
        let mut all: Vec<(&str, &str)> = vec![("Host", host)];
        all.extend_from_slice(headers);
        let signed = SigV4::new()
            .sign(
                &AwsLc,
                &SigningParams {
                    credentials,
                    region: REGION,
                    service,
                    time: UnixMillis::now(),
                    settings: Settings::default(),
                },
                &Request {
                    method: "POST",
                    path: "/",
                    query: "",
                    headers: &all,
                    body: signed_body,
                },
            )
            .map_err(|e| e.to_string())?;
        let mut builder = ::http::Request::post("/");
        for &(name, value) in &all {
            builder = builder.header(name, value);
        }
        for (name, value) in signed.headers() {
            builder = builder.header(name, value);
        }
        let request = builder.body(sent_body).map_err(|e| e.to_string())?;
        self.exchange(&request)
    }

    /// Creates an IAM user allowed `kms:*`, its access key and a KMS key, then switches
    /// moto's IAM authentication on (`POST /moto-api/reset-auth` with `0`: no more
    /// unauthenticated actions).
    ///
    /// # Errors
    /// Any setup call that does not answer 200, with moto's answer.
    pub fn set_up_account(&self) -> Result<Account, String> {
        // Before auth is on, moto accepts any signature; it still needs one to route.
        let bootstrap = Credentials::new("AKIAIOSFODNN7EXAMPLE", "bootstrap", None)
            .map_err(|e| e.to_string())?;
        let iam = |form: &str| -> Result<String, String> {
            let Answer { status, body, .. } = self.signed(
                &bootstrap,
                "iam",
                "iam.amazonaws.com",
                &[(
                    "Content-Type",
                    "application/x-www-form-urlencoded; charset=utf-8",
                )],
                form.as_bytes(),
                form.as_bytes(),
            )?;
            let body = String::from_utf8_lossy(&body).into_owned();
            if status == 200 {
                Ok(body)
            } else {
                Err(format!("IAM {form}: HTTP {status}: {body}"))
            }
        };
        iam("Action=CreateUser&UserName=ccc-enclave&Version=2010-05-08")?;
        // {"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*"}]}
        iam(
            "Action=PutUserPolicy&UserName=ccc-enclave&PolicyName=kms&Version=2010-05-08&\
             PolicyDocument=%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%7B\
             %22Effect%22%3A%22Allow%22%2C%22Action%22%3A%22kms%3A%2A%22%2C%22Resource%22\
             %3A%22%2A%22%7D%5D%7D",
        )?;
        let key = iam("Action=CreateAccessKey&UserName=ccc-enclave&Version=2010-05-08")?;
        let access_key_id = xml_text(&key, "AccessKeyId")?;
        let secret = xml_text(&key, "SecretAccessKey")?;
        let credentials =
            Credentials::new(access_key_id, secret, None).map_err(|e| e.to_string())?;

        let Answer { status, body, .. } = self.signed(
            &bootstrap,
            "kms",
            "kms.us-east-1.amazonaws.com",
            &[
                ("Content-Type", "application/x-amz-json-1.1"),
                ("X-Amz-Target", "TrentService.CreateKey"),
            ],
            br#"{"Description":"ccc moto interop"}"#,
            br#"{"Description":"ccc moto interop"}"#,
        )?;
        let created: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| format!("CreateKey: {e}"))?;
        let key_id = created["KeyMetadata"]["KeyId"]
            .as_str()
            .filter(|_| status == 200)
            .ok_or_else(|| format!("CreateKey: HTTP {status}: {created}"))?
            .to_owned();
        let key_arn = created["KeyMetadata"]["Arn"]
            .as_str()
            .ok_or_else(|| format!("CreateKey: no KeyMetadata.Arn: {created}"))?
            .to_owned();

        let reset = ::http::Request::post("/moto-api/reset-auth")
            .header("Host", "motoapi.amazonaws.com")
            .header("Content-Type", "text/plain")
            .body(&b"0"[..])
            .map_err(|e| e.to_string())?;
        let Answer { status, body, .. } = self.exchange(&reset)?;
        if status != 200 {
            return Err(format!(
                "reset-auth: HTTP {status}: {}",
                String::from_utf8_lossy(&body)
            ));
        }
        Ok(Account {
            credentials,
            key_id,
            key_arn,
        })
    }
}

fn xml_text(xml: &str, tag: &str) -> Result<String, String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    xml.split_once(&open)
        .and_then(|(_, rest)| rest.split_once(&close))
        .map(|(text, _)| text.trim().to_owned())
        .ok_or_else(|| format!("no <{tag}> in {xml}"))
}
