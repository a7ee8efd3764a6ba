//! Simulator tests: Nitro PCR semantics through the typed client (so through the codec), and
//! the attestation document's structure checked by independent peers: AWS's
//! `AttestationDoc::from_binary`/`to_binary`, `serde_cbor` for the COSE envelope, and the
//! `openssl` command line for the certificate chain and the COSE signature.
#![expect(clippy::panic, reason = "test code: a panic is the test failure")]

use super::*;
use crate::nsm::{Nsm, NsmError, PcrState};
use alloc::format;
use alloc::string::ToString;
use alloc::vec;
use aws_nitro_enclaves_nsm_api::api::{AttestationDoc, Digest as AwsDigest};
use serde_cbor::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// 2025-11-24T16:00:00Z, a fixed document time.
const T: UnixMillis = UnixMillis(1_764_000_000_000);

fn pcr(byte: u8) -> [u8; PCR_LEN] {
    [byte; PCR_LEN]
}

fn simulator() -> Simulator {
    Simulator::new(
        SimulatorConfig::default()
            .with_pcr(0, pcr(0xa0))
            .with_pcr(1, pcr(0xa1))
            .with_pcr(2, pcr(0xa2))
            .with_pcr(8, pcr(0xa8))
            .with_fixed_time(T),
    )
    .unwrap()
}

fn nsm() -> Nsm {
    Nsm::simulator(simulator())
}

fn nsm_code(result: Result<impl core::fmt::Debug, NsmError>) -> ErrorCode {
    match result {
        Err(NsmError::Nsm { code, .. }) => code,
        other => panic!("expected an NSM error code, got {other:?}"),
    }
}

/// A scratch directory for files handed to openssl, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("ccc-nsm-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `openssl` with `args` in `dir`; returns (success, stdout + stderr).
fn openssl(dir: &Path, args: &[&str]) -> (bool, String) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("these tests need the openssl command line (apt-get install openssl): {e}")
        });
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

fn openssl_sha384(dir: &Path, input: &[u8]) -> Vec<u8> {
    let scratch = dir.join("sha384-input.bin");
    std::fs::write(&scratch, input).unwrap();
    let output = Command::new("openssl")
        .args(["dgst", "-sha384", "-binary"])
        .arg(&scratch)
        .output()
        .unwrap();
    assert!(output.status.success());
    output.stdout
}

#[test]
fn describe_nsm_reports_the_nitro_shape() {
    let description = nsm().describe_nsm().unwrap();
    assert_eq!(description.max_pcrs, 32);
    assert_eq!(description.digest, Digest::Sha384);
    assert_eq!(description.module_id, DEFAULT_MODULE_ID);
    assert_eq!(
        (
            description.version_major,
            description.version_minor,
            description.version_patch
        ),
        (1, 0, 0)
    );
    assert_eq!(description.locked_pcrs, (0..16).collect());
}

#[test]
fn boot_pcrs_hold_the_seeds_and_are_locked() {
    let nsm = nsm();
    assert_eq!(
        nsm.describe_pcr(0).unwrap(),
        PcrState {
            locked: true,
            value: pcr(0xa0).to_vec()
        }
    );
    assert_eq!(nsm.describe_pcr(8).unwrap().value, pcr(0xa8).to_vec());
    assert_eq!(
        nsm.describe_pcr(3).unwrap(),
        PcrState {
            locked: true,
            value: vec![0; PCR_LEN]
        }
    );
    assert_eq!(
        nsm.describe_pcr(16).unwrap(),
        PcrState {
            locked: false,
            value: vec![0; PCR_LEN]
        }
    );
}

#[test]
fn extend_is_sha384_of_old_value_and_data_as_computed_by_openssl() {
    let scratch = Scratch::new("extend");
    let nsm = nsm();
    let mut expected = vec![0u8; PCR_LEN];
    for data in [&b"first"[..], b"", &[0xff; 700]] {
        let mut input = expected.clone();
        input.extend_from_slice(data);
        expected = openssl_sha384(&scratch.0, &input);
        assert_eq!(nsm.extend_pcr(16, data).unwrap(), expected);
    }
    assert_eq!(
        nsm.describe_pcr(16).unwrap(),
        PcrState {
            locked: false,
            value: expected
        }
    );
    // Other PCRs are untouched.
    assert_eq!(nsm.describe_pcr(17).unwrap().value, vec![0; PCR_LEN]);
}

#[test]
fn locked_pcrs_refuse_extension_and_relocking() {
    let nsm = nsm();
    for index in 0..16 {
        assert_eq!(
            nsm_code(nsm.extend_pcr(index, b"x")),
            ErrorCode::ReadOnlyIndex
        );
        assert_eq!(nsm_code(nsm.lock_pcr(index)), ErrorCode::ReadOnlyIndex);
    }
    assert_eq!(nsm.describe_pcr(0).unwrap().value, pcr(0xa0).to_vec());

    let value = nsm.extend_pcr(20, b"app").unwrap();
    nsm.lock_pcr(20).unwrap();
    assert_eq!(
        nsm_code(nsm.extend_pcr(20, b"more")),
        ErrorCode::ReadOnlyIndex
    );
    assert_eq!(nsm_code(nsm.lock_pcr(20)), ErrorCode::ReadOnlyIndex);
    assert_eq!(
        nsm.describe_pcr(20).unwrap(),
        PcrState {
            locked: true,
            value
        }
    );
    let locked = nsm.describe_nsm().unwrap().locked_pcrs;
    assert_eq!(locked, (0..16).chain([20]).collect());
    let error = nsm.extend_pcr(20, b"more").unwrap_err().to_string();
    assert!(
        error.contains("NSM refused ExtendPCR: ReadOnlyIndex"),
        "{error}"
    );
}

#[test]
fn lock_pcrs_locks_a_prefix_and_rejects_ranges_past_32() {
    let nsm = nsm();
    nsm.lock_pcrs(18).unwrap();
    assert!(nsm.describe_pcr(17).unwrap().locked);
    assert!(!nsm.describe_pcr(18).unwrap().locked);
    assert_eq!(nsm_code(nsm.extend_pcr(17, b"x")), ErrorCode::ReadOnlyIndex);
    nsm.extend_pcr(18, b"x").unwrap();
    // Locking an already locked prefix again succeeds, as on Nitro (nsm-check locks [0, 32)
    // after locking 16..32 one by one).
    nsm.lock_pcrs(18).unwrap();
    assert_eq!(nsm_code(nsm.lock_pcrs(33)), ErrorCode::InvalidIndex);
    nsm.lock_pcrs(32).unwrap();
    assert_eq!(nsm.describe_nsm().unwrap().locked_pcrs, (0..32).collect());
}

#[test]
fn indexes_past_31_are_invalid() {
    let nsm = nsm();
    for index in [32, 33, 255, u16::MAX] {
        assert_eq!(nsm_code(nsm.describe_pcr(index)), ErrorCode::InvalidIndex);
        assert_eq!(
            nsm_code(nsm.extend_pcr(index, b"x")),
            ErrorCode::InvalidIndex
        );
        assert_eq!(nsm_code(nsm.lock_pcr(index)), ErrorCode::InvalidIndex);
    }
}

#[test]
fn random_gathers_as_many_calls_as_needed() {
    let nsm = nsm();
    assert!(nsm.random(0).unwrap().is_empty());
    let a = nsm.random(1000).unwrap();
    let b = nsm.random(1000).unwrap();
    assert_eq!(a.len(), 1000);
    assert_ne!(a.expose(), b.expose());
    assert!(a.expose().iter().any(|&byte| byte != 0));
    assert!(format!("{a:?}").contains("redacted"));
    // One GetRandom gives exactly RANDOM_PER_CALL bytes, like QEMU's virtio-nsm.
    match nsm.request(&Request::GetRandom).unwrap() {
        Response::GetRandom { random } => assert_eq!(random.len(), RANDOM_PER_CALL),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        nsm.random(crate::nsm::RANDOM_MAX + 1),
        Err(NsmError::InputTooLarge { .. })
    ));
}

#[test]
fn oversized_attestation_fields_are_refused_by_client_and_simulator() {
    let nsm = nsm();
    let big = vec![1u8; 1025];
    match nsm.attestation(None, Some(&big), None) {
        Err(NsmError::InputTooLarge {
            field: "nonce",
            limit: 1024,
            found: 1025,
        }) => {}
        other => panic!("{other:?}"),
    }
    // Sent raw, past the client's check, the simulator itself answers InputTooLarge.
    let request = Request::Attestation {
        user_data: Some(big),
        nonce: None,
        public_key: None,
    };
    assert_eq!(
        nsm.request(&request).unwrap(),
        Response::Error(ErrorCode::InputTooLarge)
    );
    // 1024 bytes each, as AWS's nsm-check sends, is accepted.
    let full = vec![128u8; 1024];
    nsm.attestation(Some(&full), Some(&full), Some(&full))
        .unwrap();
}

#[test]
fn malformed_or_oversized_raw_requests_are_handled_like_the_device() {
    let simulator = simulator();
    let answer = simulator.exchange(b"\x67Unknown").unwrap();
    assert_eq!(
        Response::decode(&answer).unwrap(),
        Response::Error(ErrorCode::InvalidOperation)
    );
    let answer = simulator.exchange(&[0xff, 0x00, 0x13]).unwrap();
    assert_eq!(
        Response::decode(&answer).unwrap(),
        Response::Error(ErrorCode::InvalidOperation)
    );
    assert!(matches!(
        simulator.exchange(&[0u8; REQUEST_MAX + 1]),
        Err(NsmError::RequestTooLarge { .. })
    ));
}

#[test]
fn bad_configurations_are_refused_with_the_reason() {
    let error = Simulator::new(SimulatorConfig::default().with_pcr(16, pcr(1))).unwrap_err();
    assert_eq!(error, SimulatorError::PcrIndex(16));
    assert!(
        error
            .to_string()
            .contains("only PCRs 0-15 are measured at boot")
    );
    let config = SimulatorConfig {
        module_id: String::new(),
        ..SimulatorConfig::default()
    };
    assert_eq!(
        Simulator::new(config).unwrap_err(),
        SimulatorError::ModuleId(0)
    );
    let config = SimulatorConfig {
        leaf_validity: Duration::ZERO,
        ..SimulatorConfig::default()
    };
    assert!(matches!(
        Simulator::new(config).unwrap_err(),
        SimulatorError::Validity(_)
    ));
}

#[test]
fn leaves_are_renewed_near_expiry_and_an_expired_chain_refuses_to_sign() {
    let mut config = SimulatorConfig::default().with_fixed_time(T);
    config.chain_validity = Duration::from_secs(86_400);
    let simulator = alloc::sync::Arc::new(Simulator::new(config).unwrap());
    let nsm = Nsm::with_transport(alloc::boxed::Box::new(simulator.clone()));
    let leaf_at = |millis: u64| {
        simulator.set_clock(Clock::Fixed(UnixMillis(millis)));
        let (_, payload, _) = cose_parts(&nsm.attestation(None, None, None).unwrap());
        let doc = AttestationDoc::from_binary(&payload).unwrap();
        assert_eq!(doc.timestamp, millis);
        doc.certificate.into_vec()
    };
    let first = leaf_at(T.0);
    // Two hours later the 3-hour leaf still has more than the renewal margin left.
    assert_eq!(leaf_at(T.0 + 2 * 3_600_000), first);
    // Five minutes before it expires, a new leaf is issued.
    let renewed = leaf_at(T.0 + 3 * 3_600_000 - 300_000);
    assert_ne!(renewed, first);
    // After the chain's end the simulator refuses to sign rather than emit a document no
    // verifier could accept, and says why.
    simulator.set_clock(Clock::Fixed(UnixMillis(T.0 + 86_400_000)));
    let error = nsm.attestation(None, None, None).unwrap_err();
    assert!(
        matches!(
            error,
            NsmError::Simulator(SimulatorError::ChainExpired { not_after })
                if not_after == T.0 / 1000 + 86_400
        ),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("create a new simulator"),
        "{error}"
    );
}

#[test]
fn clients_and_simulators_can_be_shared_across_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Nsm>();
    shareable::<Simulator>();
    let nsm = std::sync::Arc::new(nsm());
    let threads: Vec<_> = (16..20)
        .map(|index| {
            let nsm = nsm.clone();
            std::thread::spawn(move || nsm.extend_pcr(index, b"thread").unwrap())
        })
        .collect();
    let values: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    // Same input into four zero PCRs: four equal values, each now visible in its PCR.
    assert!(values.windows(2).all(|w| w[0] == w[1]));
    for index in 16..20 {
        assert_eq!(nsm.describe_pcr(index).unwrap().value, values[0]);
    }
}

#[test]
fn debug_output_never_shows_keys() {
    let simulator = simulator();
    let shown = format!("{simulator:?}");
    assert!(shown.contains("[redacted]"), "{shown}");
    let nsm = Nsm::simulator(simulator);
    nsm.attestation(None, None, None).unwrap();
    assert_eq!(format!("{nsm:?}"), "Nsm { transport: \"NSM simulator\" }");
}

/// Splits an untagged COSE_Sign1 with serde_cbor (an independent CBOR implementation).
fn cose_parts(document: &[u8]) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    match serde_cbor::from_slice::<Value>(document).unwrap() {
        Value::Array(items) => match items.as_slice() {
            [
                Value::Bytes(protected),
                Value::Map(unprotected),
                Value::Bytes(payload),
                Value::Bytes(signature),
            ] => {
                assert!(unprotected.is_empty());
                (protected.clone(), payload.clone(), signature.clone())
            }
            other => panic!("not a COSE_Sign1: {other:?}"),
        },
        other => panic!("not an untagged COSE array: {other:?}"),
    }
}

/// DER `ECDSA-Sig-Value` from a raw `r || s` P-384 signature (what openssl wants).
fn ecdsa_der(raw: &[u8]) -> Vec<u8> {
    fn integer(bytes: &[u8]) -> Vec<u8> {
        let first = bytes
            .iter()
            .position(|&b| b != 0)
            .unwrap_or(bytes.len() - 1);
        let mut value = bytes[first..].to_vec();
        if value[0] & 0x80 != 0 {
            value.insert(0, 0);
        }
        let mut out = vec![0x02, value.len() as u8];
        out.extend(value);
        out
    }
    assert_eq!(raw.len(), 96);
    let mut body = integer(&raw[..48]);
    body.extend(integer(&raw[48..]));
    let mut out = vec![0x30, body.len() as u8];
    out.extend(body);
    out
}

#[test]
fn attestation_document_has_the_real_shape_and_verifies_with_openssl() {
    let simulator = alloc::sync::Arc::new(simulator());
    let nsm = Nsm::with_transport(alloc::boxed::Box::new(simulator.clone()));
    nsm.extend_pcr(16, b"app config").unwrap();
    nsm.lock_pcr(16).unwrap();
    nsm.extend_pcr(17, b"unlocked: not in the document")
        .unwrap();
    let document = nsm
        .attestation(Some(b"user data"), Some(b"nonce-123"), Some(b"public key"))
        .unwrap();

    // COSE envelope: untagged array, protected {1: -35}, unprotected {}, 96-byte signature.
    assert_eq!(&document[..7], &[0x84, 0x44, 0xa1, 0x01, 0x38, 0x22, 0xa0]);
    let (protected, payload, signature) = cose_parts(&document);
    assert_eq!(protected, COSE_PROTECTED);
    assert_eq!(signature.len(), 96);

    // Payload: AWS's own type reads every field, and re-serialises to the same bytes (so the
    // key order, the definite lengths and the encodings are AWS's).
    let doc = AttestationDoc::from_binary(&payload).unwrap();
    assert_eq!(doc.to_binary(), payload);
    assert_eq!(doc.module_id, DEFAULT_MODULE_ID);
    assert_eq!(doc.digest, AwsDigest::SHA384);
    assert_eq!(doc.timestamp, T.0);
    assert_eq!(
        doc.pcrs.keys().copied().collect::<Vec<_>>(),
        (0..=16).collect::<Vec<_>>()
    );
    assert_eq!(doc.pcrs[&0].as_slice(), pcr(0xa0));
    assert_eq!(doc.pcrs[&2].as_slice(), pcr(0xa2));
    assert_eq!(doc.pcrs[&3].as_slice(), [0; PCR_LEN]);
    assert_eq!(
        doc.pcrs[&16].as_slice(),
        nsm.describe_pcr(16).unwrap().value.as_slice()
    );
    assert_eq!(
        doc.user_data.as_deref().map(|b| b.as_slice()),
        Some(&b"user data"[..])
    );
    assert_eq!(
        doc.nonce.as_deref().map(|b| b.as_slice()),
        Some(&b"nonce-123"[..])
    );
    assert_eq!(
        doc.public_key.as_deref().map(|b| b.as_slice()),
        Some(&b"public key"[..])
    );
    assert_eq!(doc.cabundle.len(), 2);
    assert_eq!(doc.cabundle[0].as_slice(), simulator.root_der());
    assert_eq!(doc.cabundle[1].as_slice(), simulator.intermediate_der());

    // The chain, checked by openssl at the document time: root -> intermediate -> leaf.
    let scratch = Scratch::new("chain");
    scratch.write("root.der", simulator.root_der());
    scratch.write("root.pem", simulator.root_pem().as_bytes());
    scratch.write("intermediate.der", &doc.cabundle[1]);
    scratch.write("leaf.der", &doc.certificate);
    for name in ["intermediate", "leaf"] {
        let (ok, out) = openssl(
            &scratch.0,
            &[
                "x509",
                "-inform",
                "DER",
                "-in",
                &format!("{name}.der"),
                "-out",
                &format!("{name}.pem"),
            ],
        );
        assert!(ok, "{out}");
    }
    let (ok, root_der_from_pem) = openssl(
        &scratch.0,
        &[
            "x509",
            "-in",
            "root.pem",
            "-noout",
            "-fingerprint",
            "-sha256",
        ],
    );
    assert!(ok);
    let (_, root_der_fp) = openssl(
        &scratch.0,
        &[
            "x509",
            "-inform",
            "DER",
            "-in",
            "root.der",
            "-noout",
            "-fingerprint",
            "-sha256",
        ],
    );
    assert_eq!(root_der_from_pem, root_der_fp, "PEM and DER roots differ");

    let at = (T.0 / 1000).to_string();
    let verify = |attime: &str| {
        openssl(
            &scratch.0,
            &[
                "verify",
                "-x509_strict",
                "-attime",
                attime,
                "-CAfile",
                "root.pem",
                "-untrusted",
                "intermediate.pem",
                "leaf.pem",
            ],
        )
    };
    let (ok, out) = verify(&at);
    assert!(ok && out.contains("leaf.pem: OK"), "{out}");
    // The leaf lives 3 hours from the document time, like AWS's.
    let (ok, out) = verify(&(T.0 / 1000 + 3 * 3600 + 1).to_string());
    assert!(!ok && out.contains("certificate has expired"), "{out}");
    let (ok, out) = verify(&(T.0 / 1000 - 1).to_string());
    assert!(!ok && out.contains("not yet valid"), "{out}");
    // A leaf chained to another simulator's root does not verify.
    let other = Simulator::new(SimulatorConfig::default().with_fixed_time(T)).unwrap();
    scratch.write("other-root.pem", other.root_pem().as_bytes());
    let (ok, _) = openssl(
        &scratch.0,
        &[
            "verify",
            "-attime",
            &at,
            "-CAfile",
            "other-root.pem",
            "-untrusted",
            "intermediate.pem",
            "leaf.pem",
        ],
    );
    assert!(!ok);

    // Certificate profiles like AWS's: CAs with CA:TRUE and keyCertSign/cRLSign, a leaf
    // that is not a CA and signs.
    let text = |name: &str| openssl(&scratch.0, &["x509", "-in", name, "-noout", "-text"]).1;
    let root = text("root.pem");
    assert!(
        root.contains("CA:TRUE") && !root.contains("pathlen"),
        "{root}"
    );
    assert!(root.contains("Certificate Sign, CRL Sign"), "{root}");
    assert!(root.contains("NIST CURVE: P-384") && root.contains("ecdsa-with-SHA384"));
    let intermediate = text("intermediate.pem");
    assert!(
        intermediate.contains("CA:TRUE, pathlen:0"),
        "{intermediate}"
    );
    assert!(intermediate.contains("Certificate Sign, CRL Sign"));
    let leaf = text("leaf.pem");
    assert!(leaf.contains("CA:FALSE"), "{leaf}");
    assert!(leaf.contains("Digital Signature"), "{leaf}");
    assert!(!leaf.contains("Certificate Sign"), "{leaf}");
    assert!(leaf.contains("NOT AWS"), "{leaf}");

    // The COSE signature over the Sig_structure, built here with serde_cbor and checked by
    // openssl with the leaf's public key.
    let sig_structure = serde_cbor::to_vec(&Value::Array(vec![
        Value::Text("Signature1".into()),
        Value::Bytes(protected.clone()),
        Value::Bytes(Vec::new()),
        Value::Bytes(payload.clone()),
    ]))
    .unwrap();
    let (ok, out) = openssl(
        &scratch.0,
        &[
            "x509",
            "-in",
            "leaf.pem",
            "-noout",
            "-pubkey",
            "-out",
            "leaf-key.pem",
        ],
    );
    assert!(ok, "{out}");
    scratch.write("signature.der", &ecdsa_der(&signature));
    scratch.write("sig-structure.bin", &sig_structure);
    let check = || {
        openssl(
            &scratch.0,
            &[
                "dgst",
                "-sha384",
                "-verify",
                "leaf-key.pem",
                "-signature",
                "signature.der",
                "sig-structure.bin",
            ],
        )
    };
    let (ok, out) = check();
    assert!(ok && out.contains("Verified OK"), "{out}");
    // Tampering with one payload byte breaks it.
    let mut tampered = sig_structure.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    scratch.write("sig-structure.bin", &tampered);
    let (ok, out) = check();
    assert!(!ok && out.contains("Verification failure"), "{out}");
}

#[test]
fn absent_fields_are_cbor_null_and_documents_reuse_the_leaf() {
    let nsm = nsm();
    let first = nsm.attestation(None, None, None).unwrap();
    let (_, payload, _) = cose_parts(&first);
    let doc = AttestationDoc::from_binary(&payload).unwrap();
    assert_eq!(doc.to_binary(), payload);
    assert_eq!(
        (doc.user_data, doc.nonce, doc.public_key),
        (None, None, None)
    );
    // The payload's last entries are "public_key": null, "user_data": null, "nonce": null.
    assert!(payload.ends_with(b"\x6apublic_key\xf6\x69user_data\xf6\x65nonce\xf6"));
    assert_eq!(doc.pcrs.len(), 16);

    // Empty byte strings stay empty byte strings (real documents carry them too).
    let second = nsm.attestation(Some(b""), None, None).unwrap();
    let (_, payload, _) = cose_parts(&second);
    let doc2 = AttestationDoc::from_binary(&payload).unwrap();
    assert_eq!(doc2.user_data.map(|b| b.into_vec()), Some(Vec::new()));
    // Within the leaf's validity the NSM keeps signing with the same leaf.
    assert_eq!(doc.certificate, doc2.certificate);
}

/// Siblings share the root and intermediate (one hierarchy, as on AWS) but not PCRs or leaves;
/// their documents verify under the first simulator's root and report their own PCRs.
#[test]
fn siblings_attest_other_images_under_the_same_root() {
    use crate::attestation::{self, RootOfTrust, VerifyOptions};
    let first = simulator();
    let second = first
        .sibling(
            SimulatorConfig::default()
                .with_pcr(0, pcr(0xb0))
                .with_pcr(2, pcr(0xb2))
                .with_fixed_time(T),
        )
        .unwrap();
    assert_eq!(first.root_der(), second.root_der());
    assert_eq!(first.intermediate_der(), second.intermediate_der());
    let root = RootOfTrust::custom(first.root_der().to_vec()).unwrap();
    let options = VerifyOptions::new(T).with_root(root);
    let document = Nsm::simulator(second)
        .attestation(None, None, None)
        .unwrap();
    let verified = attestation::verify(&document, &options, &AwsLc).unwrap();
    assert_eq!(verified.pcrs[&0], pcr(0xb0).to_vec());
    assert_eq!(verified.pcrs[&1], pcr(0).to_vec());
    assert_eq!(verified.pcrs[&2], pcr(0xb2).to_vec());
    assert!(matches!(
        first.sibling(SimulatorConfig::default().with_pcr(16, pcr(1))),
        Err(SimulatorError::PcrIndex(16))
    ));
}
