//! An enclave image from its parts: the kernel, the measured command line, ramdisk 0 (`init`,
//! `dev/`), ramdisk 1 (`cmd`, `env`, the application under `rootfs/`) and the EIF metadata.
//! Every byte is decided by the inputs: the ramdisks are deterministic cpio archives whose
//! entries all carry the same fixed mtime, and the EIF's only time is the given epoch.

use ccc_eif::cpio::FileMode;
use ccc_eif::initramfs::{self, Init, ROOTFS};
use ccc_eif::{BuildInfo, Eif, EifBuilder, EifIdentity, FileSource, Measurements, SourceDateEpoch};
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result, ensure};
use crate::kernel::KernelArtifact;
use crate::project::Tool;

/// The kernel command line every CCC image carries (measured: PCR0 and PCR1).
///
/// nitro-cli's x86_64 default (`blobs/x86_64/cmdline`) without the two words CCC's kernel does
/// not know: `pci=off` (the kernel has no PCI, `CONFIG_PCI` is off) and `nomodules` (no module
/// support, `CONFIG_MODULES` is off). Linux hands unknown words to PID 1 as arguments or
/// environment, so keeping them would only add noise to the init's environment; parity with
/// nitro-cli's bytes buys nothing, since its kernel differs anyway. What stays:
/// - `reboot=k`: reset through the keyboard controller, as on Nitro (QEMU's microvm has none;
///   emulation appends `reboot=t`, which is not measured);
/// - `panic=30`: a kernel panic reboots, i.e. ends the enclave, after 30 s;
/// - `console=ttyS0`: the serial console `nitro-cli console` reads;
/// - `i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd`: the i8042 driver (built in,
///   `CONFIG_SERIO_I8042`) must not probe devices the Nitro VM does not have;
/// - `random.trust_cpu=on`: seed the RNG from RDRAND at boot.
pub const CMDLINE: &str = "reboot=k panic=30 console=ttyS0 i8042.noaux i8042.nomux \
                                  i8042.nopnp i8042.dumbkbd random.trust_cpu=on";

/// The mtime of every ramdisk entry. Fixed (not the commit time) so the PCRs depend only on
/// the bytes of the kernel, command line, init and application: a commit that changes none of
/// them leaves every PCR as it was.
pub const RAMDISK_MTIME: SourceDateEpoch = SourceDateEpoch::UNIX_EPOCH;

/// The directory of the application inside the image's root (`/bin/<name>`).
pub const APP_DIR: &str = "bin";

/// The application's environment (`/env`): a PATH and nothing else.
pub const APP_ENV: &[&str] = &["PATH=/bin"];

/// Everything an image is made of.
#[derive(Debug, Clone)]
pub struct ImageSpec<'a> {
    /// The bzImage.
    pub kernel: &'a KernelArtifact,
    /// The measured kernel command line.
    pub cmdline: String,
    /// The static init (ramdisk 0's `init`).
    pub init: PathBuf,
    /// The static application (ramdisk 1's `rootfs/bin/<app_name>`).
    pub app: PathBuf,
    /// The application's file name in the image.
    pub app_name: String,
    /// Arguments after the program in `/cmd`.
    pub args: Vec<String>,
    /// `/env`.
    pub env: Vec<String>,
    /// The EIF metadata.
    pub identity: EifIdentity,
}

impl<'a> ImageSpec<'a> {
    /// The standard image of an application: [`CMDLINE`], no arguments, [`APP_ENV`].
    pub fn new(
        kernel: &'a KernelArtifact,
        init: &Path,
        app: &Path,
        app_name: &str,
        identity: EifIdentity,
    ) -> Self {
        Self {
            kernel,
            cmdline: CMDLINE.to_owned(),
            init: init.to_path_buf(),
            app: app.to_path_buf(),
            app_name: app_name.to_owned(),
            args: Vec::new(),
            env: APP_ENV.iter().map(|s| (*s).to_owned()).collect(),
            identity,
        }
    }

    /// The argv in `/cmd`: the application's absolute path, then [`ImageSpec::args`].
    pub fn cmd(&self) -> Vec<String> {
        std::iter::once(format!("/{APP_DIR}/{}", self.app_name))
            .chain(self.args.iter().cloned())
            .collect()
    }
}

/// An image on disk.
#[derive(Debug, Clone)]
pub struct Image {
    /// The EIF.
    pub eif: PathBuf,
    /// Ramdisk 0 as written into the EIF.
    pub bootstrap: PathBuf,
    /// Ramdisk 1 as written into the EIF.
    pub customer: PathBuf,
    /// PCR0, PCR1, PCR2 (unsigned: no PCR8).
    pub measurements: Measurements,
    /// The EIF's length in bytes.
    pub len: u64,
}

/// The metadata of a release image: `BuildTool` and `BuildToolVersion` name `tool`;
/// `OperatingSystem` and `KernelVersion` come from the kernel config's third line
/// (`# Linux/x86_64 6.12.117 Kernel Configuration`), split as nitro-cli splits it (on space,
/// `/` and `-`); without a config, from the bzImage's version.
///
/// # Errors
/// The config exists but cannot be read.
pub fn identity(
    image_name: &str,
    version: &str,
    epoch: SourceDateEpoch,
    kernel: &KernelArtifact,
    tool: &Tool,
) -> Result<EifIdentity> {
    let from_config = match &kernel.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).io("read", path)?;
            text.lines().nth(2).and_then(|line| {
                let words: Vec<&str> = line.split([' ', '/', '-']).collect();
                Some(((*words.get(1)?).to_owned(), (*words.get(3)?).to_owned()))
            })
        }
        None => None,
    };
    let (os, kernel_version) = from_config.unwrap_or_else(|| {
        (
            "Linux".to_owned(),
            kernel
                .version
                .split_whitespace()
                .next()
                .unwrap_or("unknown")
                .to_owned(),
        )
    });
    Ok(EifIdentity::new(
        image_name,
        version,
        BuildInfo::new(epoch, &tool.name, &tool.version, os, kernel_version),
    ))
}

/// Writes `bootstrap.cpio.gz`, `customer.cpio.gz` and the EIF `eif_name` into `out_dir` (created if
/// needed), then reads the EIF back with the validating reader and checks its measurements.
///
/// # Errors
/// An input cannot be read, a launch line is invalid, a write fails, or the written image does
/// not read back with the same measurements.
pub fn assemble(spec: &ImageSpec<'_>, out_dir: &Path, eif_name: &str) -> Result<Image> {
    std::fs::create_dir_all(out_dir).io("create", out_dir)?;
    let bootstrap_path = out_dir.join("bootstrap.cpio.gz");
    let customer_path = out_dir.join("customer.cpio.gz");
    let eif_path = out_dir.join(eif_name);

    let bootstrap = initramfs::bootstrap_ramdisk(RAMDISK_MTIME, Init::File(&spec.init))
        .map_err(|e| Error::assemble("the bootstrap ramdisk", e))?;
    write_archive(&bootstrap, &bootstrap_path)?;
    let customer_error =
        |e: ccc_eif::cpio::ArchiveError| Error::assemble("the customer ramdisk", e);
    let mut customer = initramfs::customer_ramdisk(RAMDISK_MTIME, &spec.cmd(), &spec.env)
        .map_err(customer_error)?;
    customer
        .add_host_file(
            format!("{ROOTFS}/{APP_DIR}/{}", spec.app_name),
            &spec.app,
            FileMode::Executable,
        )
        .map_err(customer_error)?;
    write_archive(&customer, &customer_path)?;

    let kernel = FileSource::open(&spec.kernel.path).io("open the kernel", &spec.kernel.path)?;
    let bootstrap_source = FileSource::open(&bootstrap_path).io("open", &bootstrap_path)?;
    let customer_source = FileSource::open(&customer_path).io("open", &customer_path)?;
    let built = EifBuilder::new(&kernel, spec.cmdline.clone(), spec.identity.clone())
        .ramdisk(&bootstrap_source)
        .ramdisk(&customer_source)
        .write_file(&eif_path)
        .map_err(|e| Error::assemble(eif_path.display().to_string(), e))?;
    let read = Eif::open(&eif_path).map_err(|source| Error::Eif {
        path: eif_path.clone(),
        source,
    })?;
    ensure!(
        read.measurements == built.measurements && read.len == built.len,
        Error::assemble(
            eif_path.display().to_string(),
            "it reads back with other measurements than it was written with"
        )
    );
    Ok(Image {
        eif: eif_path,
        bootstrap: bootstrap_path,
        customer: customer_path,
        measurements: built.measurements,
        len: built.len,
    })
}

fn write_archive(archive: &ccc_eif::cpio::Archive, path: &Path) -> Result<()> {
    let bytes = ramdisk_bytes(archive)?;
    std::fs::write(path, bytes).io("write", path)
}

/// A ramdisk as it goes into the EIF: the cpio archive, gzip-compressed, padded with zeros to
/// a multiple of 4 bytes.
///
/// Compressed because the application binary is most of an image (the template's is about
/// 4.5 MiB, 2 MiB gzipped), and the kernel unpacks gzip initramfs itself (`CONFIG_RD_GZIP`;
/// it skips the NUL padding between archives). Deterministic: level 9, no file name, mtime 0
/// and OS byte 255 ("unknown") in the header, and flate2's pure-Rust backend at the version
/// Cargo.lock pins, so the bytes (and PCR0/PCR2) depend only on the archive.
///
/// # Errors
/// The compressor failed (it writes to memory, so only on a bug).
pub fn ramdisk_bytes(archive: &ccc_eif::cpio::Archive) -> Result<Vec<u8>> {
    let mut cpio = Vec::new();
    archive
        .write_to(&mut cpio)
        .map_err(|e| Error::assemble("a ramdisk", e))?;
    let mut encoder = flate2::GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(
            Vec::with_capacity(cpio.len() / 2),
            flate2::Compression::best(),
        );
    std::io::Write::write_all(&mut encoder, &cpio)
        .map_err(|e| Error::assemble("a ramdisk", format!("cannot compress it: {e}")))?;
    let mut bytes = encoder
        .finish()
        .map_err(|e| Error::assemble("a ramdisk", format!("cannot compress it: {e}")))?;
    bytes.resize(bytes.len().next_multiple_of(4), 0);
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool() -> Tool {
        Tool {
            name: "ccc-xtask".into(),
            version: "0.1.0".into(),
            command: "cargo xtask".into(),
        }
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ccc-image-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A fake bzImage (the boot header's magic and version string), a fake init and app.
    fn parts(dir: &Path) -> (KernelArtifact, PathBuf, PathBuf) {
        let mut kernel = vec![0x5au8; 8192];
        kernel[0x202..0x206].copy_from_slice(b"HdrS");
        kernel[0x20E..0x210].copy_from_slice(&0x100u16.to_le_bytes());
        let version = b"6.12.117 (ccc@ccc) #1 SMP 2026-11-14 12:56:00 UTC\0";
        kernel[0x300..0x300 + version.len()].copy_from_slice(version);
        let kernel_path = dir.join("bzImage");
        std::fs::write(&kernel_path, &kernel).unwrap();
        let config = dir.join("bzImage.config");
        std::fs::write(
            &config,
            "#\n# Automatically generated file; DO NOT EDIT.\n# Linux/x86_64 6.12.117 Kernel \
             Configuration\n#\n",
        )
        .unwrap();
        let kernel = crate::kernel::inspect(&kernel_path, Some(config)).unwrap();
        let init = dir.join("ccc-init");
        std::fs::write(&init, b"\x7fELF init").unwrap();
        let app = dir.join("app");
        std::fs::write(&app, b"\x7fELF app, 23 bytes long").unwrap();
        (kernel, init, app)
    }

    fn spec<'a>(kernel: &'a KernelArtifact, init: &Path, app: &Path) -> ImageSpec<'a> {
        let epoch = SourceDateEpoch::from_secs(1_700_000_000);
        let identity = identity("ccc-enclave", "0.1.0", epoch, kernel, &tool()).unwrap();
        ImageSpec::new(kernel, init, app, "ccc-template-enclave", identity)
    }

    #[test]
    fn cmdline_is_nitro_cli_without_the_words_our_kernel_does_not_know() {
        let nitro_cli = "reboot=k panic=30 pci=off nomodules console=ttyS0 i8042.noaux \
                         i8042.nomux i8042.nopnp i8042.dumbkbd random.trust_cpu=on";
        let kept: Vec<&str> = nitro_cli
            .split(' ')
            .filter(|w| !["pci=off", "nomodules"].contains(w))
            .collect();
        assert_eq!(CMDLINE, kept.join(" "));
        // The kernel config agrees: no PCI, no modules, the i8042 driver built in.
        let config = crate::kernel::config_values(
            &std::fs::read_to_string(
                crate::tests::ccc_root().join("kernel-config/config-6.12-x86_64"),
            )
            .unwrap(),
        );
        assert_eq!(config.get("CONFIG_PCI").map(String::as_str), Some("n"));
        assert_eq!(config.get("CONFIG_MODULES").map(String::as_str), Some("n"));
        assert_eq!(
            config.get("CONFIG_SERIO_I8042").map(String::as_str),
            Some("y")
        );
    }

    #[test]
    fn metadata_follows_nitro_cli() {
        let dir = scratch("identity");
        let (kernel, _, _) = parts(&dir);
        let epoch = SourceDateEpoch::from_secs(1_700_000_000);
        let id = identity("ccc-enclave", "0.1.0", epoch, &kernel, &tool()).unwrap();
        assert_eq!(id.image_name, "ccc-enclave");
        assert_eq!(id.image_version, "0.1.0");
        assert_eq!(id.build.build_time, "2023-11-14T22:13:20+00:00");
        assert_eq!(id.build.build_tool, "ccc-xtask");
        assert_eq!(id.build.operating_system, "Linux");
        assert_eq!(id.build.kernel_version, "6.12.117");
        let bare = KernelArtifact {
            config: None,
            ..kernel
        };
        let id = identity("x", "1", epoch, &bare, &tool()).unwrap();
        assert_eq!(
            (
                id.build.operating_system.as_str(),
                id.build.kernel_version.as_str()
            ),
            ("Linux", "6.12.117")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The pipeline's image, read by AWS's own reader: same PCRs, good CRC, same metadata.
    #[test]
    fn aws_reader_agrees_with_the_pipeline() {
        let dir = scratch("aws");
        let (kernel, init, app) = parts(&dir);
        let image = assemble(&spec(&kernel, &init, &app), &dir.join("out"), "x.eif").unwrap();
        let mut reader = aws_nitro_enclaves_image_format::utils::eif_reader::EifReader::from_eif(
            image.eif.display().to_string(),
        )
        .unwrap();
        assert!(reader.check_crc(), "AWS's reader rejects the CRC");
        let pcrs = reader.get_measurements().unwrap();
        assert_eq!(pcrs["PCR0"], image.measurements.pcr0.hex());
        assert_eq!(pcrs["PCR1"], image.measurements.pcr1.hex());
        assert_eq!(pcrs["PCR2"], image.measurements.pcr2.hex());
        assert!(!pcrs.contains_key("PCR8"));
        let metadata = reader.get_metadata().unwrap();
        assert_eq!(metadata.img_name, "ccc-enclave");
        assert_eq!(metadata.img_version, "0.1.0");
        assert_eq!(metadata.build_info.img_kernel, "6.12.117");
        assert_eq!(
            reader.get_header().num_sections,
            5,
            "kernel, cmdline, metadata, two ramdisks"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Independently of ccc-eif's reader: the sections hold exactly the inputs, and PCR1/PCR2
    /// are the SHA-384 extends of them (the formula in the EIF notes, computed with sha2).
    #[test]
    fn sections_and_pcrs_from_first_principles() {
        use sha2::{Digest, Sha384};
        let dir = scratch("sections");
        let (kernel, init, app) = parts(&dir);
        let image = assemble(&spec(&kernel, &init, &app), &dir.join("out"), "x.eif").unwrap();
        let extend = |content: &[u8]| {
            let mut h = Sha384::new();
            h.update([0u8; 48]);
            h.update(Sha384::digest(content));
            hex::encode(h.finalize())
        };
        let kernel_bytes = std::fs::read(&kernel.path).unwrap();
        let bootstrap = std::fs::read(&image.bootstrap).unwrap();
        let customer = std::fs::read(&image.customer).unwrap();
        let mut pcr1 = kernel_bytes.clone();
        pcr1.extend_from_slice(CMDLINE.as_bytes());
        pcr1.extend_from_slice(&bootstrap);
        assert_eq!(extend(&pcr1), image.measurements.pcr1.hex());
        assert_eq!(extend(&customer), image.measurements.pcr2.hex());
        let mut pcr0 = pcr1;
        pcr0.extend_from_slice(&customer);
        assert_eq!(extend(&pcr0), image.measurements.pcr0.hex());
        // Both ramdisks have lengths the kernel can chain (multiples of 4).
        assert_eq!(bootstrap.len() % 4, 0);
        assert_eq!(customer.len() % 4, 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// GNU cpio reads both ramdisks and lists exactly the expected entries.
    #[test]
    fn gnu_cpio_lists_the_expected_entries() {
        let dir = scratch("cpio");
        let (kernel, init, app) = parts(&dir);
        let image = assemble(&spec(&kernel, &init, &app), &dir.join("out"), "x.eif").unwrap();
        // gzip(1) checks the stream (and its trailer) and tolerates the zero padding.
        let gunzip = |path: &Path| -> std::process::ChildStdout {
            std::process::Command::new("gzip")
                .args(["-dc", "--quiet"])
                .stdin(std::fs::File::open(path).unwrap())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("gzip")
                .stdout
                .unwrap()
        };
        let list = |path: &Path| -> Vec<String> {
            let out = std::process::Command::new("cpio")
                .args(["-t", "--quiet"])
                .stdin(gunzip(path))
                .output()
                .expect("GNU cpio (Debian package cpio; `cargo xtask setup`)");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout)
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect()
        };
        assert_eq!(list(&image.bootstrap), ["dev", "init"]);
        assert_eq!(
            list(&image.customer),
            [
                "cmd",
                "env",
                "rootfs",
                "rootfs/bin",
                "rootfs/bin/ccc-template-enclave",
                "rootfs/dev",
                "rootfs/proc",
                "rootfs/run",
                "rootfs/sys",
                "rootfs/tmp",
                "rootfs/var",
            ]
        );
        // Extract and compare contents and modes.
        let extracted = dir.join("extracted");
        std::fs::create_dir_all(&extracted).unwrap();
        let status = std::process::Command::new("cpio")
            .args(["-i", "--quiet", "--make-directories"])
            .current_dir(&extracted)
            .stdin(gunzip(&image.customer))
            .status()
            .unwrap();
        assert!(status.success());
        assert_eq!(
            std::fs::read_to_string(extracted.join("cmd")).unwrap(),
            "/bin/ccc-template-enclave\n"
        );
        assert_eq!(
            std::fs::read_to_string(extracted.join("env")).unwrap(),
            "PATH=/bin\n"
        );
        assert_eq!(
            std::fs::read(extracted.join("rootfs/bin/ccc-template-enclave")).unwrap(),
            std::fs::read(&app).unwrap()
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(extracted.join("rootfs/bin/ccc-template-enclave"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn same_inputs_same_bytes_and_the_app_only_moves_pcr0_and_pcr2() {
        let dir = scratch("determinism");
        let (kernel, init, app) = parts(&dir);
        let a = assemble(&spec(&kernel, &init, &app), &dir.join("a"), "x.eif").unwrap();
        let b = assemble(&spec(&kernel, &init, &app), &dir.join("b"), "x.eif").unwrap();
        assert_eq!(
            std::fs::read(&a.eif).unwrap(),
            std::fs::read(&b.eif).unwrap()
        );
        let other_app = dir.join("other");
        std::fs::write(&other_app, b"\x7fELF another app").unwrap();
        let c = assemble(&spec(&kernel, &init, &other_app), &dir.join("c"), "x.eif").unwrap();
        assert_eq!(a.measurements.pcr1, c.measurements.pcr1);
        assert_ne!(a.measurements.pcr2, c.measurements.pcr2);
        assert_ne!(a.measurements.pcr0, c.measurements.pcr0);
        // The epoch reaches only the (unmeasured) metadata.
        let mut later = spec(&kernel, &init, &app);
        later.identity.build.build_time = SourceDateEpoch::from_secs(1_800_000_000).rfc3339();
        let d = assemble(&later, &dir.join("d"), "x.eif").unwrap();
        assert_eq!(a.measurements, d.measurements);
        assert_ne!(
            std::fs::read(&a.eif).unwrap(),
            std::fs::read(&d.eif).unwrap()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
