//! Shared helpers for the attestation tests: the real vectors (`tests/vectors`), and a builder
//! of synthetic documents (signed under an rcgen chain with aws-lc-rs, or QEMU-shaped
//! unsigned), encoded independently of the SDK with minicbor's encoder.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::panic,
    reason = "helpers shared by several test binaries: each uses part of them, and test code panics on failure"
)]

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair};
use ccc_sdk::time::UnixMillis;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P384_SHA384,
};

/// One real vector and the facts its README states.
pub struct Vector {
    pub dir: &'static str,
    pub file: &'static str,
    pub timestamp: u64,
    /// Leaf notBefore / notAfter, RFC 3339.
    pub leaf_not_before: &'static str,
    pub leaf_not_after: &'static str,
    pub module_id: &'static str,
    pub debug: bool,
    pub pcr_count: usize,
}

pub const VECTORS: &[Vector] = &[
    Vector {
        dir: "evervault-beta-nondebug-signed-eif-2022-10-13",
        file: "attestation.bin",
        timestamp: 1_665_651_482_136,
        leaf_not_before: "2022-10-13T08:57:59Z",
        leaf_not_after: "2022-10-13T11:58:02Z",
        module_id: "i-020b6af9246d90e92-enc0183d09086c24190",
        debug: false,
        pcr_count: 16,
    },
    Vector {
        dir: "evervault-beta-debug-2022-10-12",
        file: "attestation.bin",
        timestamp: 1_665_582_606_081,
        leaf_not_before: "2022-10-12T13:49:51Z",
        leaf_not_after: "2022-10-12T16:49:54Z",
        module_id: "i-03ad7cdb817437eeb-enc0183cc7569b3f6e1",
        debug: true,
        pcr_count: 16,
    },
    Vector {
        dir: "evervault-ga-debug-2023-09-18",
        file: "attestation.b64",
        timestamp: 1_695_049_410_860,
        leaf_not_before: "2023-09-18T14:37:09Z",
        leaf_not_after: "2023-09-18T17:37:12Z",
        module_id: "i-0918f6c55e3b61d89-enc018aa8b8e2285d13",
        debug: true,
        pcr_count: 16,
    },
    Vector {
        dir: "fastcrypto-debug-2024-11-14",
        file: "attestation.hex",
        timestamp: 1_731_627_989_450,
        leaf_not_before: "2024-11-14T21:24:26Z",
        leaf_not_after: "2024-11-15T00:24:29Z",
        module_id: "i-0f73a4b4cb74cc9f2-enc0192e4188fef781d",
        debug: true,
        pcr_count: 16,
    },
    Vector {
        dir: "fastcrypto-nondebug-pcr16-indefmap-2025-11-10",
        file: "attestation.hex",
        timestamp: 1_762_795_210_812,
        leaf_not_before: "2025-11-10T17:20:07Z",
        leaf_not_after: "2025-11-10T20:20:10Z",
        module_id: "i-06fb0bf4e70d5129f-enc019a5376999041b1",
        debug: false,
        pcr_count: 17,
    },
    Vector {
        dir: "nitrite-debug-2021-10-28",
        file: "attestation.hex",
        timestamp: 1_635_440_522_077,
        leaf_not_before: "2021-10-28T14:44:13Z",
        leaf_not_after: "2021-10-28T17:44:13Z",
        module_id: "i-0809849710bf1b61b-enc017cc45400406a27",
        debug: true,
        pcr_count: 16,
    },
];

/// Decoded bytes of a vector (`.bin` raw, `.hex`, `.b64`).
pub fn load(v: &Vector) -> Vec<u8> {
    ccc_test_vectors::read_decoded(format!("nitro-attestation-vectors/{}/{}", v.dir, v.file))
}

pub fn vector(dir: &str) -> (&'static Vector, Vec<u8>) {
    let v = VECTORS.iter().find(|v| v.dir == dir).unwrap();
    (v, load(v))
}

pub fn aws_root_pem() -> String {
    ccc_test_vectors::read_text("nitro-attestation-vectors/aws-nitro-enclaves-root-g1.pem")
}

pub fn ms(rfc3339: &str) -> UnixMillis {
    UnixMillis::parse(rfc3339).unwrap()
}

/// How one certificate of a synthetic chain is made.
#[derive(Clone)]
pub struct CertSpec {
    pub cn: String,
    pub is_ca: IsCa,
    pub key_usages: Vec<KeyUsagePurpose>,
    pub not_before: (i32, u8, u8),
    pub not_after: (i32, u8, u8),
}

impl CertSpec {
    pub fn ca(cn: &str, path_len: Option<u8>) -> Self {
        Self {
            cn: cn.into(),
            is_ca: IsCa::Ca(path_len.map_or(BasicConstraints::Unconstrained, |n| {
                BasicConstraints::Constrained(n)
            })),
            key_usages: vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
            ],
            not_before: (2020, 1, 1),
            not_after: (2040, 1, 1),
        }
    }

    pub fn leaf(cn: &str) -> Self {
        Self {
            cn: cn.into(),
            is_ca: IsCa::ExplicitNoCa,
            key_usages: vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::ContentCommitment,
            ],
            not_before: (2025, 1, 1),
            not_after: (2027, 1, 1),
        }
    }
}

/// The Nitro-like shape: root, regional (pathLen 2), zonal (1), instance (0), leaf.
pub fn nitro_like_specs() -> Vec<CertSpec> {
    vec![
        CertSpec::ca("synthetic-root.nitro-enclaves", None),
        CertSpec::ca("regional.synthetic.nitro-enclaves", Some(2)),
        CertSpec::ca("zonal.synthetic.nitro-enclaves", Some(1)),
        CertSpec::ca("instance.synthetic.nitro-enclaves", Some(0)),
        CertSpec::leaf("i-0123456789abcdef0-enc0123456789abcdef.synthetic.aws"),
    ]
}

/// A time inside every default window above.
pub fn synthetic_now() -> UnixMillis {
    ms("2026-01-01T00:00:00Z")
}

/// A chain made from specs: DER certificates root first, and the leaf's PKCS#8 key.
pub struct Chain {
    pub ders: Vec<Vec<u8>>,
    pub leaf_pkcs8: Vec<u8>,
}

pub fn make_chain(specs: &[CertSpec]) -> Chain {
    let mut ders = Vec::new();
    let mut issuer: Option<(CertificateParams, KeyPair)> = None;
    let mut leaf_pkcs8 = Vec::new();
    for spec in specs {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, &spec.cn);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "CCC tests");
        params.is_ca = spec.is_ca;
        params.key_usages = spec.key_usages.clone();
        let (y, m, d) = spec.not_before;
        params.not_before = rcgen::date_time_ymd(y, m, d);
        let (y, m, d) = spec.not_after;
        params.not_after = rcgen::date_time_ymd(y, m, d);
        let cert = match &issuer {
            None => params.self_signed(&key).unwrap(),
            Some((ip, ik)) => params
                .signed_by(&key, &Issuer::from_params(ip, ik))
                .unwrap(),
        };
        ders.push(cert.der().to_vec());
        leaf_pkcs8 = key.serialize_der();
        issuer = Some((params, key));
    }
    Chain { ders, leaf_pkcs8 }
}

/// The fields of a synthetic document; `None` means "leave the key out".
#[derive(Clone)]
pub struct Fields {
    pub module_id: Option<String>,
    pub digest: Option<String>,
    pub timestamp: Option<u64>,
    pub pcrs: Option<Vec<(u64, Vec<u8>)>>,
    pub certificate: Option<Vec<u8>>,
    pub cabundle: Option<Vec<Vec<u8>>>,
    /// Outer `None`: key absent; `Some(None)`: CBOR null.
    pub public_key: Option<Option<Vec<u8>>>,
    pub user_data: Option<Option<Vec<u8>>>,
    pub nonce: Option<Option<Vec<u8>>>,
    /// Extra (key, CBOR-encoded value bytes) pairs appended to the map.
    pub extra: Vec<(String, Vec<u8>)>,
    pub indefinite_map: bool,
}

impl Fields {
    /// What QEMU's nitro-enclave machine emits (all nine keys, zero certificate/cabundle).
    pub fn qemu() -> Self {
        Self {
            module_id: Some("i-emulated-enc0000000000000001".into()),
            digest: Some("SHA384".into()),
            timestamp: Some(1_764_000_000_000),
            pcrs: Some((0..16).map(|i| (i, vec![i as u8 + 1; 48])).collect()),
            certificate: Some(vec![0; 64]),
            cabundle: Some(vec![vec![0; 64]]),
            public_key: Some(None),
            user_data: Some(Some(b"user".to_vec())),
            nonce: Some(Some(b"nonce".to_vec())),
            extra: Vec::new(),
            indefinite_map: false,
        }
    }

    /// A signed-document payload with the given chain (leaf last).
    pub fn signed(chain: &Chain) -> Self {
        let (leaf, bundle) = chain.ders.split_last().unwrap();
        Self {
            certificate: Some(leaf.clone()),
            cabundle: Some(bundle.to_vec()),
            timestamp: Some(synthetic_now().0),
            ..Self::qemu()
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        use minicbor::Encoder;
        let mut e = Encoder::new(Vec::new());
        let mut entries: Vec<(String, Vec<u8>)> = Vec::new();
        let enc = |f: &dyn Fn(&mut Encoder<Vec<u8>>)| {
            let mut e = Encoder::new(Vec::new());
            f(&mut e);
            e.into_writer()
        };
        if let Some(v) = &self.module_id {
            entries.push((
                "module_id".into(),
                enc(&|e| {
                    e.str(v).unwrap();
                }),
            ));
        }
        if let Some(v) = &self.digest {
            entries.push((
                "digest".into(),
                enc(&|e| {
                    e.str(v).unwrap();
                }),
            ));
        }
        if let Some(v) = self.timestamp {
            entries.push((
                "timestamp".into(),
                enc(&|e| {
                    e.u64(v).unwrap();
                }),
            ));
        }
        if let Some(pcrs) = &self.pcrs {
            entries.push((
                "pcrs".into(),
                enc(&|e| {
                    e.map(pcrs.len() as u64).unwrap();
                    for (i, v) in pcrs {
                        e.u64(*i).unwrap().bytes(v).unwrap();
                    }
                }),
            ));
        }
        if let Some(v) = &self.certificate {
            entries.push((
                "certificate".into(),
                enc(&|e| {
                    e.bytes(v).unwrap();
                }),
            ));
        }
        if let Some(list) = &self.cabundle {
            entries.push((
                "cabundle".into(),
                enc(&|e| {
                    e.array(list.len() as u64).unwrap();
                    for c in list {
                        e.bytes(c).unwrap();
                    }
                }),
            ));
        }
        for (name, value) in [
            ("public_key", &self.public_key),
            ("user_data", &self.user_data),
            ("nonce", &self.nonce),
        ] {
            if let Some(v) = value {
                entries.push((
                    name.into(),
                    enc(&|e| {
                        match v {
                            Some(b) => e.bytes(b).unwrap(),
                            None => e.null().unwrap(),
                        };
                    }),
                ));
            }
        }
        entries.extend(self.extra.iter().cloned());
        if self.indefinite_map {
            e.begin_map().unwrap();
        } else {
            e.map(entries.len() as u64).unwrap();
        }
        for (k, v) in &entries {
            e.str(k).unwrap();
            e.writer_mut().extend_from_slice(v);
        }
        if self.indefinite_map {
            e.end().unwrap();
        }
        e.into_writer()
    }
}

/// `[protected, {}, payload, signature]`, optionally with tag 18.
pub fn cose(protected: &[u8], payload: &[u8], signature: &[u8], tagged: bool) -> Vec<u8> {
    let mut e = minicbor::Encoder::new(Vec::new());
    if tagged {
        e.tag(minicbor::data::Tag::new(18)).unwrap();
    }
    e.array(4).unwrap();
    e.bytes(protected).unwrap();
    e.map(0).unwrap();
    e.bytes(payload).unwrap();
    e.bytes(signature).unwrap();
    e.into_writer()
}

/// ES384 protected header `{1: -35}`.
pub const ES384_PROTECTED: &[u8] = &[0xa1, 0x01, 0x38, 0x22];
/// QEMU's `{1: -1}`.
pub const QEMU_PROTECTED: &[u8] = &[0xa1, 0x01, 0x20];

/// An independently encoded Sig_structure.
pub fn sig_structure(protected: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut e = minicbor::Encoder::new(Vec::new());
    e.array(4).unwrap();
    e.str("Signature1").unwrap();
    e.bytes(protected).unwrap();
    e.bytes(&[]).unwrap();
    e.bytes(payload).unwrap();
    e.into_writer()
}

/// Signs `payload` with the leaf key of `chain` as the NSM would.
pub fn sign(chain: &Chain, payload: &[u8], tagged: bool) -> Vec<u8> {
    let key =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &chain.leaf_pkcs8).unwrap();
    let sig = key
        .sign(
            &SystemRandom::new(),
            &sig_structure(ES384_PROTECTED, payload),
        )
        .unwrap();
    cose(ES384_PROTECTED, payload, sig.as_ref(), tagged)
}

/// A QEMU-shaped unsigned document.
pub fn qemu_document(fields: &Fields) -> Vec<u8> {
    cose(QEMU_PROTECTED, &fields.encode(), &[0; 64], false)
}
