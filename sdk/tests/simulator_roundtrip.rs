//! The signed NSM simulator's documents, through the real client and codec, verified by the real
//! verifier: accepted only under the simulator's own root, with policy failures named exactly.
#![cfg(feature = "simulator")]
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap, expect or panic is the test failure"
)]

use ccc_sdk::attestation::{self, AttestationError, Policy, RootOfTrust, Trust, VerifyOptions};
use ccc_sdk::crypto::AwsLc;
use ccc_sdk::nsm::{Nsm, Simulator, SimulatorConfig};
use ccc_sdk::time::UnixMillis;
use std::sync::Arc;

/// 2026-06-01T00:00:00Z: the simulator's clock is fixed so the verification time is known.
const NOW: UnixMillis = UnixMillis(1_780_272_000_000);

fn pcr(byte: u8) -> [u8; 48] {
    [byte; 48]
}

fn simulator(pcrs: [[u8; 48]; 3]) -> (Arc<Simulator>, Nsm) {
    let mut config = SimulatorConfig::default().with_fixed_time(NOW);
    for (index, value) in pcrs.into_iter().enumerate() {
        config = config.with_pcr(index as u16, value);
    }
    let sim = Arc::new(Simulator::new(config).expect("simulator"));
    let nsm = Nsm::with_transport(Box::new(sim.clone()));
    (sim, nsm)
}

fn options(sim: &Simulator) -> VerifyOptions {
    VerifyOptions::new(NOW).with_root(RootOfTrust::custom(sim.root_der().to_vec()).unwrap())
}

#[test]
fn simulator_documents_verify_under_the_dev_root_only() {
    let (sim, nsm) = simulator([pcr(1), pcr(2), pcr(3)]);
    let doc = nsm
        .attestation(Some(b"user data"), Some(b"nonce-123"), Some(b"spki bytes"))
        .unwrap();

    let policy = Policy::new()
        .expect_pcr(0, &pcr(1))
        .unwrap()
        .expect_pcr(1, &pcr(2))
        .unwrap()
        .expect_pcr(2, &pcr(3))
        .unwrap()
        .expect_nonce(b"nonce-123")
        .require_public_key(b"spki bytes")
        .require_user_data(b"user data");
    let verified = attestation::verify(&doc, &options(&sim).with_policy(policy), &AwsLc).unwrap();
    assert_eq!(verified.trust, Trust::CustomRoot);
    assert_eq!(verified.module_id, sim.module_id());
    assert_eq!(verified.timestamp, NOW);
    assert_eq!(verified.nonce.as_deref(), Some(&b"nonce-123"[..]));
    assert_eq!(verified.user_data.as_deref(), Some(&b"user data"[..]));
    assert_eq!(verified.public_key.as_deref(), Some(&b"spki bytes"[..]));
    assert_eq!(verified.pcrs.get(&2).map(Vec::as_slice), Some(&pcr(3)[..]));
    assert_eq!(verified.pcrs.len(), 16, "PCRs 0..15 are locked at boot");
    assert_eq!(verified.chain.len(), 3, "root, intermediate, leaf");
    assert!(!verified.is_debug_mode());

    // The default trust (AWS Nitro Root G1) refuses the development chain.
    let err = attestation::verify(&doc, &VerifyOptions::new(NOW), &AwsLc).unwrap_err();
    assert!(
        matches!(err, AttestationError::UntrustedRoot { aws_pin: true, .. }),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("pass the simulator's root certificate"),
        "{err}"
    );

    // So does another simulator's root.
    let (other, _) = simulator([pcr(1), pcr(2), pcr(3)]);
    let err = attestation::verify(&doc, &options(&other), &AwsLc).unwrap_err();
    assert!(
        matches!(err, AttestationError::UntrustedRoot { aws_pin: false, .. }),
        "{err}"
    );
}

#[test]
fn policy_failures_name_the_check() {
    let (sim, nsm) = simulator([pcr(1), pcr(2), pcr(3)]);
    let doc = nsm.attestation(None, Some(b"fresh"), None).unwrap();

    let wrong_pcr = Policy::new().expect_pcr(2, &pcr(9)).unwrap();
    let err = attestation::verify(&doc, &options(&sim).with_policy(wrong_pcr), &AwsLc).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "PCR2 mismatch: expected {}, found {}; the enclave is not running the image (or, \
             for PCR3/4, the role/instance) the policy expects",
            "09".repeat(48),
            "03".repeat(48)
        )
    );

    let wrong_nonce = Policy::new().expect_nonce(b"other");
    let err =
        attestation::verify(&doc, &options(&sim).with_policy(wrong_nonce), &AwsLc).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "nonce mismatch: expected {}, found {}; the document is not a fresh answer to this \
             challenge (replayed, or requested with another nonce)",
            hex::encode(b"other"),
            hex::encode(b"fresh")
        )
    );

    // Documents past the leaf's lifetime fail on time, naming the leaf.
    let late = UnixMillis(NOW.0 + 4 * 3600 * 1000);
    let err = attestation::verify(
        &doc,
        &VerifyOptions::new(late).with_root(RootOfTrust::custom(sim.root_der().to_vec()).unwrap()),
        &AwsLc,
    )
    .unwrap_err();
    assert!(err.to_string().contains("leaf certificate"), "{err}");
}

#[test]
fn debug_mode_documents_need_explicit_permission() {
    let (sim, nsm) = simulator([[0; 48], [0; 48], [0; 48]]);
    let doc = nsm.attestation(None, None, None).unwrap();
    let err = attestation::verify(&doc, &options(&sim), &AwsLc).unwrap_err();
    assert!(
        err.to_string().starts_with("enclave runs in debug mode"),
        "{err}"
    );

    let allowed = attestation::verify(
        &doc,
        &options(&sim).with_policy(Policy::new().allow_debug_mode()),
        &AwsLc,
    )
    .unwrap();
    assert!(allowed.is_debug_mode());
}

#[test]
fn extended_and_locked_pcrs_appear_in_the_verified_document() {
    let (sim, nsm) = simulator([pcr(1), pcr(2), pcr(3)]);
    let after = nsm.extend_pcr(16, b"app config v1").unwrap();
    nsm.lock_pcr(16).unwrap();
    let doc = nsm.attestation(None, None, None).unwrap();
    let verified = attestation::verify(&doc, &options(&sim), &AwsLc).unwrap();
    assert_eq!(verified.pcrs.get(&16), Some(&after));
    // Extending a PCR that was locked at boot is refused by the simulator, as on Nitro.
    assert!(nsm.extend_pcr(0, b"x").is_err());
}

#[test]
fn tampered_simulator_document_is_refused() {
    let (sim, nsm) = simulator([pcr(1), pcr(2), pcr(3)]);
    let mut doc = nsm.attestation(None, Some(b"n"), None).unwrap();
    let parsed = attestation::parse(&doc).unwrap();
    let at = parsed.cose.payload_offset + parsed.cose.payload.len() / 2;
    doc[at] ^= 0x01;
    assert!(attestation::verify(&doc, &options(&sim), &AwsLc).is_err());
}
