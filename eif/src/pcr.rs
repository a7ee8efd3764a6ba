//! PCR values and their computation from EIF sections, streaming, exactly as nitro-cli,
//! `eif_build` and the Nitro hypervisor compute them.
//!
//! ```text
//! PCRn      = SHA384( 48 zero bytes || SHA384(content_n) )     (one TPM-style extend)
//! content_0 = kernel || cmdline || ramdisk[0] || ... || ramdisk[last]   (section data, file order)
//! content_1 = kernel || cmdline || ramdisk[0]
//! content_2 = ramdisk[1] || ... || ramdisk[last]
//! content_8 = DER of the signing certificate            (only when a signature section exists)
//! ```
//! (aws-nitro-enclaves-image-format `src/utils/mod.rs` `measure`/`get_pcrs`,
//! `src/utils/eif_reader.rs`; QEMU `hw/core/eif.c` does the same.) Headers, metadata and the
//! signature section are never measured.
//!
//! Speed: `content_1` is a prefix of `content_0` in every file nitro-cli writes, so its
//! digest is a clone of the `content_0` context taken where the first byte of
//! `ramdisk[1..]` arrives (in other orders the clone is kept and fed, which stays correct).
//! Only `content_2` is hashed twice; for large inputs that second hash (with the CRC and the
//! I/O) runs on the calling thread while `content_0` is hashed on a worker thread, so PCRs
//! cost about one SHA-384 pass of wall time.

use aws_lc_rs::digest::{self, Context, SHA384};
use std::fmt;
use std::io::{self, Read, Write};
use std::sync::mpsc;

/// Length of a SHA-384 PCR.
pub const PCR_LEN: usize = 48;

/// A 48-byte SHA-384 platform configuration register value. `Display` and `Debug` print
/// lower-case hex, the form nitro-cli prints and KMS policies compare.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pcr(pub [u8; PCR_LEN]);

impl Pcr {
    /// The register's reset value.
    pub const ZERO: Self = Self([0; PCR_LEN]);

    /// `SHA384(self || digest)`: one extend of this register with `digest`.
    #[must_use]
    pub fn extend(&self, digest: &[u8]) -> Self {
        let mut ctx = Context::new(&SHA384);
        ctx.update(&self.0);
        ctx.update(digest);
        Self::from_digest(&ctx.finish())
    }

    /// The PCR of a content hashed as one stream: `SHA384(0^48 || SHA384(content))` (what
    /// `nitro-cli pcr --input FILE` prints for a file).
    #[must_use]
    pub fn of_content(content: &[u8]) -> Self {
        Self::ZERO.extend(digest::digest(&SHA384, content).as_ref())
    }

    /// Lower-case hex.
    #[must_use]
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 96 hex digits (either case).
    ///
    /// # Errors
    /// [`PcrParseError`] when the text is not exactly 96 hex digits.
    pub fn from_hex(text: &str) -> Result<Self, PcrParseError> {
        let mut out = [0u8; PCR_LEN];
        hex::decode_to_slice(text, &mut out).map_err(|_| PcrParseError {
            text: text.chars().take(100).collect(),
        })?;
        Ok(Self(out))
    }

    fn from_digest(digest: &digest::Digest) -> Self {
        let mut out = [0u8; PCR_LEN];
        if let Some(bytes) = digest.as_ref().get(..PCR_LEN) {
            out.copy_from_slice(bytes);
        }
        Self(out)
    }
}

impl fmt::Display for Pcr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

impl fmt::Debug for Pcr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pcr({})", self.hex())
    }
}

/// Text that is not a 96-digit hex PCR.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PcrParseError {
    /// The rejected text (first 100 characters).
    pub text: String,
}

impl fmt::Display for PcrParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a SHA-384 PCR is 96 hex digits, found {:?}; copy it from `cargo xtask \
             describe-eif` output",
            self.text
        )
    }
}

impl core::error::Error for PcrParseError {}

/// The measurements of an enclave image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Measurements {
    /// Whole image: kernel, cmdline, all ramdisks.
    pub pcr0: Pcr,
    /// Kernel, cmdline and the bootstrap ramdisk.
    pub pcr1: Pcr,
    /// The application ramdisks (all but the first).
    pub pcr2: Pcr,
    /// The signing certificate, when the image is signed.
    pub pcr8: Option<Pcr>,
}

impl Measurements {
    /// The `HashAlgorithm` value CCC prints: `Sha384 { ... }`, as in the nitro-cli output
    /// AWS documents. nitro-cli prints the `Debug` form of its `sha2` hasher, which depends
    /// on the sha2 version: sha2 0.9 builds (e.g. `eif_build` 0.2.1) print `Sha384 { ... }`,
    /// image-format 0.8.1 with
    /// sha2 0.10 prints `Sha512_48 { .. }`. Compare PCRs, never this string.
    pub const HASH_ALGORITHM: &'static str = "Sha384 { ... }";

    /// nitro-cli's `Measurements` object: `HashAlgorithm`, `PCR0`, `PCR1`, `PCR2` and, when
    /// signed, `PCR8` (in that, sorted, order).
    #[must_use]
    pub fn to_json(&self) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        map.insert("HashAlgorithm".into(), Self::HASH_ALGORITHM.into());
        map.insert("PCR0".into(), self.pcr0.hex().into());
        map.insert("PCR1".into(), self.pcr1.hex().into());
        map.insert("PCR2".into(), self.pcr2.hex().into());
        if let Some(pcr8) = self.pcr8 {
            map.insert("PCR8".into(), pcr8.hex().into());
        }
        serde_json::Value::Object(map)
    }
}

/// Which registers a section's data goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Kernel, cmdline, first ramdisk: PCR0 and PCR1.
    Bootstrap,
    /// Later ramdisks: PCR0 and PCR2.
    App,
    /// Metadata, signature, headers: CRC only.
    Unmeasured,
}

/// Bytes handed to the worker thread per message.
const CHUNK_LEN: usize = 256 * 1024;
/// Buffers in flight between the calling thread and the worker.
const POOL_LEN: usize = 8;
/// Below this many measured bytes a worker thread costs more than it saves.
pub(crate) const PARALLEL_THRESHOLD: u64 = 4 * 1024 * 1024;

/// The `content_0` hash, with `content_1` riding along as long as it is a prefix.
#[derive(Clone)]
struct ImageHash {
    image: Context,
    /// `None` while `content_1` equals `content_0` so far.
    bootstrap: Option<Context>,
}

impl ImageHash {
    fn new() -> Self {
        Self {
            image: Context::new(&SHA384),
            bootstrap: None,
        }
    }

    fn update(&mut self, data: &[u8], bootstrap: bool) {
        if data.is_empty() {
            return;
        }
        if bootstrap {
            if let Some(own) = &mut self.bootstrap {
                own.update(data);
            }
        } else if self.bootstrap.is_none() {
            // content_1 stops being a prefix here: keep its state.
            self.bootstrap = Some(self.image.clone());
        }
        self.image.update(data);
    }

    /// (digest of content_0, digest of content_1).
    fn finish(self) -> (digest::Digest, digest::Digest) {
        match self.bootstrap {
            Some(own) => (self.image.finish(), own.finish()),
            None => {
                let image = self.image.finish();
                (image, image)
            }
        }
    }
}

struct Job {
    buf: Vec<u8>,
    len: usize,
    bootstrap: bool,
}

enum Engine {
    Inline(ImageHash),
    Worker {
        jobs: mpsc::SyncSender<Job>,
        returned: mpsc::Receiver<Vec<u8>>,
        handle: std::thread::JoinHandle<(digest::Digest, digest::Digest)>,
        allocated: usize,
    },
}

/// Where the pipeline failed: reading its input or writing its output.
#[derive(Debug)]
pub(crate) enum PipeError {
    Read(io::Error),
    Write(io::Error),
    /// The hashing thread died (a bug; reported rather than hidden).
    Worker,
}

/// What a finished pipeline computed.
pub(crate) struct PipeResult {
    pub(crate) crc: crc32fast::Hasher,
    pub(crate) pcr0: Pcr,
    pub(crate) pcr1: Pcr,
    pub(crate) pcr2: Pcr,
}

/// One pass over the section stream: CRC, PCR0/1/2 and (optionally) copying to an output.
pub(crate) struct Pipeline<'w> {
    crc: crc32fast::Hasher,
    app: Context,
    engine: Engine,
    out: Option<&'w mut dyn Write>,
    /// Worker mode: the buffer being filled. Inline mode: scratch for reads.
    buf: Vec<u8>,
    filled: usize,
    role: Role,
}

impl<'w> Pipeline<'w> {
    /// A pipeline continuing `crc`; `parallel` asks for a worker thread (falls back to
    /// inline hashing if none can be spawned).
    pub(crate) fn new(
        crc: crc32fast::Hasher,
        out: Option<&'w mut dyn Write>,
        parallel: bool,
    ) -> Self {
        let engine = if parallel { spawn_worker() } else { None };
        let engine = engine.unwrap_or_else(|| Engine::Inline(ImageHash::new()));
        Self {
            crc,
            app: Context::new(&SHA384),
            engine,
            out,
            buf: Vec::new(),
            filled: 0,
            role: Role::Unmeasured,
        }
    }

    /// Starts a section whose data goes to `role`'s registers.
    pub(crate) fn begin(&mut self, role: Role) -> Result<(), PipeError> {
        self.flush()?;
        self.role = role;
        Ok(())
    }

    /// Passes `data` through (CRC, hashes, output).
    pub(crate) fn absorb(&mut self, mut data: &[u8]) -> Result<(), PipeError> {
        if matches!(self.engine, Engine::Inline(_)) || self.role == Role::Unmeasured {
            self.flush()?;
            return self.dispatch_slice(data);
        }
        while !data.is_empty() {
            if self.buf.is_empty() {
                self.buf = self.take_buffer();
            }
            let room = CHUNK_LEN - self.filled;
            let (now, later) = data.split_at(room.min(data.len()));
            if let Some(dst) = self.buf.get_mut(self.filled..self.filled + now.len()) {
                dst.copy_from_slice(now);
            }
            self.filled += now.len();
            data = later;
            if self.filled == CHUNK_LEN {
                self.flush()?;
            }
        }
        Ok(())
    }

    /// Reads up to `len` bytes from `reader` and passes them through; returns how many were
    /// read (fewer than `len` only at end of input).
    pub(crate) fn absorb_from(
        &mut self,
        reader: &mut dyn Read,
        len: u64,
    ) -> Result<u64, PipeError> {
        self.flush()?;
        let mut done = 0u64;
        while done < len {
            if self.buf.is_empty() {
                self.buf = self.take_buffer();
            }
            let want = usize::try_from(len - done).map_or(CHUNK_LEN, |r| r.min(CHUNK_LEN));
            let n = read_full(reader, self.buf.get_mut(..want).unwrap_or_default())
                .map_err(PipeError::Read)?;
            self.filled = n;
            done += n as u64;
            self.flush()?;
            if n < want {
                break;
            }
        }
        Ok(done)
    }

    /// Hands the buffered bytes on.
    fn flush(&mut self) -> Result<(), PipeError> {
        if self.filled == 0 {
            return Ok(());
        }
        let len = std::mem::take(&mut self.filled);
        let buf = std::mem::take(&mut self.buf);
        self.common(buf.get(..len).unwrap_or_default())?;
        let bootstrap = self.role == Role::Bootstrap;
        match &mut self.engine {
            Engine::Inline(hash) => {
                if self.role != Role::Unmeasured {
                    hash.update(buf.get(..len).unwrap_or_default(), bootstrap);
                }
                self.buf = buf;
            }
            Engine::Worker { jobs, .. } => {
                if self.role == Role::Unmeasured {
                    self.buf = buf;
                } else {
                    jobs.send(Job {
                        buf,
                        len,
                        bootstrap,
                    })
                    .map_err(|_| PipeError::Worker)?;
                }
            }
        }
        Ok(())
    }

    fn dispatch_slice(&mut self, data: &[u8]) -> Result<(), PipeError> {
        self.common(data)?;
        if let Engine::Inline(hash) = &mut self.engine
            && self.role != Role::Unmeasured
        {
            hash.update(data, self.role == Role::Bootstrap);
        }
        Ok(())
    }

    /// Work done on the calling thread for every byte: CRC, PCR2 content, output.
    fn common(&mut self, data: &[u8]) -> Result<(), PipeError> {
        self.crc.update(data);
        if self.role == Role::App {
            self.app.update(data);
        }
        if let Some(out) = &mut self.out {
            out.write_all(data).map_err(PipeError::Write)?;
        }
        Ok(())
    }

    fn take_buffer(&mut self) -> Vec<u8> {
        if let Engine::Worker {
            returned,
            allocated,
            ..
        } = &mut self.engine
        {
            if let Ok(buf) = returned.try_recv() {
                return buf;
            }
            if *allocated < POOL_LEN {
                *allocated += 1;
            } else if let Ok(buf) = returned.recv() {
                return buf;
            }
        }
        vec![0u8; CHUNK_LEN]
    }

    /// Flushes and returns the CRC so far and the three PCRs.
    pub(crate) fn finish(mut self) -> Result<PipeResult, PipeError> {
        self.flush()?;
        let (image, bootstrap) = match self.engine {
            Engine::Inline(hash) => hash.finish(),
            Engine::Worker { jobs, handle, .. } => {
                drop(jobs);
                handle.join().map_err(|_| PipeError::Worker)?
            }
        };
        Ok(PipeResult {
            crc: self.crc,
            pcr0: Pcr::ZERO.extend(image.as_ref()),
            pcr1: Pcr::ZERO.extend(bootstrap.as_ref()),
            pcr2: Pcr::ZERO.extend(self.app.finish().as_ref()),
        })
    }
}

fn spawn_worker() -> Option<Engine> {
    if std::thread::available_parallelism().map_or(1, usize::from) < 2 {
        return None;
    }
    let (jobs, incoming) = mpsc::sync_channel::<Job>(POOL_LEN);
    let (give_back, returned) = mpsc::channel::<Vec<u8>>();
    let handle = std::thread::Builder::new()
        .name("ccc-eif-sha384".into())
        .spawn(move || {
            let mut hash = ImageHash::new();
            for job in incoming {
                hash.update(job.buf.get(..job.len).unwrap_or_default(), job.bootstrap);
                // The pipeline may be gone (error path); the buffer is then just freed.
                let _ = give_back.send(job.buf);
            }
            hash.finish()
        })
        .ok()?;
    Some(Engine::Worker {
        jobs,
        returned,
        handle,
        allocated: 0,
    })
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
pub(crate) fn read_full(reader: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(buf.get_mut(filled..).unwrap_or_default()) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference: the three contents hashed separately, as the formula reads.
    fn reference(sections: &[(Role, &[u8])]) -> (Pcr, Pcr, Pcr) {
        let collect = |pred: &dyn Fn(Role) -> bool| -> Vec<u8> {
            sections
                .iter()
                .filter(|(r, _)| pred(*r))
                .flat_map(|(_, d)| d.iter().copied())
                .collect()
        };
        (
            Pcr::of_content(&collect(&|r| r != Role::Unmeasured)),
            Pcr::of_content(&collect(&|r| r == Role::Bootstrap)),
            Pcr::of_content(&collect(&|r| r == Role::App)),
        )
    }

    fn run(
        sections: &[(Role, &[u8])],
        parallel: bool,
        via_reader: bool,
    ) -> (Pcr, Pcr, Pcr, u32, Vec<u8>) {
        let mut out = Vec::new();
        let mut pipe = Pipeline::new(crc32fast::Hasher::new(), Some(&mut out), parallel);
        for (role, data) in sections {
            pipe.begin(*role).unwrap();
            if via_reader {
                let mut r: &[u8] = data;
                assert_eq!(
                    pipe.absorb_from(&mut r, data.len() as u64).unwrap(),
                    data.len() as u64
                );
            } else {
                // Odd-sized pieces exercise the chunking.
                for piece in data.chunks(100_003) {
                    pipe.absorb(piece).unwrap();
                }
            }
        }
        let result = pipe.finish().unwrap();
        (
            result.pcr0,
            result.pcr1,
            result.pcr2,
            result.crc.finalize(),
            out,
        )
    }

    #[test]
    fn pipeline_matches_the_formula_in_every_mode_and_order() {
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 + i / 255) as u8).collect();
        let kernel = &big[..1_000_001];
        let ramdisk0 = &big[5..700_000];
        let ramdisk1 = &big[17..];
        let orders: Vec<Vec<(Role, &[u8])>> = vec![
            // nitro-cli order.
            vec![
                (Role::Bootstrap, kernel),
                (Role::Bootstrap, b"console=ttyS0"),
                (Role::Unmeasured, b"{\"json\":1}"),
                (Role::Bootstrap, ramdisk0),
                (Role::App, ramdisk1),
                (Role::App, b"abc"),
            ],
            // cmdline after an application ramdisk: content_1 is no longer a prefix.
            vec![
                (Role::Bootstrap, kernel),
                (Role::Bootstrap, ramdisk0),
                (Role::App, ramdisk1),
                (Role::Bootstrap, b"console=ttyS0"),
            ],
            // No ramdisks; and empty sections.
            vec![(Role::Bootstrap, kernel), (Role::Bootstrap, b"")],
            vec![
                (Role::Bootstrap, b""),
                (Role::Bootstrap, b""),
                (Role::App, b""),
            ],
        ];
        for sections in &orders {
            let expected = reference(sections);
            let all: Vec<u8> = sections
                .iter()
                .flat_map(|(_, d)| d.iter().copied())
                .collect();
            for parallel in [false, true] {
                for via_reader in [false, true] {
                    let (p0, p1, p2, crc, out) = run(sections, parallel, via_reader);
                    assert_eq!(
                        (p0, p1, p2),
                        expected,
                        "parallel={parallel} reader={via_reader}"
                    );
                    assert_eq!(crc, crc32fast::hash(&all));
                    assert_eq!(out, all);
                }
            }
        }
    }

    #[test]
    fn pcr_hex_round_trip_and_known_value() {
        // SHA384(0^48 || SHA384("")): PCR2 of every image with fewer than two ramdisks.
        let empty = Pcr::of_content(b"");
        assert_eq!(Pcr::from_hex(&empty.hex()).unwrap(), empty);
        assert_eq!(Pcr::from_hex(&empty.hex().to_uppercase()).unwrap(), empty);
        assert!(Pcr::from_hex("00").is_err());
        assert!(Pcr::from_hex(&"zz".repeat(48)).is_err());
        let manual = {
            let inner = digest::digest(&SHA384, b"");
            let mut both = vec![0u8; 48];
            both.extend_from_slice(inner.as_ref());
            digest::digest(&SHA384, &both)
        };
        assert_eq!(&empty.0[..], manual.as_ref());
    }
}
