//! A test application for enclave boots: prints its argv and environment (proving the init's
//! `/cmd` and `/env` handling), reads PCR0..2 and an attestation document from `/dev/nsm` with
//! raw ioctls, prints its blocked-signal mask, and exits 0 when every request
//! succeeded (1 otherwise), or with the code given as `--exit N`.
//!
//! Build: `cargo build -p ccc-init --release --target x86_64-unknown-linux-musl --example nsm_probe`.
//! The ioctl is ccc-sys's (its number is pinned by that crate's tests).

use std::process::ExitCode;

/// DescribePCR request for `index` (< 24): CBOR `{"DescribePCR": {"index": index}}`.
fn describe_pcr_request(index: u8) -> Vec<u8> {
    let mut request = vec![0xa1, 0x6b];
    request.extend_from_slice(b"DescribePCR");
    request.extend_from_slice(&[0xa1, 0x65]);
    request.extend_from_slice(b"index");
    request.push(index);
    request
}

/// Attestation request with a 2-byte nonce: CBOR
/// `{"Attestation": {"user_data": null, "nonce": h'cc01', "public_key": null}}`.
fn attestation_request() -> Vec<u8> {
    let mut request = vec![0xa1, 0x6b];
    request.extend_from_slice(b"Attestation");
    request.extend_from_slice(&[0xa3, 0x69]);
    request.extend_from_slice(b"user_data");
    request.extend_from_slice(&[0xf6, 0x65]);
    request.extend_from_slice(b"nonce");
    request.extend_from_slice(&[0x42, 0xcc, 0x01, 0x6a]);
    request.extend_from_slice(b"public_key");
    request.push(0xf6);
    request
}

/// The 48 bytes following `"data": bstr(48)` in a DescribePCR response.
fn pcr_value(response: &[u8]) -> Option<&[u8]> {
    let marker = b"\x64data\x58\x30";
    let start = response
        .windows(marker.len())
        .position(|w| w == marker)?
        .checked_add(marker.len())?;
    response.get(start..start.checked_add(48)?)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    println!("nsm-probe: argv = {args:?}");
    let mut env: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
    env.sort();
    println!("nsm-probe: env = {env:?}");
    // Signals blocked at start (inherited across exec; the init unblocks them all). The
    // ignored set is not shown: Rust's runtime ignores SIGPIPE in this program itself.
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        for line in status.lines() {
            if line.starts_with("SigBlk:") {
                println!("nsm-probe: {line}");
            }
        }
    }
    let exit_override = args
        .iter()
        .position(|a| a == "--exit")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse::<u8>().ok());

    let mut ok = true;
    match sys::Nsm::open() {
        Err(e) => {
            println!("nsm-probe: cannot open /dev/nsm: {e}");
            ok = false;
        }
        Ok(nsm) => {
            for index in 0..3 {
                match nsm.request(&describe_pcr_request(index)) {
                    Ok(response) => match pcr_value(&response) {
                        Some(value) => println!("nsm-probe: PCR{index} = {}", hex(value)),
                        None => {
                            println!(
                                "nsm-probe: PCR{index}: unexpected response {}",
                                hex(&response)
                            );
                            ok = false;
                        }
                    },
                    Err(e) => {
                        println!("nsm-probe: DescribePCR {index} failed: {e}");
                        ok = false;
                    }
                }
            }
            match nsm.request(&attestation_request()) {
                Ok(response) if response.starts_with(b"\xa1\x6bAttestation\xa1\x68document") => {
                    println!(
                        "nsm-probe: attestation response {} bytes, starts {}",
                        response.len(),
                        hex(response.get(..32).unwrap_or(&response))
                    );
                }
                Ok(response) => {
                    println!(
                        "nsm-probe: unexpected attestation response {}",
                        hex(&response)
                    );
                    ok = false;
                }
                Err(e) => {
                    println!("nsm-probe: Attestation failed: {e}");
                    ok = false;
                }
            }
        }
    }
    println!("nsm-probe: {}", if ok { "ok" } else { "FAILED" });
    match exit_override {
        Some(code) => ExitCode::from(code),
        None if ok => ExitCode::SUCCESS,
        None => ExitCode::FAILURE,
    }
}

/// `/dev/nsm`, driven through ccc-sys's ioctl.
mod sys {
    use std::fs::File;
    use std::io;
    use std::os::fd::AsFd;

    pub(crate) struct Nsm(File);

    impl Nsm {
        pub(crate) fn open() -> io::Result<Self> {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/nsm")
                .map(Self)
        }

        pub(crate) fn request(&self, request: &[u8]) -> io::Result<Vec<u8>> {
            // The driver's largest answer: a buffer of this size never truncates one.
            let mut response = vec![0u8; ccc_sys::nsm::RESPONSE_MAX];
            let len = ccc_sys::nsm::raw(self.0.as_fd(), request, &mut response)?;
            response.truncate(len);
            Ok(response)
        }
    }
}
