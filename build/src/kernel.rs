//! The enclave kernel. A bzImage built reproducibly from Debian's `linux-source-6.12` package
//! (pinned by version and SHA-256 in CCC's `kernel-config/source.json`) and the committed
//! configuration `kernel-config/config-6.12-x86_64`, cached in the per-user cache
//! (`<cache>/kernel/<key>/`, see [`crate::cache`]) by a hash of everything that decides its
//! bytes — so every project on a machine shares one build. Or a kernel a team brings itself
//! (`--kernel PATH`, e.g. nitro-cli's blobs).
//!
//! The kernel's bytes are part of PCR0 and PCR1: anything that changes them (the pin, the
//! config, the compiler Debian ships, this recipe) changes every image's measurements. Where
//! the tree is built does not (the compiler's file prefix map removes it), nor where the cache
//! is.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::cache::{self, Cache};
use crate::error::{Error, IoContext, Result, ensure};
use crate::hash;
use crate::host::{self, run_quiet};
use crate::progress::{elapsed, run_logged};

/// Bump when a change to the steps below can change the kernel's bytes (it is in the cache key).
const RECIPE: u32 = 1;

/// The committed kernel configuration, relative to CCC's source root.
pub const CONFIG_DIR: &str = "kernel-config";

/// The pin file inside [`CONFIG_DIR`].
pub const PIN_FILE: &str = "source.json";

/// The cache's kind for kernels.
const CACHE_KIND: &str = "kernel";

/// Build identity baked into the image (`uname -v`, `/proc/version`).
const BUILD_USER: &str = "ccc";
const BUILD_HOST: &str = "ccc";
const BUILD_VERSION: &str = "1";

/// A fixed PATH for the kernel build, so the host's tool shims (pyenv, ccache, ...) cannot
/// change what runs.
const BUILD_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Debian packages the kernel build needs.
const BUILD_PACKAGES: &[&str] = &[
    "build-essential",
    "bc",
    "bison",
    "flex",
    "libelf-dev",
    "libssl-dev",
    "cpio",
    "xz-utils",
];

/// Options of the `kernel` command.
#[derive(Debug, Default, clap::Args)]
pub struct Args {
    /// Rebuild even when the cache already holds this kernel.
    #[arg(long)]
    pub force: bool,
    /// Build a second time in another directory and require byte-identical bzImages.
    #[arg(long)]
    pub verify_reproducible: bool,
    /// Regenerate kernel-config/config-6.12-x86_64 from `make tinyconfig` + enclave.fragment +
    /// `make olddefconfig`, then build. The kernel's bytes, and so PCR0/PCR1, change.
    #[arg(long, conflicts_with = "kernel")]
    pub regenerate_config: bool,
    /// Keep the build tree (<cache>/kernel/build/<key>/) for inspection (until the next build).
    #[arg(long)]
    pub keep_tree: bool,
    /// Only check the pinned patches: extract the files they touch from the pinned source,
    /// apply them exactly (no fuzz) and require their `absent_after` strings gone. No build.
    #[arg(long, conflicts_with_all = ["kernel", "regenerate_config", "verify_reproducible"])]
    pub check_patches: bool,
    /// Use this bzImage instead of building one (for example nitro-cli's
    /// blobs/x86_64/bzImage; a `<PATH>.config` next to it is picked up): checks it and prints
    /// what CCC would use.
    #[arg(long, value_name = "PATH")]
    pub kernel: Option<PathBuf>,
}

/// The `kernel` command: builds (or finds in the cache) CCC's kernel from the sources at
/// `ccc_root`, or checks `--kernel`, and prints its path, version and SHA-256.
///
/// # Errors
/// Any failed step; messages name the fix.
pub fn run(ccc_root: &Path, cache: &Cache, args: &Args) -> Result<()> {
    if args.check_patches {
        return check_patches(ccc_root, cache);
    }
    let artifact = if let Some(path) = &args.kernel {
        resolve(Some(path.clone()), ccc_root, cache)?
    } else {
        if args.regenerate_config {
            regenerate_config(ccc_root, cache)?;
        }
        let options = BuildOptions {
            force: args.force || args.regenerate_config,
            keep_tree: args.keep_tree,
        };
        let artifact = build(ccc_root, cache, &options)?;
        if args.verify_reproducible {
            verify_reproducible(&artifact, ccc_root, cache)?;
        }
        artifact
    };
    println!("kernel: {}", artifact.path.display());
    println!("version: {}", artifact.version);
    println!("sha256: {}", artifact.sha256);
    if let Some(config) = &artifact.config {
        println!("config: {}", config.display());
    }
    Ok(())
}

/// The kernel-source pin (kernel-config/source.json).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Pin {
    /// Why the file exists (not used).
    #[expect(
        dead_code,
        reason = "deserialized so that deny_unknown_fields accepts the member; never read"
    )]
    comment: String,
    /// Debian package name, e.g. `linux-source-6.12`.
    pub package: String,
    /// Exact Debian version, e.g. `6.12.117-1~deb12u1`.
    pub version: String,
    /// SHA-256 of the `.deb` file.
    pub deb_sha256: String,
    /// Path of the source tarball inside the package.
    pub tarball: String,
    /// `KBUILD_BUILD_TIMESTAMP`: the date baked into `uname -v` and the built-in initramfs.
    pub kbuild_build_timestamp: String,
    /// The resolved config's file name in kernel-config/.
    pub config: String,
    /// The fragment's file name in kernel-config/.
    pub fragment: String,
    /// Patches applied to the extracted source, in this order, each pinned by SHA-256.
    #[serde(default)]
    pub patches: Vec<PatchPin>,
}

/// The directory of the kernel patches inside [`CONFIG_DIR`].
pub const PATCH_DIR: &str = "patches";

/// One patch of the kernel source (`kernel-config/patches/<file>`), pinned by SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PatchPin {
    /// File name inside `kernel-config/patches/`.
    pub file: String,
    /// Lowercase hex SHA-256 of the patch file.
    pub sha256: String,
    /// Strings that must no longer occur in the patched files (`path: [strings]`, paths relative
    /// to the tree): the build checks the change really happened, not just that `patch` exited 0.
    #[serde(default)]
    pub absent_after: BTreeMap<String, Vec<String>>,
}

impl Pin {
    /// Reads and checks `kernel-config/source.json` of CCC's sources at `ccc_root`.
    ///
    /// # Errors
    /// The file is missing, malformed, or a field has an impossible value.
    pub fn load(ccc_root: &Path) -> Result<Self> {
        let path = ccc_root.join(CONFIG_DIR).join(PIN_FILE);
        let text = std::fs::read_to_string(&path).io("read", &path)?;
        let pin: Self = serde_json::from_str(&text)
            .map_err(|e| Error::input(format!("{} is malformed: {e}", path.display())))?;
        pin.check()
            .map_err(|problem| Error::input(format!("{} is invalid: {problem}", path.display())))?;
        Ok(pin)
    }

    fn check(&self) -> Result<(), String> {
        let plain = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".+-~:_".contains(&b))
        };
        ensure!(
            plain(&self.package),
            format!("package `{}` is not a Debian package name", self.package)
        );
        ensure!(
            plain(&self.version),
            format!("version `{}` is not a Debian version", self.version)
        );
        ensure!(
            is_sha256_hex(&self.deb_sha256),
            format!(
                "deb_sha256 must be 64 lowercase hex digits, found `{}`",
                self.deb_sha256
            )
        );
        for (name, file) in [("config", &self.config), ("fragment", &self.fragment)] {
            ensure!(
                plain(file) && !file.contains(".."),
                format!("{name} must be a file name inside {CONFIG_DIR}/, found `{file}`")
            );
        }
        ensure!(
            self.tarball.starts_with("usr/src/") && !self.tarball.contains(".."),
            format!(
                "tarball must be a path under usr/src/ in the package, found `{}`",
                self.tarball
            )
        );
        ensure!(
            !self.kbuild_build_timestamp.is_empty(),
            "kbuild_build_timestamp must not be empty".to_owned()
        );
        for patch in &self.patches {
            ensure!(
                plain(&patch.file) && !patch.file.contains("..") && patch.file.ends_with(".patch"),
                format!(
                    "patch `{}` must be a `.patch` file name inside {CONFIG_DIR}/{PATCH_DIR}/",
                    patch.file
                )
            );
            ensure!(
                is_sha256_hex(&patch.sha256),
                format!(
                    "patch {}: sha256 must be 64 lowercase hex digits, found `{}`",
                    patch.file, patch.sha256
                )
            );
            for path in patch.absent_after.keys() {
                ensure!(
                    !path.is_empty()
                        && !path.starts_with('/')
                        && path.split('/').all(|part| plain(part) && part != ".."),
                    format!(
                        "patch {}: absent_after path `{path}` must be relative to the tree",
                        patch.file
                    )
                );
            }
        }
        Ok(())
    }

    /// Reads every patch from `ccc_root`'s kernel-config/patches/ and checks it against its
    /// pinned SHA-256; returns (pin, bytes) in application order.
    ///
    /// # Errors
    /// A patch is missing or its bytes differ from the pin.
    pub fn load_patches(&self, ccc_root: &Path) -> Result<Vec<(PatchPin, Vec<u8>)>> {
        self.patches
            .iter()
            .map(|patch| {
                let path = ccc_root.join(CONFIG_DIR).join(PATCH_DIR).join(&patch.file);
                let bytes = std::fs::read(&path).io("read the kernel patch", &path)?;
                let found = hash::sha256(&bytes);
                ensure!(
                    found == patch.sha256,
                    Error::input(format!(
                        "{} has SHA-256 {found}, but {CONFIG_DIR}/{PIN_FILE} pins {}: a changed \
                         patch changes the kernel (PCR0/PCR1). If the change is intended, put the \
                         new SHA-256 into {PIN_FILE} in the same commit",
                        path.display(),
                        patch.sha256
                    ))
                );
                Ok((patch.clone(), bytes))
            })
            .collect()
    }
}

/// 64 lowercase hex digits.
fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A kernel image ready to go into an EIF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelArtifact {
    /// The bzImage.
    pub path: PathBuf,
    /// Lowercase hex SHA-256 of the bzImage.
    pub sha256: String,
    /// The version string from the bzImage's boot header, e.g.
    /// `6.12.117 (ccc@ccc) #1 SMP 2026-11-14 12:56:00 UTC`.
    pub version: String,
    /// Its resolved configuration, when known (EIF metadata reads OS and kernel version from
    /// the config's header, as nitro-cli does with `bzImage.config`).
    pub config: Option<PathBuf>,
}

/// The kernel to put into an image: `Some(path)` is a team's own bzImage (checked, with a
/// `<path>.config` next to it when present), `None` is CCC's kernel from the sources at
/// `ccc_root`, built or taken from the cache.
///
/// # Errors
/// The given file is not an x86 bzImage, or the build failed.
pub fn resolve(kernel: Option<PathBuf>, ccc_root: &Path, cache: &Cache) -> Result<KernelArtifact> {
    match kernel {
        Some(path) => {
            let mut config = path.clone().into_os_string();
            config.push(".config");
            let config = PathBuf::from(config);
            inspect(&path, config.is_file().then_some(config))
        }
        None => build(ccc_root, cache, &BuildOptions::default()),
    }
}

/// Reads a bzImage's version string and hash.
///
/// # Errors
/// The file cannot be read or is not an x86 bzImage.
pub fn inspect(path: &Path, config: Option<PathBuf>) -> Result<KernelArtifact> {
    let bytes = std::fs::read(path).io("read the kernel", path)?;
    let version = bzimage_version(&bytes).map_err(|problem| {
        Error::invalid(
            format!("the kernel {}", path.display()),
            format!("not a usable x86 bzImage: {problem}"),
        )
    })?;
    Ok(KernelArtifact {
        path: path.to_path_buf(),
        sha256: hash::sha256(&bytes),
        version,
        config,
    })
}

/// The kernel version string of an x86 bzImage (Linux `Documentation/arch/x86/boot.rst`: the
/// setup header's magic `HdrS` at 0x202, and at 0x20E a 16-bit offset, from 0x200, of the
/// NUL-terminated version string).
fn bzimage_version(image: &[u8]) -> Result<String, String> {
    ensure!(
        image.get(0x202..0x206) == Some(b"HdrS"),
        "no `HdrS` boot-protocol magic at offset 0x202".to_owned()
    );
    let offset = image
        .get(0x20E..0x210)
        .and_then(|b| Some(u16::from_le_bytes([*b.first()?, *b.get(1)?])))
        .ok_or("file too short for a boot header")?;
    let start = 0x200 + usize::from(offset);
    let text = image
        .get(start..)
        .and_then(|rest| rest.split(|&b| b == 0).next())
        .filter(|s| !s.is_empty())
        .ok_or("the header's kernel_version offset points outside the file")?;
    Ok(String::from_utf8_lossy(text).into_owned())
}

/// How [`build`] treats caches and trees.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// Rebuild even when the cache holds the result.
    pub force: bool,
    /// Keep the build tree.
    pub keep_tree: bool,
}

/// The inputs that decide the kernel's bytes.
struct Inputs {
    pin: Pin,
    patches: Vec<(PatchPin, Vec<u8>)>,
    config: Vec<u8>,
    config_path: PathBuf,
    key: String,
    dir: PathBuf,
}

impl Inputs {
    fn load(ccc_root: &Path, cache: &Cache) -> Result<Self> {
        let pin = Pin::load(ccc_root)?;
        let config_path = ccc_root.join(CONFIG_DIR).join(&pin.config);
        let config = std::fs::read(&config_path).io("read", &config_path)?;
        let patches = pin.load_patches(ccc_root)?;
        let key = cache_key(&pin, &config);
        Ok(Self {
            pin,
            patches,
            config,
            config_path,
            key,
            dir: cache.dir(CACHE_KIND),
        })
    }

    /// Where the cached bzImage and config of these inputs live.
    fn out_dir(&self) -> PathBuf {
        self.dir.join(&self.key)
    }
}

/// The environment every `make` of the kernel runs with (nothing else from the host's).
fn build_env(pin: &Pin, tree: &Path) -> Vec<(String, String)> {
    [
        ("PATH", BUILD_PATH.to_owned()),
        ("HOME", tree.display().to_string()),
        ("LC_ALL", "C".to_owned()),
        ("TZ", "UTC".to_owned()),
        ("ARCH", "x86_64".to_owned()),
        ("KBUILD_BUILD_TIMESTAMP", pin.kbuild_build_timestamp.clone()),
        ("KBUILD_BUILD_USER", BUILD_USER.to_owned()),
        ("KBUILD_BUILD_HOST", BUILD_HOST.to_owned()),
        ("KBUILD_BUILD_VERSION", BUILD_VERSION.to_owned()),
        // Source paths the compiler records (__FILE__, debug info) are made relative.
        ("KCFLAGS", format!("-ffile-prefix-map={}/=", tree.display())),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// A hash of everything that decides the bzImage's bytes: the recipe, the pinned source, the
/// patches (by their pinned SHA-256, which [`Pin::load_patches`] checks), the build environment
/// (with the tree's path left out, which the build must not depend on) and the resolved config
/// (which records the compiler and binutils versions).
fn cache_key(pin: &Pin, config: &[u8]) -> String {
    let env: Vec<String> = build_env(pin, Path::new("<tree>"))
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let patches: String = pin
        .patches
        .iter()
        .map(|p| format!("patch={} {}\n", p.file, p.sha256))
        .collect();
    let text = format!(
        "recipe={RECIPE}\npackage={}\nversion={}\ndeb_sha256={}\ntarball={}\n{}\n{patches}config_sha256={}\n",
        pin.package,
        pin.version,
        pin.deb_sha256,
        pin.tarball,
        env.join("\n"),
        hash::sha256(config),
    );
    let digest = hash::sha256(text.as_bytes());
    digest.get(..16).unwrap_or(&digest).to_owned()
}

/// True when CCC's kernel for the sources at `ccc_root` is already in the cache (so [`build`]
/// will not compile).
///
/// # Errors
/// The pin or the config cannot be read.
pub fn is_cached(ccc_root: &Path, cache: &Cache) -> Result<bool> {
    let inputs = Inputs::load(ccc_root, cache)?;
    let out_dir = inputs.out_dir();
    Ok(out_dir.join("bzImage").is_file() && out_dir.join("config").is_file())
}

/// Builds CCC's kernel from the sources at `ccc_root`, or returns the cached one. Holds the
/// cache entry's lock while it looks and builds, so concurrent builds of the same kernel
/// wait for one another instead of compiling twice.
///
/// # Errors
/// A missing prerequisite (named with its fix), a source that cannot be fetched or fails its
/// pin, a config that does not hold on this host, or a failed build.
pub fn build(ccc_root: &Path, cache: &Cache, options: &BuildOptions) -> Result<KernelArtifact> {
    let inputs = Inputs::load(ccc_root, cache)?;
    let _lock = cache.lock(CACHE_KIND, &inputs.key)?;
    let out_dir = inputs.out_dir();
    let image = out_dir.join("bzImage");
    let config_copy = out_dir.join("config");
    if image.is_file() && config_copy.is_file() && !options.force {
        eprintln!("kernel: cached ({})", out_dir.display());
        return inspect(&image, Some(config_copy));
    }
    let started = Instant::now();
    eprintln!(
        "kernel: building {} {} with {} (cache key {})",
        inputs.pin.package,
        inputs.pin.version,
        inputs.config_path.display(),
        inputs.key
    );
    // Trees left by failed, interrupted or --keep-tree builds go first (each is gigabytes):
    // this key's, and those of other keys nobody is building right now.
    let builds = inputs.dir.join("build");
    remove_idle_trees(cache, &builds, &inputs.key)?;
    let parent = builds.join(&inputs.key);
    let built = build_tree(&inputs, cache, &parent)?;
    std::fs::create_dir_all(&out_dir).io("create", &out_dir)?;
    // The config first, the image last (by rename): an interrupted run never leaves a partial
    // image in the cache, and the image's presence means the entry is complete.
    cache::install_bytes(&inputs.config, &config_copy)?;
    cache::install_file(&built, &image)?;
    if !options.keep_tree {
        remove_tree(&parent)?;
    }
    let artifact = inspect(&image, Some(config_copy))?;
    eprintln!(
        "kernel: built in {}: {} ({} bytes, sha256 {})",
        elapsed(started.elapsed()),
        image.display(),
        std::fs::metadata(&image).io("stat", &image)?.len(),
        artifact.sha256
    );
    Ok(artifact)
}

/// Removes the build trees under `builds`: `own` (whose lock the caller holds) and every other
/// key's whose lock is free.
fn remove_idle_trees(cache: &Cache, builds: &Path, own: &str) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(builds) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == own {
            remove_tree(&entry.path())?;
        } else if let Some(_idle) = cache.try_lock(CACHE_KIND, &name)? {
            remove_tree(&entry.path())?;
        }
    }
    Ok(())
}

/// Builds the kernel a second time in another directory and requires identical bytes.
///
/// # Errors
/// The rebuild fails or its bytes differ (both trees are then kept).
pub fn verify_reproducible(first: &KernelArtifact, ccc_root: &Path, cache: &Cache) -> Result<()> {
    let inputs = Inputs::load(ccc_root, cache)?;
    let _lock = cache.lock(CACHE_KIND, &format!("verify-{}", inputs.key))?;
    let started = Instant::now();
    let parent = inputs.dir.join("verify").join(&inputs.key);
    eprintln!("kernel: rebuilding in {} to compare", parent.display());
    let second = build_tree(&inputs, cache, &parent)?;
    let second_sha = hash::sha256_file(&second)?;
    let same = second_sha == first.sha256;
    eprintln!(
        "kernel: second build took {}; sha256 {second_sha} ({})",
        elapsed(started.elapsed()),
        if same { "identical" } else { "DIFFERENT" }
    );
    if !same {
        return Err(Error::NotReproducible {
            differences: vec![format!(
                "the kernel: {} has sha256 {}, the rebuild {} has {second_sha}",
                first.path.display(),
                first.sha256,
                second.display()
            )],
        });
    }
    remove_tree(&parent)
}

fn remove_tree(dir: &Path) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).io("remove", dir)?;
    }
    Ok(())
}

/// Fetches, extracts, configures and compiles in `parent`; returns the built bzImage's path.
fn build_tree(inputs: &Inputs, cache: &Cache, parent: &Path) -> Result<PathBuf> {
    host::ensure_packages(BUILD_PACKAGES, None)?;
    let deb = fetch_source(&inputs.pin, &cache.dir(CACHE_KIND).join("source"))?;
    let tree = extract(&inputs.pin, &deb, parent)?;
    let log = parent.join("build.log");
    apply_patches(&inputs.patches, &tree, &log)?;

    let t = Instant::now();
    eprintln!("kernel: [3/4] configuring (committed config + make olddefconfig)");
    let dot_config = tree.join(".config");
    std::fs::write(&dot_config, &inputs.config).io("write", &dot_config)?;
    run_logged(
        make(&inputs.pin, &tree, &["olddefconfig"]),
        "kernel config",
        &log,
    )?;
    let resolved = std::fs::read(&dot_config).io("read", &dot_config)?;
    if resolved != inputs.config {
        return Err(Error::input(format!(
            "{} changes under `make olddefconfig` on this host:\n{}\nThe config records the \
             compiler and binutils (CONFIG_CC_VERSION_TEXT, CONFIG_GCC_VERSION, \
             CONFIG_AS_VERSION, CONFIG_LD_VERSION) and only holds with Debian 12's. Build on \
             Debian 12, or (in CCC's repository) run `cargo xtask kernel --regenerate-config` \
             and commit the result (which changes PCR0/PCR1)",
            inputs.config_path.display(),
            config_diff(&inputs.config, &resolved)
        )));
    }
    eprintln!("kernel: configured in {}", elapsed(t.elapsed()));

    let t = Instant::now();
    let jobs = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    eprintln!(
        "kernel: [4/4] compiling bzImage with {jobs} jobs (log: {})",
        log.display()
    );
    let jobs_arg = format!("-j{jobs}");
    run_logged(
        make(&inputs.pin, &tree, &[&jobs_arg, "bzImage"]),
        "kernel build",
        &log,
    )?;
    eprintln!("kernel: compiled in {}", elapsed(t.elapsed()));
    Ok(tree.join("arch/x86/boot/bzImage"))
}

/// Applies the pinned patches to `tree` in order with `patch -p1` and no fuzz (a patch that no
/// longer fits exactly fails the build instead of landing somewhere else), then checks that
/// each patch's `absent_after` strings are gone.
///
/// # Errors
/// A patch does not apply exactly, or a string it should remove is still there.
pub fn apply_patches(patches: &[(PatchPin, Vec<u8>)], tree: &Path, log: &Path) -> Result<()> {
    for (pin, bytes) in patches {
        eprintln!("kernel: applying {CONFIG_DIR}/{PATCH_DIR}/{}", pin.file);
        let file = log.with_file_name(format!("patch-{}", pin.file));
        std::fs::write(&file, bytes).io("write", &file)?;
        let mut command = Command::new("patch");
        command
            .args([
                "-p1",
                "--forward",
                "--batch",
                "--fuzz=0",
                "--no-backup-if-mismatch",
                "-i",
            ])
            .arg(&file)
            .current_dir(tree);
        run_logged(command, &format!("kernel patch {}", pin.file), log)?;
        std::fs::remove_file(&file).io("remove", &file)?;
        let still = patch_leftovers(pin, tree)?;
        ensure!(
            still.is_empty(),
            Error::input(format!(
                "after {} the source still holds what it removes: {}. The patch no longer does \
                 what its pin says; fix the patch or its absent_after in {CONFIG_DIR}/{PIN_FILE}",
                pin.file,
                still.join("; ")
            ))
        );
    }
    Ok(())
}

/// The tree-relative paths a unified diff changes (its `+++ b/PATH` lines).
pub fn patched_paths(patch: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(patch)
        .lines()
        .filter_map(|line| line.strip_prefix("+++ b/"))
        .map(|rest| {
            rest.split('\t')
                .next()
                .unwrap_or(rest)
                .trim_end()
                .to_owned()
        })
        .collect()
}

/// `--check-patches`: the files the pinned patches touch, taken from the pinned source, take
/// every patch exactly and lose what its `absent_after` names. Seconds, not a kernel build.
///
/// # Errors
/// The source cannot be fetched, a patch does not apply, or a removed string remains.
pub fn check_patches(ccc_root: &Path, cache: &Cache) -> Result<()> {
    let pin = Pin::load(ccc_root)?;
    let patches = pin.load_patches(ccc_root)?;
    let kernel_dir = cache.dir(CACHE_KIND);
    let _lock = cache.lock(CACHE_KIND, "check-patches")?;
    let deb = fetch_source(&pin, &kernel_dir.join("source"))?;
    let parent = kernel_dir.join("check-patches");
    remove_tree(&parent)?;
    let unpacked = parent.join("deb");
    std::fs::create_dir_all(&unpacked).io("create", &unpacked)?;
    run_quiet(
        Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked),
        "dpkg-deb -x",
    )?;
    let tarball = unpacked.join(&pin.tarball);
    let tree_parent = parent.join("tree");
    std::fs::create_dir_all(&tree_parent).io("create", &tree_parent)?;
    let mut paths: Vec<String> = patches
        .iter()
        .flat_map(|(_, bytes)| patched_paths(bytes))
        .collect();
    paths.sort();
    paths.dedup();
    let mut tar = Command::new("tar");
    tar.arg("-xf")
        .arg(&tarball)
        .arg("-C")
        .arg(&tree_parent)
        .arg("--wildcards");
    for path in &paths {
        tar.arg(format!("*/{path}"));
    }
    run_quiet(&mut tar, "tar -x (the files the kernel patches touch)")?;
    let tree = std::fs::read_dir(&tree_parent)
        .io("list", &tree_parent)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.is_dir())
        .ok_or_else(|| Error::input(format!("no kernel tree in {}", tarball.display())))?;
    apply_patches(&patches, &tree, &parent.join("patch.log"))?;
    for (patch, _) in &patches {
        eprintln!(
            "kernel: {} applies exactly to {}={} and removes {} string(s) from {}",
            patch.file,
            pin.package,
            pin.version,
            patch.absent_after.values().map(Vec::len).sum::<usize>(),
            patch
                .absent_after
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    remove_tree(&parent)
}

/// The `absent_after` strings of `pin` still found in `tree`, as `path: string` lines.
///
/// # Errors
/// A named file cannot be read.
pub fn patch_leftovers(pin: &PatchPin, tree: &Path) -> Result<Vec<String>> {
    let mut found = Vec::new();
    for (path, strings) in &pin.absent_after {
        let file = tree.join(path);
        let text = std::fs::read_to_string(&file).io("read the patched file", &file)?;
        found.extend(
            strings
                .iter()
                .filter(|s| text.contains(s.as_str()))
                .map(|s| format!("{path}: `{s}`")),
        );
    }
    Ok(found)
}

/// `nice make -C tree ARGS` with [`build_env`] and nothing else from the host's environment.
fn make(pin: &Pin, tree: &Path, args: &[&str]) -> Command {
    let mut command = Command::new("nice");
    command
        .args(["-n", "10", "make", "-C"])
        .arg(tree)
        .args(args)
        .env_clear()
        .envs(build_env(pin, tree))
        .current_dir(tree);
    command
}

/// Lines that differ between two configs, `-` for the committed one and `+` for the new one.
fn config_diff(old: &[u8], new: &[u8]) -> String {
    let old = String::from_utf8_lossy(old);
    let new = String::from_utf8_lossy(new);
    let old_lines: std::collections::BTreeSet<&str> = old.lines().collect();
    let new_lines: std::collections::BTreeSet<&str> = new.lines().collect();
    old_lines
        .difference(&new_lines)
        .map(|l| format!("  - {l}"))
        .chain(new_lines.difference(&old_lines).map(|l| format!("  + {l}")))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Downloads the pinned `.deb` into `dir` (once) and checks its SHA-256. The download goes to
/// a directory of this process's own and appears by rename, so concurrent fetches of the same
/// package cannot mix.
fn fetch_source(pin: &Pin, dir: &Path) -> Result<PathBuf> {
    let t = Instant::now();
    eprintln!("kernel: [1/4] source {}={}", pin.package, pin.version);
    let deb = dir.join(format!(
        "{}_{}.deb",
        pin.package,
        pin.version.replace(':', "%3a")
    ));
    if deb.is_file() && hash::sha256_file(&deb)? == pin.deb_sha256 {
        eprintln!("kernel: source cached ({})", deb.display());
        return Ok(deb);
    }
    let download = dir.join(format!("download-{}", std::process::id()));
    remove_tree(&download)?;
    std::fs::create_dir_all(&download).io("create", &download)?;
    if !apt_download(pin, &download) {
        if host::is_root() {
            eprintln!("kernel: not in apt's lists; running apt-get update");
            run_quiet(
                Command::new("apt-get").args(["update", "-qq"]),
                "apt-get update",
            )?;
        }
        if !apt_download(pin, &download) {
            return Err(Error::input(unavailable_message(pin)));
        }
    }
    let fetched = std::fs::read_dir(&download)
        .io("list", &download)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .ok_or_else(|| Error::program("apt-get download", "succeeded but left no .deb"))?;
    let sha = hash::sha256_file(&fetched)?;
    if sha != pin.deb_sha256 {
        return Err(Error::input(format!(
            "{} has SHA-256 {sha}, but kernel-config/{PIN_FILE} pins {}: refusing to build from \
             unpinned bytes. If Debian really republished {}={} (it should not), check the new \
             package and update deb_sha256 in its own commit (PCR0/PCR1 change)",
            fetched.display(),
            pin.deb_sha256,
            pin.package,
            pin.version
        )));
    }
    std::fs::rename(&fetched, &deb).io(&format!("rename {} to", fetched.display()), &deb)?;
    remove_tree(&download)?;
    eprintln!(
        "kernel: downloaded and verified in {}",
        elapsed(t.elapsed())
    );
    Ok(deb)
}

/// `apt-get download PACKAGE=VERSION` in `dir`; false when apt does not offer that version
/// (or apt cannot run).
fn apt_download(pin: &Pin, dir: &Path) -> bool {
    let spec = format!("{}={}", pin.package, pin.version);
    Command::new("apt-get")
        .args(["download", "-q", &spec])
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .output()
        .is_ok_and(|out| out.status.success())
}

/// The error for a pinned version apt no longer offers: which versions it has and how to move.
fn unavailable_message(pin: &Pin) -> String {
    let package = &pin.package;
    let available = run_quiet(
        Command::new("apt-cache").args(["madison", package]),
        "apt-cache madison",
    )
    .map(|out| madison_versions(&out))
    .unwrap_or_default();
    let available = if available.is_empty() {
        "none (is bookworm-security in apt's sources?)".to_owned()
    } else {
        available.join(", ")
    };
    format!(
        "apt does not offer {package}={} (Debian drops old security updates). Available: \
         {available}. To move the pin (in CCC's repository): `apt-get download \
         {package}=<version> && sha256sum {package}_*.deb`, put the version and SHA-256 into \
         kernel-config/{PIN_FILE}, run `cargo xtask kernel --regenerate-config` if the config \
         changes, and commit. The kernel's bytes change, so PCR0 and PCR1 of every image change \
         too",
        pin.version
    )
}

/// The versions in `apt-cache madison` output (`pkg | version | source`).
fn madison_versions(out: &str) -> Vec<String> {
    let mut versions: Vec<String> = out
        .lines()
        .filter_map(|line| line.split('|').nth(1))
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .collect();
    versions.dedup();
    versions
}

/// Unpacks the source tarball from the `.deb` into `parent` (emptied first); returns the tree.
fn extract(pin: &Pin, deb: &Path, parent: &Path) -> Result<PathBuf> {
    let t = Instant::now();
    eprintln!("kernel: [2/4] extracting into {}", parent.display());
    remove_tree(parent)?;
    let unpacked = parent.join("deb");
    std::fs::create_dir_all(&unpacked).io("create", &unpacked)?;
    run_quiet(
        Command::new("dpkg-deb").arg("-x").arg(deb).arg(&unpacked),
        "dpkg-deb -x",
    )?;
    let tarball = unpacked.join(&pin.tarball);
    ensure!(
        tarball.is_file(),
        Error::input(format!(
            "{} has no {}: fix `tarball` in kernel-config/{PIN_FILE}",
            deb.display(),
            pin.tarball
        ))
    );
    run_quiet(
        Command::new("tar")
            .arg("-xf")
            .arg(&tarball)
            .arg("-C")
            .arg(parent),
        "tar -x (the kernel source)",
    )?;
    remove_tree(&unpacked)?;
    let tree = std::fs::read_dir(parent)
        .io("list", parent)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.join("Makefile").is_file() && p.join("Kconfig").is_file())
        .ok_or_else(|| Error::input(format!("no kernel tree in {}", tarball.display())))?;
    eprintln!("kernel: extracted in {}", elapsed(t.elapsed()));
    Ok(tree)
}

/// `--regenerate-config`: tinyconfig + fragment + olddefconfig, checked, written back into
/// `ccc_root`'s kernel-config/ (CCC's repository only).
fn regenerate_config(ccc_root: &Path, cache: &Cache) -> Result<()> {
    let pin = Pin::load(ccc_root)?;
    host::ensure_packages(BUILD_PACKAGES, None)?;
    let kernel_dir = cache.dir(CACHE_KIND);
    let _lock = cache.lock(CACHE_KIND, "regenerate")?;
    let deb = fetch_source(&pin, &kernel_dir.join("source"))?;
    let parent = kernel_dir.join("regenerate");
    let tree = extract(&pin, &deb, &parent)?;
    let fragment_path = ccc_root.join(CONFIG_DIR).join(&pin.fragment);
    let log = parent.join("config.log");
    apply_patches(&pin.load_patches(ccc_root)?, &tree, &log)?;
    eprintln!(
        "kernel: tinyconfig + {} + olddefconfig",
        fragment_path.display()
    );
    run_logged(make(&pin, &tree, &["tinyconfig"]), "kernel config", &log)?;
    let mut merge = Command::new(tree.join("scripts/kconfig/merge_config.sh"));
    merge
        .args(["-m", ".config"])
        .arg(&fragment_path)
        .env_clear()
        .envs(build_env(&pin, &tree))
        .current_dir(&tree);
    run_logged(merge, "kernel config", &log)?;
    run_logged(make(&pin, &tree, &["olddefconfig"]), "kernel config", &log)?;
    let dot_config = tree.join(".config");
    let resolved = std::fs::read_to_string(&dot_config).io("read", &dot_config)?;
    let fragment = std::fs::read_to_string(&fragment_path).io("read", &fragment_path)?;
    let mismatches = fragment_mismatches(&fragment, &resolved);
    if !mismatches.is_empty() {
        return Err(Error::input(format!(
            "Kconfig did not keep these fragment values (a dependency is missing or the option \
             does not exist in this kernel; fix {}):\n{}",
            fragment_path.display(),
            mismatches.join("\n")
        )));
    }
    let out = ccc_root.join(CONFIG_DIR).join(&pin.config);
    std::fs::write(&out, resolved).io("write", &out)?;
    remove_tree(&parent)?;
    eprintln!(
        "kernel: wrote {}; commit it (the kernel's bytes, PCR0 and PCR1 change)",
        out.display()
    );
    Ok(())
}

/// The options a Kconfig file sets: `CONFIG_X=v` lines, and `# CONFIG_X is not set` as `n`.
pub fn config_values(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| {
            if let Some(name) = line
                .strip_prefix("# ")
                .and_then(|l| l.strip_suffix(" is not set"))
                .filter(|n| n.starts_with("CONFIG_"))
            {
                return Some((name.to_owned(), "n".to_owned()));
            }
            line.split_once('=')
                .filter(|(name, _)| name.starts_with("CONFIG_"))
                .map(|(name, value)| (name.to_owned(), value.to_owned()))
        })
        .collect()
}

/// Fragment options whose value the resolved config does not carry, as
/// `CONFIG_X: fragment v, resolved w` lines.
pub fn fragment_mismatches(fragment: &str, resolved: &str) -> Vec<String> {
    let resolved = config_values(resolved);
    config_values(fragment)
        .into_iter()
        .filter_map(|(name, wanted)| {
            let found = resolved.get(&name).map_or("(absent)", String::as_str);
            (found != wanted).then(|| format!("{name}: fragment {wanted}, resolved {found}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn committed(name: &str) -> String {
        let path = crate::tests::ccc_root().join(CONFIG_DIR).join(name);
        std::fs::read_to_string(path).unwrap()
    }

    fn pin() -> Pin {
        Pin::load(&crate::tests::ccc_root()).unwrap()
    }

    /// Tidy: the resolved config holds every value the fragment asks for, so the two cannot
    /// drift apart unnoticed.
    #[test]
    fn resolved_config_holds_every_fragment_value() {
        let pin = pin();
        let fragment = committed(&pin.fragment);
        let resolved = committed(&pin.config);
        assert!(
            config_values(&fragment).len() > 50,
            "fragment parsed too few options"
        );
        let mismatches = fragment_mismatches(&fragment, &resolved);
        assert!(
            mismatches.is_empty(),
            "run `cargo xtask kernel --regenerate-config`:\n{}",
            mismatches.join("\n")
        );
    }

    /// Tidy: the options an enclave cannot boot without are in the fragment itself (not just
    /// resolved by chance).
    #[test]
    fn fragment_has_the_enclave_essentials() {
        let values = config_values(&committed(&pin().fragment));
        for (name, value) in [
            ("CONFIG_VIRTIO_MMIO", "y"),
            ("CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES", "y"),
            ("CONFIG_VIRTIO_VSOCKETS", "y"),
            ("CONFIG_NSM", "y"),
            ("CONFIG_SERIAL_8250_CONSOLE", "y"),
            ("CONFIG_BLK_DEV_INITRD", "y"),
            ("CONFIG_DEVTMPFS", "y"),
            ("CONFIG_INET", "y"),
            ("CONFIG_MODULES", "n"),
            ("CONFIG_PCI", "n"),
            ("CONFIG_ACPI", "n"),
            ("CONFIG_LOCALVERSION_AUTO", "n"),
        ] {
            assert_eq!(values.get(name).map(String::as_str), Some(value), "{name}");
        }
    }

    /// Tidy: every option in the fragment says why it is there (a comment line right above).
    #[test]
    fn every_fragment_option_has_a_reason() {
        let fragment = committed(&pin().fragment);
        let mut previous_is_comment = false;
        for line in fragment.lines() {
            let is_option = !config_values(line).is_empty();
            if is_option {
                assert!(previous_is_comment, "no comment above `{line}`");
            }
            previous_is_comment = line.starts_with('#') && !is_option;
        }
    }

    #[test]
    fn pin_is_valid_and_checked() {
        let pin = pin();
        assert_eq!(pin.package, "linux-source-6.12");
        let mut bad = pin.clone();
        bad.deb_sha256 = "E849".into();
        assert!(bad.check().is_err());
        let mut bad = pin.clone();
        bad.config = "../../etc/passwd".into();
        assert!(bad.check().is_err());
        let mut bad = pin;
        bad.version = "1.0 ; rm -rf /".into();
        assert!(bad.check().is_err());
    }

    /// The committed patches are pinned: each file exists with its pinned SHA-256, and the vsock
    /// patch (Nitro's both-ends-are-guests deadlock) is among them, checked for what it removes.
    #[test]
    fn committed_patches_match_their_pins() {
        let pin = pin();
        let patches = pin.load_patches(&crate::tests::ccc_root()).unwrap();
        let vsock = patches
            .iter()
            .find(|(p, _)| p.file.contains("vsock"))
            .expect("the vsock pushback patch is pinned");
        assert_eq!(
            patched_paths(&vsock.1),
            ["net/vmw_vsock/virtio_transport.c"]
        );
        let removed = &vsock.0.absent_after["net/vmw_vsock/virtio_transport.c"];
        assert!(removed.iter().any(|s| s == "queued_replies"));
        let text = String::from_utf8_lossy(&vsock.1);
        assert!(
            text.contains("License: GPL-2.0"),
            "the patch header names its license"
        );
        assert!(text.contains("https://github.com/aws/aws-nitro-enclaves-sdk-bootstrap"));
        // Every line it removes that mentions the counter, and none it adds.
        assert!(
            text.lines()
                .any(|l| l.starts_with('-') && l.contains("queued_replies"))
        );
        assert!(
            !text
                .lines()
                .any(|l| l.starts_with('+') && l.contains("queued_replies"))
        );
    }

    #[test]
    fn a_patch_whose_bytes_moved_is_refused() {
        let dir = Scratch::new("moved-bytes");
        let patches = dir.path().join(CONFIG_DIR).join(PATCH_DIR);
        std::fs::create_dir_all(&patches).unwrap();
        std::fs::write(patches.join("0001-x.patch"), b"changed").unwrap();
        let mut pin = pin();
        pin.patches = vec![PatchPin {
            file: "0001-x.patch".into(),
            sha256: hash::sha256(b"original"),
            absent_after: BTreeMap::new(),
        }];
        let err = pin.load_patches(dir.path()).unwrap_err().to_string();
        assert!(err.contains("pins"), "{err}");
        pin.patches[0].sha256 = hash::sha256(b"changed");
        assert_eq!(pin.load_patches(dir.path()).unwrap().len(), 1);
        pin.patches[0].file = "../x.patch".into();
        assert!(pin.check().is_err());
        pin.patches[0].file = "0001-x.patch".into();
        pin.patches[0]
            .absent_after
            .insert("/etc/passwd".into(), vec!["root".into()]);
        assert!(pin.check().is_err());
    }

    /// A scratch directory removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("ccc-kernel-test-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }

        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn tiny_patch(from: &str, to: &str) -> Vec<u8> {
        format!(
            "Subject: test\n\n--- a/dir/file.c\n+++ b/dir/file.c\n@@ -1,3 +1,3 @@\n one\n-{from}\n+{to}\n three\n"
        )
        .into_bytes()
    }

    fn tiny_tree(name: &str, middle: &str) -> Scratch {
        let dir = Scratch::new(name);
        std::fs::create_dir_all(dir.path().join("tree/dir")).unwrap();
        std::fs::write(
            dir.path().join("tree/dir/file.c"),
            format!("one\n{middle}\nthree\n"),
        )
        .unwrap();
        dir
    }

    fn tiny_pin(patch: &[u8], absent: &str) -> (PatchPin, Vec<u8>) {
        (
            PatchPin {
                file: "0001-t.patch".into(),
                sha256: hash::sha256(patch),
                absent_after: [("dir/file.c".to_owned(), vec![absent.to_owned()])].into(),
            },
            patch.to_vec(),
        )
    }

    /// The mechanism the kernel build uses: a patch applies exactly and its removed string is
    /// gone; a source that moved (the context no longer matches) fails instead of fuzzing; a
    /// patch that leaves the removed string behind fails its `absent_after` check.
    #[test]
    fn patches_apply_exactly_and_are_checked() {
        let patch = tiny_patch("atomic_t queued_replies;", "int kept;");
        let dir = tiny_tree("applies", "atomic_t queued_replies;");
        let tree = dir.path().join("tree");
        let log = dir.path().join("build.log");
        apply_patches(&[tiny_pin(&patch, "queued_replies")], &tree, &log).unwrap();
        let text = std::fs::read_to_string(tree.join("dir/file.c")).unwrap();
        assert_eq!(text, "one\nint kept;\nthree\n");
        assert_eq!(patched_paths(&patch), ["dir/file.c"]);

        let moved = tiny_tree("moved", "atomic_t queued_replies; /* moved */");
        let err = apply_patches(
            &[tiny_pin(&patch, "queued_replies")],
            &moved.path().join("tree"),
            &moved.path().join("build.log"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("0001-t.patch"), "{err}");

        let incomplete = tiny_patch("atomic_t queued_replies;", "int queued_replies;");
        let left = tiny_tree("left", "atomic_t queued_replies;");
        let err = apply_patches(
            &[tiny_pin(&incomplete, "queued_replies")],
            &left.path().join("tree"),
            &left.path().join("build.log"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("still holds") && err.contains("queued_replies"),
            "{err}"
        );
    }

    #[test]
    fn cache_key_follows_the_patches() {
        let pin = pin();
        let key = cache_key(&pin, b"CONFIG_A=y\n");
        let mut other = pin;
        other.patches[0].sha256 = hash::sha256(b"another patch");
        assert_ne!(key, cache_key(&other, b"CONFIG_A=y\n"));
        other.patches.clear();
        assert_ne!(key, cache_key(&other, b"CONFIG_A=y\n"));
    }

    #[test]
    fn config_lines_parse() {
        let values = config_values(
            "# comment\nCONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=\"x y\"\nCONFIG_N=256\n\
             NOT_CONFIG=1\n# CONFIG_D is set\n",
        );
        let expected: BTreeMap<String, String> = [
            ("CONFIG_A", "y"),
            ("CONFIG_B", "n"),
            ("CONFIG_C", "\"x y\""),
            ("CONFIG_N", "256"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(values, expected);
        assert_eq!(
            fragment_mismatches(
                "CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_Z=y\n",
                "CONFIG_A=m\n# CONFIG_B is not set\n"
            ),
            [
                "CONFIG_A: fragment y, resolved m",
                "CONFIG_Z: fragment y, resolved (absent)"
            ]
        );
    }

    #[test]
    fn cache_key_follows_the_inputs() {
        let pin = pin();
        let key = cache_key(&pin, b"CONFIG_A=y\n");
        assert_eq!(key.len(), 16);
        assert_eq!(key, cache_key(&pin, b"CONFIG_A=y\n"));
        assert_ne!(key, cache_key(&pin, b"CONFIG_A=n\n"));
        let mut other = pin;
        other.kbuild_build_timestamp = "2000-01-01 00:00:00 UTC".into();
        assert_ne!(key, cache_key(&other, b"CONFIG_A=y\n"));
    }

    #[test]
    fn bzimage_header_version() {
        let mut image = vec![0u8; 0x400];
        image[0x202..0x206].copy_from_slice(b"HdrS");
        image[0x20E..0x210].copy_from_slice(&0x100u16.to_le_bytes());
        let version = b"6.12.117 (ccc@ccc) #1 SMP 2026-11-14 12:56:00 UTC\0";
        image[0x300..0x300 + version.len()].copy_from_slice(version);
        assert_eq!(
            bzimage_version(&image).unwrap(),
            "6.12.117 (ccc@ccc) #1 SMP 2026-11-14 12:56:00 UTC"
        );
        image[0x202] = b'X';
        assert!(bzimage_version(&image).is_err());
        assert!(bzimage_version(b"short").is_err());
    }

    #[test]
    fn apt_madison_output() {
        let out = " linux-source-6.12 | 6.12.117-1~deb12u1 | http://deb.debian.org/debian-security \
                   bookworm-security/main amd64 Packages\n linux-source-6.12 | 6.12.115-2~deb12u1 | \
                   http://deb.debian.org/debian-security bookworm-security/main amd64 Packages\n";
        assert_eq!(
            madison_versions(out),
            ["6.12.117-1~deb12u1", "6.12.115-2~deb12u1"]
        );
    }
}
