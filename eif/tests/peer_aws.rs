//! AWS's own implementation (aws-nitro-enclaves-image-format 0.8.1, the library under
//! nitro-cli) as the reference: for our images and for random kernels/ramdisks, its reader
//! must report our PCRs, a good CRC, our header and our metadata, and its `EifBuilder` must
//! produce our exact bytes. Signed images: PCR8 and the signature must agree both ways.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap, expect or panic is the test failure"
)] // test code: a panic is a failure

mod common;

use aws_nitro_enclaves_image_format::defs::{EIF_HDR_ARCH_ARM64, EifIdentityInfo};
use aws_nitro_enclaves_image_format::utils::eif_reader::EifReader;
use aws_nitro_enclaves_image_format::utils::{
    EifBuilder as AwsBuilder, PcrSignatureChecker, SignKeyData,
};
use ccc_eif::cpio::FileMode;
use ccc_eif::initramfs::{self, Init};
use ccc_eif::signature::SignerError;
use ccc_eif::{
    Arch, BuildInfo, Eif, EifBuilder, EifIdentity, FileSource, LocalSigner, Measurements,
    SectionKind, SourceDateEpoch,
};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One image's inputs.
#[derive(Debug, Clone)]
struct Inputs {
    kernel: Vec<u8>,
    cmdline: String,
    ramdisks: Vec<Vec<u8>>,
    arch: Arch,
    identity: EifIdentity,
}

fn identity(name: &str, version: &str, epoch: u32) -> EifIdentity {
    EifIdentity::new(
        name,
        version,
        BuildInfo::new(
            SourceDateEpoch::from_secs(epoch),
            "ccc-eif",
            "0.1.0",
            "Linux",
            "6.12.0",
        ),
    )
}

fn aws_identity(ours: &EifIdentity) -> EifIdentityInfo {
    serde_json::from_value(serde_json::to_value(ours).unwrap()).unwrap()
}

fn aws_measurements(m: &Measurements) -> BTreeMap<String, String> {
    let mut map: BTreeMap<String, String> = serde_json::from_value(m.to_json()).unwrap();
    map.remove("HashAlgorithm");
    map
}

fn without_algorithm(mut map: BTreeMap<String, String>) -> BTreeMap<String, String> {
    assert!(map.remove("HashAlgorithm").is_some());
    map
}

/// Writes the inputs as files (AWS's builder only takes paths).
fn input_files(dir: &Path, inputs: &Inputs) -> (PathBuf, Vec<PathBuf>) {
    let kernel = dir.join("kernel");
    std::fs::write(&kernel, &inputs.kernel).unwrap();
    let ramdisks = inputs
        .ramdisks
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let p = dir.join(format!("ramdisk{i}"));
            std::fs::write(&p, r).unwrap();
            p
        })
        .collect();
    (kernel, ramdisks)
}

fn aws_build(
    dir: &Path,
    inputs: &Inputs,
    sign: Option<SignKeyData>,
) -> (Vec<u8>, BTreeMap<String, String>) {
    let (kernel, ramdisks) = input_files(dir, inputs);
    let flags = match inputs.arch {
        Arch::X86_64 => 0,
        Arch::Aarch64 => EIF_HDR_ARCH_ARM64,
    };
    let mut builder = AwsBuilder::new(
        &kernel,
        inputs.cmdline.clone(),
        sign,
        sha2::Sha384::default(),
        flags,
        aws_identity(&inputs.identity),
    );
    for r in &ramdisks {
        builder.add_ramdisk(r);
    }
    let out = dir.join("aws.eif");
    let mut file = std::fs::File::create(&out).unwrap();
    let measurements = builder.write_to(&mut file);
    drop(file);
    (std::fs::read(&out).unwrap(), measurements)
}

fn ours(inputs: &Inputs) -> (Vec<u8>, ccc_eif::Built) {
    let mut builder = EifBuilder::new(
        &inputs.kernel,
        inputs.cmdline.clone(),
        inputs.identity.clone(),
    )
    .arch(inputs.arch);
    for r in &inputs.ramdisks {
        builder = builder.ramdisk(r);
    }
    builder.to_vec().unwrap()
}

/// AWS's reader over our bytes: PCRs, CRC, header and metadata all agree.
fn assert_aws_reader_agrees(
    dir: &Path,
    bytes: &[u8],
    built: &ccc_eif::Built,
    identity: &EifIdentity,
) {
    let path = dir.join("ours.eif");
    std::fs::write(&path, bytes).unwrap();
    let mut reader = EifReader::from_eif(path.to_str().unwrap().to_owned()).unwrap();
    assert!(reader.check_crc(), "AWS reader: CRC of our image");
    let header = reader.get_header();
    assert_eq!(header.to_be_bytes(), built.header.to_bytes().to_vec());
    assert_eq!(header.eif_crc32, built.header.crc32);
    assert_eq!(header.num_sections, built.header.num_sections);
    let metadata = reader.get_metadata().expect("metadata section");
    assert_eq!(
        serde_json::to_value(&metadata).unwrap(),
        serde_json::to_value(identity).unwrap()
    );
    let theirs = without_algorithm(reader.get_measurements().unwrap());
    assert_eq!(theirs, aws_measurements(&built.measurements));
}

fn inputs_strategy() -> impl Strategy<Value = Inputs> {
    let sizes = prop_oneof![Just(0usize), Just(1), Just(3), 0usize..70_000];
    let ramdisk_count = prop_oneof![Just(0usize), Just(1), Just(2), Just(3)];
    (
        sizes.clone(),
        ramdisk_count,
        prop::collection::vec(sizes, 3),
        "[ -~]{0,40}[!-~]|",
        any::<bool>(),
        "[a-z\u{e9}\"\\\\/-]{0,12}",
        "[0-9.]{0,6}",
        any::<u32>(),
        any::<u64>(),
        prop_oneof![
            Just(serde_json::Value::Null),
            Just(serde_json::json!({"zeta": 1, "alpha": [true, null], "m\u{fc}": "\u{1f600}"}))
        ],
    )
        .prop_map(
            |(kernel_len, count, sizes, cmdline, arm, name, version, epoch, seed, custom)| {
                let mut identity = identity(&name, &version, epoch);
                identity.custom_metadata = custom.clone();
                identity.docker_info = custom;
                Inputs {
                    kernel: common::bytes(seed, kernel_len),
                    cmdline,
                    ramdisks: (0..count)
                        .map(|i| common::bytes(seed ^ (i as u64 + 1), sizes[i]))
                        .collect(),
                    arch: if arm { Arch::Aarch64 } else { Arch::X86_64 },
                    identity,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn random_images_match_aws_reader_and_builder(inputs in inputs_strategy()) {
        let dir = common::scratch_dir("aws-random");
        let (bytes, built) = ours(&inputs);
        prop_assert_eq!(bytes.len() as u64, built.len);
        assert_aws_reader_agrees(&dir, &bytes, &built, &inputs.identity);

        // AWS's builder, same inputs: the same bytes and the same measurements.
        let (aws_bytes, aws_m) = aws_build(&dir, &inputs, None);
        prop_assert!(aws_bytes == bytes, "EifBuilder bytes differ from ours");
        prop_assert_eq!(without_algorithm(aws_m), aws_measurements(&built.measurements));

        // Our reader (streaming and in-memory) over AWS's file.
        let read = Eif::from_bytes(&aws_bytes).unwrap();
        prop_assert_eq!(read.measurements, built.measurements);
        prop_assert_eq!(Eif::open(&dir.join("aws.eif")).unwrap().measurements, built.measurements);
        prop_assert_eq!(read.header, built.header);
        prop_assert_eq!(read.identity.as_ref(), Some(&inputs.identity));
        prop_assert_eq!(read.sections.len(), 3 + inputs.ramdisks.len());
        prop_assert_eq!(read.cmdline, inputs.cmdline.as_bytes());
        // `measure` agrees without writing anything.
        let mut b = EifBuilder::new(&inputs.kernel, inputs.cmdline.clone(), inputs.identity.clone()).arch(inputs.arch);
        for r in &inputs.ramdisks { b = b.ramdisk(r); }
        prop_assert_eq!(b.measure().unwrap().measurements, built.measurements);
    }
}

#[test]
fn large_images_hashed_on_two_threads_match_aws() {
    // Above the parallel threshold, with a large application ramdisk and a 4th ramdisk.
    let inputs = Inputs {
        kernel: common::bytes(1, 3_000_001),
        cmdline: "console=ttyS0 reboot=k panic=30".into(),
        ramdisks: vec![
            common::bytes(2, 700_003),
            common::bytes(3, 9_000_005),
            common::bytes(4, 5),
            Vec::new(),
        ],
        arch: Arch::X86_64,
        identity: identity("big", "1", 1_700_000_000),
    };
    let dir = common::scratch_dir("aws-large");
    let (bytes, built) = ours(&inputs);
    assert_aws_reader_agrees(&dir, &bytes, &built, &inputs.identity);
    let (aws_bytes, _) = aws_build(&dir, &inputs, None);
    assert!(aws_bytes == bytes);
    assert_eq!(
        Eif::read(&bytes[..]).unwrap().measurements,
        built.measurements
    );
    assert_eq!(
        Eif::from_bytes(&bytes).unwrap().measurements,
        built.measurements
    );
}

#[test]
fn nitro_cli_layout_from_archives_and_files_matches_aws() {
    // The release pipeline's shape: kernel from a file, both ramdisks streamed from cpio
    // archives (one holding a host file), written to a file.
    let dir = common::scratch_dir("aws-layout");
    let epoch = SourceDateEpoch::from_secs(1_700_000_000);
    let kernel_path = dir.join("bzImage");
    std::fs::write(&kernel_path, common::bytes(9, 1_234_567)).unwrap();
    let init_path = dir.join("init-bin");
    std::fs::write(&init_path, common::bytes(10, 400_001)).unwrap();
    let kernel = FileSource::open(&kernel_path).unwrap();
    let bootstrap = initramfs::bootstrap_ramdisk(epoch, Init::File(&init_path)).unwrap();
    let mut customer =
        initramfs::customer_ramdisk(epoch, &["/app", "--serve"], &["RUST_LOG=info"]).unwrap();
    customer
        .add_file(
            "rootfs/app",
            common::bytes(11, 5_000_000),
            FileMode::Executable,
        )
        .unwrap();
    let identity = identity("ccc-template", "0.1.0", epoch.secs());
    let out = dir.join("ours.eif");
    let built = EifBuilder::new(&kernel, "reboot=k panic=30 console=ttyS0", identity.clone())
        .ramdisk(&bootstrap)
        .ramdisk(&customer)
        .write_file(&out)
        .unwrap();
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(bytes.len() as u64, built.len);
    assert_aws_reader_agrees(&dir, &bytes, &built, &identity);

    let inputs = Inputs {
        kernel: std::fs::read(&kernel_path).unwrap(),
        cmdline: "reboot=k panic=30 console=ttyS0".into(),
        ramdisks: vec![bootstrap.to_vec().unwrap(), customer.to_vec().unwrap()],
        arch: Arch::X86_64,
        identity,
    };
    let (aws_bytes, _) = aws_build(&dir, &inputs, None);
    assert!(aws_bytes == bytes);
    let eif = Eif::open(&out).unwrap();
    let kinds: Vec<SectionKind> = eif.sections.iter().map(|s| s.kind).collect();
    assert_eq!(
        kinds,
        [
            SectionKind::Kernel,
            SectionKind::Cmdline,
            SectionKind::Metadata,
            SectionKind::Ramdisk,
            SectionKind::Ramdisk
        ]
    );
    // PCR1 covers kernel, cmdline and the bootstrap ramdisk only: changing the application
    // changes PCR0 and PCR2, not PCR1.
    customer
        .add_file("rootfs/extra", b"x".to_vec(), FileMode::Regular)
        .unwrap();
    let changed = EifBuilder::new(
        &kernel,
        "reboot=k panic=30 console=ttyS0",
        eif.identity.clone().unwrap(),
    )
    .ramdisk(&bootstrap)
    .ramdisk(&customer)
    .measure()
    .unwrap()
    .measurements;
    assert_eq!(changed.pcr1, built.measurements.pcr1);
    assert_ne!(changed.pcr0, built.measurements.pcr0);
    assert_ne!(changed.pcr2, built.measurements.pcr2);
}

fn p384_key_and_cert(dir: &Path, name: &str) -> (PathBuf, PathBuf, String, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["signer.example".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (key_pem, cert_pem) = (key.serialize_pem(), cert.pem());
    let key_path = dir.join(format!("{name}-key.pem"));
    let cert_path = dir.join(format!("{name}-cert.pem"));
    std::fs::write(&key_path, &key_pem).unwrap();
    std::fs::write(&cert_path, &cert_pem).unwrap();
    (key_path, cert_path, key_pem, cert_pem)
}

fn signed_inputs() -> Inputs {
    Inputs {
        kernel: common::bytes(21, 50_000),
        cmdline: "console=ttyS0".into(),
        ramdisks: vec![common::bytes(22, 1_000), common::bytes(23, 30_001)],
        arch: Arch::X86_64,
        identity: identity("signed", "2", 1_700_000_000),
    }
}

#[test]
fn pcr8_of_aws_signed_images() {
    let dir = common::scratch_dir("aws-signed");
    let (key_path, cert_path, _, _) = p384_key_and_cert(&dir, "aws");
    let inputs = signed_inputs();
    let sign = SignKeyData::new(key_path.to_str().unwrap(), &cert_path).unwrap();
    let (aws_bytes, aws_m) = aws_build(&dir, &inputs, Some(sign));
    let read = Eif::from_bytes(&aws_bytes).unwrap();
    assert!(read.measurements.pcr8.is_some());
    assert_eq!(
        without_algorithm(aws_m),
        aws_measurements(&read.measurements)
    );
    // Signing changes neither PCR0-2 nor anything before the signature section but the header.
    let (unsigned, built) = ours(&inputs);
    assert_eq!(read.measurements.pcr0, built.measurements.pcr0);
    assert_eq!(read.measurements.pcr1, built.measurements.pcr1);
    assert_eq!(read.measurements.pcr2, built.measurements.pcr2);
    assert_eq!(aws_bytes[548..unsigned.len()], unsigned[548..]);
    let signature = read.signature.as_ref().unwrap();
    assert_eq!(signature.count, 1);
    assert_eq!(
        signature.certificate_pem,
        std::fs::read(&cert_path).unwrap()
    );
    let describe: serde_json::Value = serde_json::from_str(&read.describe_json()).unwrap();
    assert_eq!(describe["IsSigned"], true);
    assert_eq!(
        describe["Measurements"]["PCR8"],
        read.measurements.pcr8.unwrap().hex()
    );
}

#[test]
fn our_signed_images_verify_with_aws() {
    let dir = common::scratch_dir("ours-signed");
    let (_, _, key_pem, cert_pem) = p384_key_and_cert(&dir, "ours");
    let signer = LocalSigner::from_pem(key_pem.as_bytes(), cert_pem.as_bytes()).unwrap();
    let inputs = signed_inputs();
    let mut builder = EifBuilder::new(
        &inputs.kernel,
        inputs.cmdline.clone(),
        inputs.identity.clone(),
    )
    .signer(&signer);
    for r in &inputs.ramdisks {
        builder = builder.ramdisk(r);
    }
    let (bytes, built) = builder.to_vec().unwrap();
    assert!(built.measurements.pcr8.is_some());
    assert_aws_reader_agrees(&dir, &bytes, &built, &inputs.identity);
    let path = dir.join("ours.eif");
    // AWS's checker: the COSE signature verifies with the certificate's key.
    let mut checker = PcrSignatureChecker::from_eif(path.to_str().unwrap()).unwrap();
    checker.verify().unwrap();
    // And its payload is exactly (0, PCR0) as AWS measures it.
    let mut reader = EifReader::from_eif(path.to_str().unwrap().to_owned()).unwrap();
    let m = reader.get_measurements().unwrap();
    reader.get_certificate_info(m).unwrap();
    assert_eq!(reader.sign_check, Some(true));
    assert_eq!(
        Eif::from_bytes(&bytes).unwrap().measurements,
        built.measurements
    );

    // A certificate for another key is refused up front.
    let (_, _, _, other_cert) = p384_key_and_cert(&dir, "other");
    let err = LocalSigner::from_pem(key_pem.as_bytes(), other_cert.as_bytes()).unwrap_err();
    assert_eq!(err, SignerError::KeyMismatch);
    assert!(err.to_string().contains("not the private key's"), "{err}");
    // A P-256 key is refused, naming the command that makes a right one.
    let p256 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let err =
        LocalSigner::from_pem(p256.serialize_pem().as_bytes(), cert_pem.as_bytes()).unwrap_err();
    assert!(matches!(err, SignerError::NotP384(_)), "{err:?}");
    assert!(err.to_string().contains("secp384r1"), "{err}");
    // No key, or a certificate that is not PEM.
    let err = LocalSigner::from_pem(cert_pem.as_bytes(), cert_pem.as_bytes()).unwrap_err();
    assert_eq!(err, SignerError::NoPrivateKey);
    let err = LocalSigner::from_pem(key_pem.as_bytes(), b"not a certificate").unwrap_err();
    assert!(matches!(err, SignerError::Certificate(_)), "{err:?}");
}

/// A P-384 key and a self-signed certificate valid from `from` to `to` (y, m, d), with a
/// two-attribute issuer (the describe strings then show a sorted map).
fn p384_key_and_dated_cert(from: (i32, u8, u8), to: (i32, u8, u8)) -> (String, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["signer.example".to_owned()]).unwrap();
    params.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
    params.not_after = rcgen::date_time_ymd(to.0, to.1, to.2);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "CCC release signer");
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "CCC");
    let cert = params.self_signed(&key).unwrap();
    (key.serialize_pem(), cert.pem())
}

/// 2030-06-01T00:00:00Z, inside the validity of the certificates below.
const IN_2030: ccc_sdk::time::UnixMillis = ccc_sdk::time::UnixMillis(1_906_934_400_000);

fn unsigned_image(seed: u64) -> (Vec<u8>, Inputs) {
    let mut inputs = signed_inputs();
    inputs.kernel = common::bytes(seed, 40_000);
    let (bytes, _) = ours(&inputs);
    (bytes, inputs)
}

/// The release path: an unsigned image, signed afterwards by `sign_image` (the signature
/// section appended, header and CRC rewritten). AWS's reader and checker verify it, compute
/// the same PCR8, and print the same `SigningCertificate` strings as our describe-eif.
#[test]
fn images_signed_after_the_build_verify_with_aws_field_for_field() {
    let dir = common::scratch_dir("sign-after");
    let (key_pem, cert_pem) = p384_key_and_dated_cert((2025, 1, 2), (2035, 11, 30));
    let signer = LocalSigner::from_pem(key_pem.as_bytes(), cert_pem.as_bytes()).unwrap();
    let (unsigned, inputs) = unsigned_image(31);
    let (signed, measurements) = ccc_eif::sign_image(&unsigned, &signer).unwrap();
    // Only the header changes before the appended section.
    assert_eq!(signed[548..unsigned.len()], unsigned[548..]);
    let path = dir.join("signed.eif");
    std::fs::write(&path, &signed).unwrap();

    let mut checker = PcrSignatureChecker::from_eif(path.to_str().unwrap()).unwrap();
    checker.verify().unwrap();
    let mut reader = EifReader::from_eif(path.to_str().unwrap().to_owned()).unwrap();
    assert!(reader.check_crc(), "AWS reader: CRC of the signed image");
    let theirs = reader.get_measurements().unwrap();
    assert_eq!(
        without_algorithm(theirs.clone()),
        aws_measurements(&measurements)
    );
    assert_eq!(theirs["PCR8"], measurements.pcr8.unwrap().hex());
    let aws_cert = reader.get_certificate_info(theirs).unwrap();
    assert_eq!(reader.sign_check, Some(true));

    let read = Eif::from_bytes(&signed).unwrap();
    assert_eq!(read.measurements, measurements);
    let check = read.require_signed(Some(IN_2030)).unwrap();
    assert_eq!(Some(check.pcr8), measurements.pcr8);
    let describe: serde_json::Value =
        serde_json::from_str(&read.describe_at(IN_2030).unwrap().to_json()).unwrap();
    assert_eq!(
        describe["SigningCertificate"],
        serde_json::to_value(&aws_cert).unwrap(),
        "SigningCertificate differs from AWS's SignCertificateInfo"
    );
    assert_eq!(describe["SignatureCheck"], true);
    assert_eq!(
        describe["Metadata"]["BuildTime"],
        inputs.identity.build.build_time
    );

    // Signing twice is refused: the input must be the unsigned image.
    let err = ccc_eif::sign_image(&signed, &signer).unwrap_err();
    assert!(err.to_string().contains("signed already"), "{err}");
}

/// nitro-cli 1.5's describe-eif keys, in its order, with their JSON types: aws-nitro-enclaves-cli
/// `src/common/json_output.rs` `EifDescribeInfo` / `MetadataDescribeInfo` (stored blob
/// 39840382236) and image-format 0.8.1 `SignCertificateInfo`.
#[test]
fn describe_has_nitro_clis_keys_and_types() {
    use serde_json::Value;
    let (key_pem, cert_pem) = p384_key_and_dated_cert((2025, 1, 2), (2035, 11, 30));
    let signer = LocalSigner::from_pem(key_pem.as_bytes(), cert_pem.as_bytes()).unwrap();
    let (unsigned, _) = unsigned_image(32);
    let (signed, _) = ccc_eif::sign_image(&unsigned, &signer).unwrap();
    let read = Eif::from_bytes(&signed).unwrap();
    let text = read.describe_at(IN_2030).unwrap().to_json();
    // serde_json::Value would sort the keys; read them in document order from the text.
    let keys_at = |indent: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| l.strip_prefix(indent))
            .filter(|l| l.starts_with('"'))
            .filter_map(|l| l.split('"').nth(1).map(str::to_owned))
            .collect()
    };
    assert_eq!(
        keys_at("  "),
        [
            "EifVersion",
            "Measurements",
            "IsSigned",
            "SigningCertificate",
            "CheckCRC",
            "SignatureCheck",
            "ImageName",
            "ImageVersion",
            "Metadata"
        ]
    );
    let value: Value = serde_json::from_str(&text).unwrap();
    let kind = |v: &Value| match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    let shape = |v: &Value| -> Vec<(String, &'static str)> {
        v.as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), kind(v)))
            .collect()
    };
    let expect = |pairs: &[(&str, &'static str)]| -> Vec<(String, &'static str)> {
        let mut v: Vec<_> = pairs.iter().map(|(k, t)| ((*k).to_owned(), *t)).collect();
        v.sort();
        v
    };
    assert_eq!(
        shape(&value),
        expect(&[
            ("EifVersion", "number"),
            ("Measurements", "object"),
            ("IsSigned", "bool"),
            ("SigningCertificate", "object"),
            ("CheckCRC", "bool"),
            ("SignatureCheck", "bool"),
            ("ImageName", "string"),
            ("ImageVersion", "string"),
            ("Metadata", "object"),
        ])
    );
    assert_eq!(
        shape(&value["Measurements"]),
        expect(&[
            ("HashAlgorithm", "string"),
            ("PCR0", "string"),
            ("PCR1", "string"),
            ("PCR2", "string"),
            ("PCR8", "string"),
        ])
    );
    assert_eq!(
        shape(&value["SigningCertificate"]),
        expect(&[
            ("IssuerName", "object"),
            ("Algorithm", "string"),
            ("NotBefore", "string"),
            ("NotAfter", "string"),
            ("Signature", "string"),
        ])
    );
    assert_eq!(
        shape(&value["Metadata"]),
        expect(&[
            ("BuildTime", "string"),
            ("BuildTool", "string"),
            ("BuildToolVersion", "string"),
            ("OperatingSystem", "string"),
            ("KernelVersion", "string"),
            ("DockerInfo", "null"),
        ])
    );
    assert_eq!(
        value["SigningCertificate"]["NotAfter"],
        "Nov 30 00:00:00 2035 GMT"
    );
    assert_eq!(
        value["SigningCertificate"]["IssuerName"]["commonName"],
        "CCC release signer"
    );
    assert_eq!(
        value["SigningCertificate"]["Algorithm"],
        "ecdsa-with-SHA384"
    );
}

/// An EIF signed by AWS's own signer (`EifSigner::sign_image`, what `nitro-cli sign-eif`
/// runs) on our unsigned image: our reader verifies it and computes AWS's PCR8.
#[test]
fn our_reader_verifies_images_aws_signs() {
    let dir = common::scratch_dir("aws-signer");
    let (key_path, cert_path, _, _) = p384_key_and_cert(&dir, "aws-signer");
    let (unsigned, _) = unsigned_image(33);
    let path = dir.join("to-sign.eif");
    std::fs::write(&path, &unsigned).unwrap();
    let sign = SignKeyData::new(key_path.to_str().unwrap(), &cert_path).unwrap();
    let signer =
        aws_nitro_enclaves_image_format::utils::eif_signer::EifSigner::new(Some(sign)).unwrap();
    signer.sign_image(path.to_str().unwrap()).unwrap();
    let signed = std::fs::read(&path).unwrap();
    let read = Eif::from_bytes(&signed).unwrap();
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let now = ccc_sdk::time::UnixMillis(since_epoch.as_millis() as u64);
    let check = read.require_signed(Some(now)).unwrap();
    let mut reader = EifReader::from_eif(path.to_str().unwrap().to_owned()).unwrap();
    let theirs = reader.get_measurements().unwrap();
    assert_eq!(theirs["PCR8"], check.pcr8.hex());
    assert_eq!(
        without_algorithm(theirs),
        aws_measurements(&read.measurements)
    );
}

/// Hands `sign_image` a prepared section (to build the images a forger would).
struct Forged {
    certificate_der: Vec<u8>,
    section: Vec<u8>,
}

impl ccc_eif::PcrSigner for Forged {
    fn certificate_der(&self) -> &[u8] {
        &self.certificate_der
    }

    fn signature_section(&self, _: &ccc_eif::Pcr) -> Result<Vec<u8>, SignerError> {
        Ok(self.section.clone())
    }
}

/// Every broken signature is refused by name, by the reader and by describe-eif; none reads as
/// "unsigned and fine".
#[test]
fn bad_signatures_fail_closed_by_name() {
    use ccc_eif::SignatureCheckError as E;
    let (key_pem, cert_pem) = p384_key_and_dated_cert((2025, 1, 2), (2035, 11, 30));
    let signer = LocalSigner::from_pem(key_pem.as_bytes(), cert_pem.as_bytes()).unwrap();
    let (unsigned, _) = unsigned_image(34);
    let (signed, _) = ccc_eif::sign_image(&unsigned, &signer).unwrap();
    let good = Eif::from_bytes(&signed).unwrap();
    let section = good.signature.clone().unwrap();
    let check = |bytes: &[u8]| {
        let eif = Eif::from_bytes(bytes).unwrap();
        let describe = eif.describe_at(IN_2030).map(|d| d.to_json());
        let err = eif.require_signed(Some(IN_2030)).unwrap_err();
        assert_eq!(
            describe.unwrap_err(),
            err,
            "describe-eif must fail the same way"
        );
        let lenient: serde_json::Value = serde_json::from_str(&eif.describe_json()).unwrap();
        assert_eq!(lenient["SignatureCheck"], false);
        err
    };

    // Tampered signature: flip one byte of r in the COSE signature.
    let mut cose = section.cose_sign1.clone();
    let last = cose.len() - 10;
    cose[last] ^= 1;
    let forged = Forged {
        certificate_der: section.certificate_der.clone(),
        section: ccc_eif::signature::encode_section(&section.certificate_pem, &cose).unwrap(),
    };
    let (bytes, _) = ccc_eif::sign_image(&unsigned, &forged).unwrap();
    assert_eq!(check(&bytes), E::BadSignature);

    // Another certificate (another key) with this signature.
    let (_, other_cert) = p384_key_and_dated_cert((2025, 1, 2), (2035, 11, 30));
    let other = LocalSigner::from_pem(
        p384_key_and_dated_cert((2025, 1, 2), (2035, 11, 30))
            .0
            .as_bytes(),
        other_cert.as_bytes(),
    );
    assert_eq!(other.unwrap_err(), SignerError::KeyMismatch);
    let other_der = rustls_pki_types_der(&other_cert);
    let forged = Forged {
        certificate_der: other_der,
        section: ccc_eif::signature::encode_section(other_cert.as_bytes(), &section.cose_sign1)
            .unwrap(),
    };
    let (bytes, _) = ccc_eif::sign_image(&unsigned, &forged).unwrap();
    assert_eq!(check(&bytes), E::BadSignature);

    // A genuine signature of another image.
    let (other_image, _) = unsigned_image(35);
    let forged = Forged {
        certificate_der: section.certificate_der.clone(),
        section: ccc_eif::signature::encode_section(&section.certificate_pem, &section.cose_sign1)
            .unwrap(),
    };
    let (bytes, _) = ccc_eif::sign_image(&other_image, &forged).unwrap();
    assert!(matches!(check(&bytes), E::WrongPayload { .. }));

    // Expired, or not yet valid, at the time given.
    let after = ccc_sdk::time::UnixMillis::parse("2036-01-01T00:00:00Z").unwrap();
    let err = good.require_signed(Some(after)).unwrap_err();
    assert!(matches!(err, E::Expired { .. }), "{err:?}");
    assert!(err.to_string().contains("expired"), "{err}");
    assert_eq!(good.describe_at(after).unwrap_err(), err);
    let before = ccc_sdk::time::UnixMillis::parse("2024-12-31T00:00:00Z").unwrap();
    assert!(matches!(
        good.require_signed(Some(before)).unwrap_err(),
        E::NotYetValid { .. }
    ));

    // The signature section removed: the image is valid and unsigned, and a caller that knows
    // it must be signed gets Missing.
    let stripped = Eif::from_bytes(&unsigned).unwrap();
    assert_eq!(
        stripped.require_signed(Some(IN_2030)).unwrap_err(),
        E::Missing
    );
    assert_eq!(stripped.check_signature(Some(IN_2030)).unwrap(), None);
}

fn rustls_pki_types_der(pem: &str) -> Vec<u8> {
    // The DER of the certificate, as the section parser computes it.
    let section = ccc_eif::signature::encode_section(pem.as_bytes(), &[0]).unwrap();
    ccc_eif::SignatureSection::parse(&section)
        .unwrap()
        .certificate_der
}
