//! `cargo xtask bench attestation`: full verification of a real NSM document (COSE ES384,
//! chain to the AWS root, validity at a fixed time) by the SDK, by a peer verifier from
//! crates.io, and the floor: only the P-384 verifications and hashing, straight on aws-lc-rs.

use crate::harness::{median_per_call, report};
use anyhow::{Context, Result, bail, ensure};
use aws_lc_rs::{digest, signature};
use ccc_sdk::attestation::{self, VerifyOptions};
use ccc_sdk::crypto::AwsLc;
use ccc_sdk::der::{Reader, tag};
use ccc_sdk::time::UnixMillis;
use nsm_nitro_enclave_utils::api::nsm::AttestationDoc;
use nsm_nitro_enclave_utils::time::Time;
use nsm_nitro_enclave_utils::verify::AttestationDocVerifierExt;
use std::hint::black_box;

/// The non-debug 2025 vector (indefinite-length map, 17 PCRs) and its timestamp.
const VECTOR: &str =
    "nitro-attestation-vectors/fastcrypto-nondebug-pcr16-indefmap-2025-11-10/attestation.hex";
const TIMESTAMP: u64 = 1_762_795_210_812;
/// Its leaf's notAfter (2025-11-10T20:20:10Z), to check every verifier really checks time.
const LEAF_NOT_AFTER: u64 = 1_762_806_010_000;

/// `(tbs, signature, subject public key)` of a DER certificate, for the floor.
fn cert_parts(der: &[u8]) -> Result<(&[u8], &[u8], &[u8])> {
    let mut outer = Reader::new(der);
    let cert = outer.read(tag::SEQUENCE)?;
    let mut parts = cert.reader();
    let tbs = parts.read(tag::SEQUENCE)?;
    parts.read(tag::SEQUENCE)?;
    let sig = parts.read_bit_string_bytes()?;
    let mut t = tbs.reader();
    t.read(tag::context_constructed(0))?;
    for _ in 0..5 {
        // serial, signature, issuer, validity, subject
        t.read_any()?;
    }
    let spki = t.read(tag::SEQUENCE)?;
    let mut s = spki.reader();
    s.read(tag::SEQUENCE)?;
    let key = s.read_bit_string_bytes()?;
    Ok((tbs.raw, sig, key))
}

fn peer_time(ms: u64) -> Time {
    Time::new(Box::new(move || ms))
}

pub(crate) fn run() -> Result<()> {
    let doc = ccc_test_vectors::read_decoded(VECTOR);
    let at = UnixMillis(TIMESTAMP);
    let options = VerifyOptions::new(at);

    // Inputs for the floor and the peer, prepared outside the timed loops.
    let parsed = attestation::parse(&doc)?;
    let root_der = parsed.document.cabundle[0].to_vec();
    let mut certs: Vec<&[u8]> = parsed.document.cabundle.clone();
    certs.push(parsed.document.certificate);
    let parts: Vec<_> = certs.iter().map(|c| cert_parts(c)).collect::<Result<_>>()?;
    let mut sig_structure = vec![0x84, 0x6a];
    sig_structure.extend_from_slice(b"Signature1");
    sig_structure.push(0x40 | u8::try_from(parsed.cose.protected.len())?);
    sig_structure.extend_from_slice(parsed.cose.protected);
    sig_structure.push(0x40);
    let payload_len = u16::try_from(parsed.cose.payload.len())?;
    sig_structure.push(0x59);
    sig_structure.extend_from_slice(&payload_len.to_be_bytes());
    sig_structure.extend_from_slice(parsed.cose.payload);
    let cose_signature = parsed.cose.signature.to_vec();

    let floor = || -> bool {
        let mut ok = digest::digest(&digest::SHA256, &root_der).as_ref().len() == 32;
        for pair in parts.windows(2) {
            let (issuer, cert) = (&pair[0], &pair[1]);
            ok &= signature::UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_ASN1, issuer.2)
                .verify(cert.0, cert.1)
                .is_ok();
        }
        let leaf_key = parts[parts.len() - 1].2;
        ok &= signature::UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, leaf_key)
            .verify(&sig_structure, &cose_signature)
            .is_ok();
        ok
    };

    // Every contender must accept the document at its time and reject it after the leaf
    // expired, so all of them do the same work.
    ensure!(floor(), "floor: a signature did not verify");
    attestation::verify(&doc, &options, &AwsLc).context("ccc-sdk rejected the vector")?;
    AttestationDoc::from_cose(&doc, &root_der, peer_time(TIMESTAMP))
        .map_err(|e| anyhow::anyhow!("nsm-nitro-enclave-utils rejected the vector: {e:?}"))?;
    let late = UnixMillis(LEAF_NOT_AFTER + 1000);
    if attestation::verify(&doc, &VerifyOptions::new(late), &AwsLc).is_ok()
        || AttestationDoc::from_cose(&doc, &root_der, peer_time(late.0)).is_ok()
    {
        bail!("a verifier accepted the document after its leaf expired");
    }

    println!(
        "attestation: full verification of {VECTOR} ({} bytes; 4 chain + 1 COSE P-384 \
         verifications)",
        doc.len()
    );
    let batches = 15;
    let t_floor = median_per_call(batches, || {
        black_box(floor());
    });
    let t_ours = median_per_call(batches, || {
        black_box(attestation::verify(black_box(&doc), &options, &AwsLc).is_ok());
    });
    let t_peer = median_per_call(batches, || {
        black_box(
            AttestationDoc::from_cose(black_box(&doc), &root_der, peer_time(TIMESTAMP)).is_ok(),
        );
    });
    println!("{:<48} {:>12}            ratio to floor", "", "time");
    report(
        "floor: aws-lc-rs 5x P-384 verify + SHA-256 pin",
        t_floor,
        t_floor,
    );
    report("ccc-sdk attestation::verify", t_ours, t_floor);
    report("nsm-nitro-enclave-utils 0.1.3 from_cose", t_peer, t_floor);
    println!(
        "ccc-sdk vs floor: {:.2}x (target <= 1.30x); nsm-nitro-enclave-utils vs ccc-sdk: \
         {:.2}x slower (target >= 2x)",
        t_ours.as_secs_f64() / t_floor.as_secs_f64(),
        t_peer.as_secs_f64() / t_ours.as_secs_f64()
    );
    Ok(())
}
