//! The `release` and `verify-release` commands: a project's reproducible enclave image and its
//! published measurements.
//!
//! `release` builds the image twice — once from the checkout, once from a fresh copy of the
//! tracked files in another directory, with another umask, time zone, locale, temporary
//! directory and target directory — and refuses to publish unless `ccc-init`, the application,
//! both ramdisks and the EIF are byte-identical. Then it writes `release/<V>/` (see
//! [`publish`] for the formats) and records the PCRs in `release/pcr-expectations.json`.
//! `verify-release V` rebuilds from the current checkout and compares PCR by PCR with what
//! `release/<V>/` publishes.
//!
//! [`build_image`] is the programmatic entry point (one pass, same bytes as the release of this
//! checkout) for other tasks that need an image, e.g. emulation and its tampered variants.

pub mod checks;
mod compile;
mod host_tools;
pub mod publish;
mod reproduce;
pub mod resources;
pub mod sign;

use ccc_eif::{Eif, Measurements};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::error::{Error, IoContext, Result, ensure};
use crate::git::{self, GitState};
use crate::host::MUSL_TARGET;
use crate::image::{self, Image, ImageSpec};
use crate::kernel::{self, KernelArtifact};
use crate::progress::elapsed;
use crate::project::{AppSpec, AppTarget, CccOrigin, Project};
use ccc_policy::expectations::Recorded;
use ccc_policy::template::Principals;
use compile::{Binaries, Pass};
use publish::{
    CccRecord, FileDigest, KernelRecord, Manifest, MeasurementsFile, PatchRecord, PcrValues,
    ToolRecord,
};

/// The cross-release record of PCRs, relative to the project root.
pub const EXPECTATIONS_FILE: &str = "release/pcr-expectations.json";

/// Timings of the last `release` run (read by `cargo xtask bench eif`), inside the work
/// directory.
pub const TIMINGS_FILE: &str = "last-run.json";

/// Format version of `build-manifest.json` (2: the `ccc` and `tool` records).
const MANIFEST_FORMAT: u32 = 2;

/// Options of the `release` command.
#[derive(Debug, Default, clap::Args)]
pub struct Args {
    /// Release version (default: the application package's version).
    #[arg(long)]
    pub version: Option<String>,
    /// The workspace package whose binary the enclave runs (default: the project's
    /// application, `[workspace.metadata.ccc] app`). Its binary of the same name is used
    /// unless --bin or --example names another.
    #[arg(long, value_name = "CRATE")]
    pub app: Option<String>,
    /// The binary of --app to run.
    #[arg(
        long,
        value_name = "NAME",
        requires = "app",
        conflicts_with = "example"
    )]
    pub bin: Option<String>,
    /// An example of --app to run instead of a binary (e.g. `--app ccc-init --example nsm_probe`).
    #[arg(long, value_name = "NAME", requires = "app")]
    pub example: Option<String>,
    /// Use this bzImage instead of CCC's kernel (a `<PATH>.config` next to it is picked up).
    #[arg(long, value_name = "PATH")]
    pub kernel: Option<PathBuf>,
    /// AWS account id for the key-policy template (12 digits; default: the placeholder
    /// ACCOUNT). Needs --role and --admin-role.
    #[arg(long, value_name = "ID", requires_all = ["role", "admin_role"])]
    pub account: Option<String>,
    /// Name of the parent instance's IAM role, the principal that calls KMS for the enclave
    /// (default: the placeholder ROLE).
    #[arg(long, value_name = "NAME", requires = "account")]
    pub role: Option<String>,
    /// Name of the key-administrator role, the only principal allowed to change the key policy
    /// (it gets no decryption rights; default: the placeholder KEY_ADMIN_ROLE). It must not be
    /// the parent's role.
    #[arg(long, value_name = "NAME", requires = "account")]
    pub admin_role: Option<String>,
    /// Output directory (default: release/<VERSION>/). Only the default updates
    /// release/pcr-expectations.json.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Also rebuild CCC's kernel in another directory and compare (about 5 more minutes on 2
    /// cores); without it the kernel is built once (or taken from its cache) for both passes.
    #[arg(long, conflicts_with = "kernel")]
    pub full: bool,
    /// Signing (PCR8).
    #[command(flatten)]
    pub sign: sign::SignArgs,
    /// Do not boot the released EIF under QEMU to measure the least memory that attests (the
    /// release then publishes nitro-cli's 4x minimum and the recommendation without it, and
    /// says so).
    #[arg(long)]
    pub skip_memory_measurement: bool,
}

/// Options of the `verify-release` command.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The published version to check (release/<VERSION>/).
    pub version: String,
    /// The published directory (default: release/<VERSION>/).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// The bzImage, when the release was built with --kernel.
    #[arg(long, value_name = "PATH")]
    pub kernel: Option<PathBuf>,
    /// Check a signed release's certificate validity at this instant (RFC 3339) instead of
    /// now.
    #[arg(long, value_name = "TIME", value_parser = crate::describe::parse_at)]
    pub at: Option<ccc_sdk::time::UnixMillis>,
}

impl Args {
    /// The application the options select: `--app` (with `--bin`/`--example`), or
    /// `default` (the project's).
    pub fn app_spec(&self, default: &AppSpec) -> AppSpec {
        match &self.app {
            None => default.clone(),
            Some(package) => AppSpec {
                package: package.clone(),
                target: match (&self.bin, &self.example) {
                    (_, Some(example)) => AppTarget::Example(example.clone()),
                    (Some(bin), None) => AppTarget::Bin(bin.clone()),
                    (None, None) => AppTarget::Bin(package.clone()),
                },
            },
        }
    }
}

/// `<image>-<version>.eif`.
pub fn eif_file_name(image_name: &str, version: &str) -> String {
    format!("{image_name}-{version}.eif")
}

/// `pcr-measurements-<version>.json`.
pub fn measurements_file_name(version: &str) -> String {
    format!("pcr-measurements-{version}.json")
}

/// `kms-policy-template-<version>.json`.
pub fn key_policy_file_name(version: &str) -> String {
    format!("kms-policy-template-{version}.json")
}

pub fn iam_policy_file_name(version: &str) -> String {
    format!("iam-policy-template-{version}.json")
}

/// The build manifest's file name.
pub const MANIFEST_FILE: &str = "build-manifest.json";
const REPRODUCE_FILE: &str = "REPRODUCE.md";
/// The checksum file's name.
pub const SUMS_FILE: &str = "SHA256SUMS";

/// The two passes of a release of `project`, under `work`.
fn passes(project: &Project, work: &Path) -> (Pass, Pass) {
    let first = Pass {
        name: "first",
        source: project.root.clone(),
        ccc: project.ccc.root.clone(),
        dir: work.join("first"),
        umask: "022",
        tz: "UTC0",
        locale: "C",
    };
    let second_dir = work.join("second");
    let source = second_dir.join("src");
    let second = Pass {
        name: "second",
        // CCC's sources are a dependency (used in place, like every other crate); when the
        // project is CCC, its copy is the second pass's source.
        ccc: if project.is_ccc() {
            source.clone()
        } else {
            project.ccc.root.clone()
        },
        source,
        dir: second_dir,
        umask: "077",
        // A POSIX TZ string (no tzdata needed): UTC+12:45, a zone offset nobody builds in.
        tz: "CCC-12:45",
        locale: "C.UTF-8",
    };
    (first, second)
}

/// What one pass produced.
struct Built {
    binaries: Binaries,
    image: Image,
}

/// Compiles and assembles one pass.
fn build_pass(
    project: &Project,
    pass: &Pass,
    app: &AppSpec,
    kernel: &KernelArtifact,
    git: &GitState,
    version: &str,
    customize: impl FnOnce(&mut ImageSpec<'_>),
) -> Result<Built> {
    let binaries = compile::compile(pass, app, git.epoch)?;
    let name = project.image_name_for(app);
    let identity = image::identity(&name, version, git.epoch, kernel, &project.tool)?;
    let mut spec = ImageSpec::new(kernel, &binaries.init, &binaries.app, app.name(), identity);
    customize(&mut spec);
    let out = pass.out_dir();
    if out.exists() {
        std::fs::remove_dir_all(&out).io("empty", &out)?;
    }
    let image = image::assemble(&spec, &out, &eif_file_name(&name, version))?;
    Ok(Built { binaries, image })
}

/// Builds the EIF of `app` from the project's checkout into `out_dir` in one pass: the same
/// kernel, init, command line, layout and metadata as `release` (so, for the project's
/// application and no customisation, the same bytes as the release of this commit).
/// `customize` may change the image before it is written — another `/env`, extra arguments,
/// another command line, the metadata — which is how a deliberately different ("tampered")
/// image is made. The kernel is CCC's (built or cached) unless `kernel` names a bzImage.
///
/// The compile reuses the release's first-pass target directory (warm after one release).
///
/// # Errors
/// A missing prerequisite, a failed build, or an image that cannot be written.
pub fn build_image(
    project: &Project,
    app: &AppSpec,
    kernel: Option<PathBuf>,
    out_dir: &Path,
    customize: impl FnOnce(&mut ImageSpec<'_>),
) -> Result<Image> {
    ensure_prerequisites(project)?;
    project.check_target(app, "--app")?;
    let git = git::state(&project.root)?;
    let kernel = kernel::resolve(kernel, &project.ccc.root, &project.cache)?;
    let (first, _) = passes(project, &project.work_dir());
    let built = build_pass(
        project,
        &first,
        app,
        &kernel,
        &git,
        &project.version,
        customize,
    )?;
    std::fs::create_dir_all(out_dir).io("create", out_dir)?;
    let move_into = |from: &Path| -> Result<PathBuf> {
        let to = out_dir.join(from.file_name().unwrap_or_default());
        std::fs::copy(from, &to).io(&format!("copy {} to", from.display()), &to)?;
        Ok(to)
    };
    Ok(Image {
        eif: move_into(&built.image.eif)?,
        bootstrap: move_into(&built.image.bootstrap)?,
        customer: move_into(&built.image.customer)?,
        ..built.image
    })
}

/// The host packages and the musl target of both toolchains a release uses (the project's and,
/// for the init, CCC's).
fn ensure_prerequisites(project: &Project) -> Result<()> {
    crate::host::ensure_base(&project.root)?;
    if !project.is_ccc() {
        crate::host::ensure_musl_target(&project.ccc.root)?;
    }
    Ok(())
}

/// The first byte where two files differ, as a sentence; `None` when they are identical.
///
/// # Errors
/// A file cannot be read.
pub fn first_difference(a: &Path, b: &Path) -> Result<Option<String>> {
    let x = std::fs::read(a).io("read", a)?;
    let y = std::fs::read(b).io("read", b)?;
    if x == y {
        return Ok(None);
    }
    let common = x.iter().zip(&y).take_while(|(p, q)| p == q).count();
    Ok(Some(if common == x.len().min(y.len()) {
        format!(
            "the first {common} bytes are equal, then one file ends ({} vs {} bytes)",
            x.len(),
            y.len()
        )
    } else {
        format!(
            "first difference at byte offset {common} (0x{common:x}): 0x{:02x} vs 0x{:02x} \
             ({} vs {} bytes)",
            x.get(common).copied().unwrap_or_default(),
            y.get(common).copied().unwrap_or_default(),
            x.len(),
            y.len()
        )
    }))
}

/// Compares every artifact of the two passes; the error lists each difference.
fn compare(first: &Built, second: &Built, app: &AppSpec) -> Result<()> {
    let pairs = [
        ("ccc-init", &first.binaries.init, &second.binaries.init),
        (app.name(), &first.binaries.app, &second.binaries.app),
        (
            "bootstrap ramdisk",
            &first.image.bootstrap,
            &second.image.bootstrap,
        ),
        (
            "customer ramdisk",
            &first.image.customer,
            &second.image.customer,
        ),
        ("EIF", &first.image.eif, &second.image.eif),
    ];
    let mut differences = Vec::new();
    for (name, a, b) in pairs {
        match first_difference(a, b)? {
            None => eprintln!(
                "release: {name}: identical ({} bytes)",
                std::fs::metadata(a).io("stat", a)?.len()
            ),
            Some(how) => {
                eprintln!("release: {name}: DIFFERENT: {how}");
                differences.push(format!(
                    "{name}: {how}\n    {}\n    {}",
                    a.display(),
                    b.display()
                ));
            }
        }
    }
    if differences.is_empty() {
        return Ok(());
    }
    Err(Error::NotReproducible { differences })
}

/// Timings of a run, for `cargo xtask bench eif`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Timings {
    version: String,
    app: String,
    /// The whole command.
    total_secs: f64,
    kernel_secs: f64,
    /// The kernel was compiled in this run (not taken from its cache).
    kernel_built: bool,
    first_pass_secs: f64,
    second_pass_secs: f64,
    /// The first pass's target directory did not exist (everything compiled from scratch).
    first_pass_cold: bool,
    eif_bytes: u64,
    /// Available CPUs and the 1-minute load average when the run ended.
    cpus: usize,
    load_average: String,
}

/// What a release wrote.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Outcome {
    /// The release directory.
    pub dir: PathBuf,
    /// The EIF in it.
    pub eif: PathBuf,
    /// Its PCRs.
    pub measurements: Measurements,
}

/// The `release` command for `project`.
///
/// # Errors
/// A missing prerequisite (with its fix), a failed build, a difference between the two passes,
/// all-zero PCRs, PCRs that contradict release/pcr-expectations.json (a published version's
/// measurements never change), or a write failure.
pub fn run(project: &Project, args: &Args) -> Result<Outcome> {
    let started = Instant::now();
    let root = &project.root;
    let version = args
        .version
        .clone()
        .unwrap_or_else(|| project.version.clone());
    publish::check_version(&version)?;
    let principal = match (&args.account, &args.role, &args.admin_role) {
        (Some(account), Some(role), Some(admin_role)) => Principals::new(account, role, admin_role)
            .map_err(|e| Error::invalid("--account, --role and --admin-role", e.to_string()))?,
        _ => Principals::placeholders(),
    };
    let app = args.app_spec(&project.app);
    let signer = args.sign.signer(ccc_sdk::time::UnixMillis::now())?;
    ensure_prerequisites(project)?;
    project.check_target(&app, "--app")?;
    let git = git::state(root)?;
    warn_about_the_tree(&git);

    let default_out = project.release_dir().join(&version);
    let out = match &args.out {
        Some(dir) if dir.is_absolute() => dir.clone(),
        Some(dir) => std::env::current_dir()
            .io("find", Path::new("the current directory"))?
            .join(dir),
        None => default_out.clone(),
    };
    let publishing = out == default_out;
    let names = ReleaseFiles::new(&project.image_name_for(&app), &version);
    names.check_directory(&out)?;
    let expectations_path = root.join(EXPECTATIONS_FILE);
    let mut expectations = publish::load_expectations(&expectations_path)?;

    let t = Instant::now();
    let (ccc_root, cache) = (&project.ccc.root, &project.cache);
    let kernel_built = args.kernel.is_none() && !kernel::is_cached(ccc_root, cache)?;
    let kernel = kernel::resolve(args.kernel.clone(), ccc_root, cache)?;
    if args.full {
        kernel::verify_reproducible(&kernel, ccc_root, cache)?;
    }
    let kernel_time = t.elapsed();

    let work = project.work_dir();
    let (first_pass, second_pass) = passes(project, &work);
    let first_pass_cold = !first_pass.target_dir().exists();
    let t = Instant::now();
    let mut first = build_pass(project, &first_pass, &app, &kernel, &git, &version, |_| {})?;
    let first_time = t.elapsed();

    let t = Instant::now();
    for dir in [second_pass.source.clone(), second_pass.tmp_dir()] {
        if dir.exists() {
            std::fs::remove_dir_all(&dir).io("remove", &dir)?;
        }
    }
    let copied = git::export_tracked(root, &second_pass.source)?;
    eprintln!(
        "release: [second] copied {copied} tracked files into {}",
        second_pass.source.display()
    );
    let second = build_pass(project, &second_pass, &app, &kernel, &git, &version, |_| {})?;
    let second_time = t.elapsed();

    compare(&first, &second, &app)?;
    // Signing comes after the comparison: the passes' unsigned images are what must be
    // byte-identical (the signature is randomised).
    let signing = match &signer {
        Some(signer) => {
            let (measurements, record) =
                signer.sign_file(&first.image.eif, ccc_sdk::time::UnixMillis::now())?;
            first.image.measurements = measurements;
            first.image.len = std::fs::metadata(&first.image.eif)
                .io("stat", &first.image.eif)?
                .len();
            eprintln!(
                "release: signed the EIF (PCR8 {}, certificate valid until {})",
                record.pcr8, record.certificate_not_after
            );
            Some(record)
        }
        None => None,
    };
    let measurements = first.image.measurements;
    publish::refuse_debug_pcrs(&measurements)?;
    let pcrs = PcrValues::of(&measurements, true);
    let expected = publish::expectation(&pcrs, &git.epoch.rfc3339(), &git.commit)?;
    if publishing {
        // Refuses here, before anything is written (recorded after writing).
        expectations
            .clone()
            .record(&version, expected.clone())
            .map_err(|e| Error::pcrs(e.to_string()))?;
    } else if let Some(recorded) = expectations.get(&version)
        && !recorded.same_measurements(&expected)
    {
        eprintln!(
            "release: WARNING: these PCRs differ from the ones published for {version} in \
             {EXPECTATIONS_FILE}:\n{}",
            ccc_policy::expectations::pcr_table(recorded, &expected)
        );
    }

    let t = Instant::now();
    let resources = if args.skip_memory_measurement {
        eprintln!("release: memory NOT measured (--skip-memory-measurement)");
        resources::unmeasured(&first.image.eif)?
    } else {
        eprintln!(
            "release: measuring the least memory that boots and attests (QEMU nitro-enclave, \
             TCG; --skip-memory-measurement skips it)"
        );
        let tools = crate::tools::ensure(&project.cache, &project.root)?;
        resources::measure(&first.image.eif, &tools).map_err(|e| {
            e.context("measuring the least memory (--skip-memory-measurement skips it)")
        })?
    };
    let memory_time = t.elapsed();

    let context = ReleaseContext {
        project,
        version: &version,
        app: &app,
        git: &git,
        kernel: &kernel,
        custom_kernel: args.kernel.is_some(),
        full: args.full,
        principal: &principal,
        first: &first,
        signing: signing.as_ref(),
        resources: &resources,
    };
    write_release(&context, &names, &out)?;

    if publishing {
        let recorded = expectations
            .record(&version, expected)
            .map_err(|e| Error::pcrs(e.to_string()))?;
        std::fs::write(&expectations_path, expectations.to_json())
            .io("write", &expectations_path)?;
        match recorded {
            Recorded::Added => eprintln!(
                "release: recorded {version} in {EXPECTATIONS_FILE}; no environment allows it \
                 yet: add it to allowed_versions in deploy/environments.toml and run `{} policy \
                 render --env NAME` (docs/releasing.md)",
                project.tool.command
            ),
            _ => {
                eprintln!("release: {EXPECTATIONS_FILE} already holds these PCRs for {version}");
            }
        }
    } else {
        eprintln!(
            "release: {} is not release/{version}/, so {EXPECTATIONS_FILE} is left as it is",
            out.display()
        );
    }

    let timings = Timings {
        version: version.clone(),
        app: app.name().to_owned(),
        total_secs: started.elapsed().as_secs_f64(),
        kernel_secs: kernel_time.as_secs_f64(),
        kernel_built,
        first_pass_secs: first_time.as_secs_f64(),
        second_pass_secs: second_time.as_secs_f64(),
        first_pass_cold,
        eif_bytes: first.image.len,
        cpus: std::thread::available_parallelism().map_or(1, usize::from),
        load_average: load_average(),
    };
    let timings_path = work.join(TIMINGS_FILE);
    std::fs::write(&timings_path, publish::json_text(&timings)?).io("write", &timings_path)?;

    eprintln!(
        "release: {version} published in {} (kernel {}, first pass {}, second pass {}); EIF \
         {} bytes",
        out.display(),
        elapsed(kernel_time),
        elapsed(first_time),
        elapsed(second_time),
        first.image.len
    );
    if git.dirty {
        eprintln!("release: WARNING: built from a DIRTY tree (recorded as dirty: true)");
    }
    let total = started.elapsed();
    eprintln!("release: memory search {}", elapsed(memory_time));
    for line in resources::summary(&resources) {
        eprintln!("release: {line}");
    }
    print!("{}", publish::json_text(&pcrs)?);
    eprintln!("release: total {}", elapsed(total));
    Ok(Outcome {
        eif: out.join(&names.eif),
        dir: out,
        measurements,
    })
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split(' ').next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

fn warn_about_the_tree(git: &GitState) {
    if git.dirty {
        let bar = "!".repeat(78);
        eprintln!(
            "{bar}\nrelease: WARNING: the working tree has uncommitted changes to tracked \
             files:\n  {}\nThe release is built from them (both passes), recorded as dirty: \
             true, and nobody can rebuild it from commit {}. Commit first for a real \
             release.\n{bar}",
            git.changes.join("\n  "),
            git.commit
        );
    }
    if let Ok(value) = std::env::var("SOURCE_DATE_EPOCH")
        && value != git.epoch.secs().to_string()
    {
        eprintln!(
            "release: note: SOURCE_DATE_EPOCH={value} in the environment is ignored; a release's \
             epoch is its commit time ({}), so that anyone rebuilding derives the same one",
            git.epoch.secs()
        );
    }
}

/// Everything the published files are written from.
struct ReleaseContext<'a> {
    project: &'a Project,
    version: &'a str,
    app: &'a AppSpec,
    git: &'a GitState,
    kernel: &'a KernelArtifact,
    custom_kernel: bool,
    full: bool,
    principal: &'a Principals,
    first: &'a Built,
    /// Set when the image was signed.
    signing: Option<&'a sign::SigningRecord>,
    /// The memory and vCPU figures published with the release.
    resources: &'a resources::Resources,
}

impl ReleaseContext<'_> {
    /// How users invoke the tool that made this release (`cargo xtask`, `cargo ccc`).
    fn command(&self) -> &str {
        &self.project.tool.command
    }
}

/// The file names of one release directory.
struct ReleaseFiles {
    eif: String,
    measurements: String,
    key_policy: String,
    iam_policy: String,
}

impl ReleaseFiles {
    fn new(image_name: &str, version: &str) -> Self {
        Self {
            eif: eif_file_name(image_name, version),
            measurements: measurements_file_name(version),
            key_policy: key_policy_file_name(version),
            iam_policy: iam_policy_file_name(version),
        }
    }

    /// Every file a release directory holds, SHA256SUMS last.
    fn all(&self) -> Vec<String> {
        vec![
            self.eif.clone(),
            self.measurements.clone(),
            self.key_policy.clone(),
            self.iam_policy.clone(),
            MANIFEST_FILE.to_owned(),
            REPRODUCE_FILE.to_owned(),
            SUMS_FILE.to_owned(),
        ]
    }

    /// An existing output directory may hold only files a release writes (SHA256SUMS covers the
    /// whole directory, so a stray file would go unlisted).
    fn check_directory(&self, dir: &Path) -> Result<()> {
        if !dir.exists() {
            return Ok(());
        }
        let ours = self.all();
        let mut stray = Vec::new();
        for entry in std::fs::read_dir(dir).io("list", dir)? {
            let name = entry
                .io("list", dir)?
                .file_name()
                .to_string_lossy()
                .into_owned();
            if !ours.contains(&name) {
                stray.push(name);
            }
        }
        ensure!(
            stray.is_empty(),
            Error::published(
                dir,
                format!(
                    "holds files a release does not write ({}); remove them (SHA256SUMS must \
                     cover every file of a release directory)",
                    stray.join(", ")
                )
            )
        );
        Ok(())
    }
}

fn write_release(ctx: &ReleaseContext<'_>, names: &ReleaseFiles, out: &Path) -> Result<()> {
    std::fs::create_dir_all(out).io("create", out)?;
    let write = |name: &str, text: &str| -> Result<()> {
        let path = out.join(name);
        std::fs::write(&path, text).io("write", &path)
    };
    let measurements = &ctx.first.image.measurements;
    let eif_path = out.join(&names.eif);
    std::fs::copy(&ctx.first.image.eif, &eif_path).io("write", &eif_path)?;

    let tools: BTreeMap<String, String> = compile::tool_versions(&ctx.project.root)
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    let kernel_record = kernel_record(ctx)?;
    let rebuild = reproduce::rebuild_commands(ctx);
    let measurements_file = MeasurementsFile {
        version: ctx.version.to_owned(),
        build_timestamp: ctx.git.epoch.rfc3339(),
        measurements: PcrValues::of(measurements, true),
        kms_policy_conditions: publish::policy_conditions(measurements)?,
        verification: publish::Verification {
            commit: ctx.git.commit.clone(),
            dirty: ctx.git.dirty,
            toolchain: tools.get("rustc").cloned().unwrap_or_default(),
            target: MUSL_TARGET.to_owned(),
            app: app_description(ctx.app),
            kernel: kernel_record.clone(),
            tools: tools.clone(),
            rebuild: rebuild.clone(),
        },
        resources: Some(ctx.resources.clone()),
    };
    write(&names.measurements, &measurements_file.to_json()?)?;
    write(
        &names.key_policy,
        &publish::key_policy(measurements, ctx.principal)?,
    )?;
    write(&names.iam_policy, &publish::iam_policy(measurements)?)?;
    write(REPRODUCE_FILE, &reproduce::markdown(ctx, names, &rebuild))?;

    let mut outputs = BTreeMap::new();
    for name in [
        &names.eif,
        &names.measurements,
        &names.key_policy,
        &names.iam_policy,
    ] {
        outputs.insert(name.clone(), FileDigest::of(&out.join(name))?);
    }
    outputs.insert(
        REPRODUCE_FILE.to_owned(),
        FileDigest::of(&out.join(REPRODUCE_FILE))?,
    );
    let manifest = manifest(ctx, tools, kernel_record, outputs)?;
    write(MANIFEST_FILE, &manifest.to_json()?)?;
    let listed: Vec<String> = names.all().into_iter().filter(|n| n != SUMS_FILE).collect();
    write(SUMS_FILE, &publish::sha256sums(out, &listed)?)?;
    Ok(())
}

fn app_description(app: &AppSpec) -> String {
    format!("{} {} of package {}", app.kind(), app.name(), app.package)
}

fn kernel_record(ctx: &ReleaseContext<'_>) -> Result<KernelRecord> {
    let config_sha256 = match &ctx.kernel.config {
        Some(path) => Some(crate::hash::sha256_file(path)?),
        None => None,
    };
    if ctx.custom_kernel {
        return Ok(KernelRecord {
            origin: "custom".to_owned(),
            package: None,
            package_version: None,
            deb_sha256: None,
            config_sha256,
            source: ctx
                .kernel
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            version: ctx.kernel.version.clone(),
            bzimage_sha256: ctx.kernel.sha256.clone(),
            patches: Vec::new(),
        });
    }
    let pin = kernel::Pin::load(&ctx.project.ccc.root)?;
    let patches = pin
        .patches
        .iter()
        .map(|p| PatchRecord {
            file: format!("{}/{}/{}", kernel::CONFIG_DIR, kernel::PATCH_DIR, p.file),
            sha256: p.sha256.clone(),
        })
        .collect();
    Ok(KernelRecord {
        origin: "ccc".to_owned(),
        package: Some(pin.package),
        package_version: Some(pin.version),
        deb_sha256: Some(pin.deb_sha256),
        config_sha256,
        source: format!(
            "kernel-config/{} (fragment kernel-config/{})",
            pin.config, pin.fragment
        ),
        version: ctx.kernel.version.clone(),
        bzimage_sha256: ctx.kernel.sha256.clone(),
        patches,
    })
}

/// The CCC record of the manifest: version, origin, commit.
fn ccc_record(project: &Project) -> CccRecord {
    let commit = project.ccc.commit();
    CccRecord {
        version: project.ccc.version.clone(),
        origin: match project.ccc.origin {
            CccOrigin::Workspace => "workspace",
            CccOrigin::Path => "path",
            CccOrigin::Git { .. } => "git",
        }
        .to_owned(),
        url: match &project.ccc.origin {
            CccOrigin::Git { url, .. } => Some(url.clone()),
            _ => None,
        },
        dirty: commit.as_ref().is_some_and(|(_, dirty)| *dirty),
        commit: commit.map(|(commit, _)| commit),
    }
}

fn manifest(
    ctx: &ReleaseContext<'_>,
    tools: BTreeMap<String, String>,
    kernel: KernelRecord,
    outputs: BTreeMap<String, FileDigest>,
) -> Result<Manifest> {
    let project = ctx.project;
    let image = &ctx.first.image;
    let mut inputs = BTreeMap::new();
    inputs.insert("kernel".to_owned(), FileDigest::of(&ctx.kernel.path)?);
    inputs.insert(
        "cmdline".to_owned(),
        FileDigest::of_bytes(image::CMDLINE.as_bytes()),
    );
    inputs.insert("init".to_owned(), FileDigest::of(&ctx.first.binaries.init)?);
    inputs.insert("app".to_owned(), FileDigest::of(&ctx.first.binaries.app)?);
    inputs.insert(
        "bootstrap-ramdisk".to_owned(),
        FileDigest::of(&image.bootstrap)?,
    );
    inputs.insert(
        "customer-ramdisk".to_owned(),
        FileDigest::of(&image.customer)?,
    );
    let kernel_note = if ctx.custom_kernel {
        "supplied with --kernel (file name and SHA-256 above), not built by CCC; both passes \
         used the same file"
            .to_owned()
    } else if ctx.full {
        "built (or taken from the per-user cache, <cache>/kernel/<key>/, keyed by the pinned \
         .deb, the config, the build environment and the recipe) and then rebuilt from scratch \
         in <cache>/kernel/verify/<key>/ (--full): byte-identical; both passes used it"
            .to_owned()
    } else {
        format!(
            "built once (or taken from the per-user cache, <cache>/kernel/<key>/, keyed by the \
             pinned .deb, the config, the build environment and the recipe) and used by both \
             passes; NOT rebuilt by this run: its own reproducibility check is `cargo xtask \
             kernel --verify-reproducible` in CCC's repository (or `{} release --full`)",
            ctx.command()
        )
    };
    let (first, second) = passes(project, Path::new("target/ccc-release"));
    let describe = |pass: &Pass, source: &str| {
        format!(
            "{source}; CARGO_TARGET_DIR {}; TMPDIR {}; umask {}; TZ {}; LC_ALL {}",
            pass.target_dir().display(),
            pass.tmp_dir().display(),
            pass.umask,
            pass.tz,
            pass.locale
        )
    };
    let ccc_in_place = if project.is_ccc() {
        ""
    } else {
        "; CCC's sources (a dependency) are used in place by both passes"
    };
    let mut path_remapping = vec![
        "rustup toolchain -> /rust-toolchain".to_owned(),
        "CARGO_HOME -> /cargo".to_owned(),
        "workspace -> /ccc (CCC's for ccc-init, the project's for the application)".to_owned(),
    ];
    if !project.is_ccc() {
        path_remapping.push("CCC's sources, for the application -> /ccc-source".to_owned());
    }
    path_remapping.extend([
        "CARGO_TARGET_DIR -> /ccc-target".to_owned(),
        "rustc: --remap-path-prefix in CARGO_ENCODED_RUSTFLAGS; C: -ffile-prefix-map in \
         CFLAGS_x86_64_unknown_linux_musl and CXXFLAGS_x86_64_unknown_linux_musl"
            .to_owned(),
    ]);
    Ok(Manifest {
        format: MANIFEST_FORMAT,
        version: ctx.version.to_owned(),
        image_name: project.image_name_for(ctx.app),
        app: publish::AppRecord {
            package: ctx.app.package.clone(),
            kind: ctx.app.kind().to_owned(),
            name: ctx.app.name().to_owned(),
        },
        ccc: Some(ccc_record(project)),
        tool: Some(ToolRecord {
            name: project.tool.name.clone(),
            version: project.tool.version.clone(),
            command: project.tool.command.clone(),
        }),
        git: publish::GitRecord {
            commit: ctx.git.commit.clone(),
            dirty: ctx.git.dirty,
            changes: ctx.git.changes.clone(),
            source_date_epoch: ctx.git.epoch.secs(),
            source_date: ctx.git.epoch.rfc3339(),
            epoch_rule: "commit time of the latest commit that changed a tracked file outside \
                         release/ (git log -1 --format=%ct -- . ':(exclude)release'); it is the \
                         EIF metadata's BuildTime and the compilers' SOURCE_DATE_EPOCH. Ramdisk \
                         entries carry mtime 0, so PCRs do not depend on it"
                .to_owned(),
        },
        toolchain: publish::ToolchainRecord {
            rustc: compile::rustc_verbose_version(&project.root)?
                .lines()
                .map(str::to_owned)
                .collect(),
            target: MUSL_TARGET.to_owned(),
            cargo_build: format!(
                "cargo build --locked --release --target {MUSL_TARGET} -p ccc-init --bin \
                 ccc-init (in CCC's workspace, with CCC's Cargo.lock), then -p {} --{} {} (in \
                 the project's)",
                ctx.app.package,
                ctx.app.kind(),
                ctx.app.name()
            ),
            profile: "release ([profile.release] of each workspace's Cargo.toml)".to_owned(),
            path_remapping,
            environment: "cleared; set: PATH (cargo's directory, then /usr/local/sbin:\
                          /usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin), SOURCE_DATE_EPOCH, TZ, \
                          LC_ALL, LANG, TMPDIR, CARGO_TARGET_DIR, CARGO_ENCODED_RUSTFLAGS, \
                          CARGO_INCREMENTAL=0, CFLAGS/CXXFLAGS for the musl target; passed \
                          through: HOME, USER, CARGO_HOME, RUSTUP_HOME, RUSTUP_AUTO_INSTALL, \
                          proxies, SSL_CERT_*, CARGO_HTTP_*, CARGO_NET_*, CARGO_REGISTRIES_*"
                .to_owned(),
        },
        tools,
        cargo_lock_sha256: crate::hash::sha256_file(&project.root.join("Cargo.lock"))?,
        kernel,
        cmdline: image::CMDLINE.to_owned(),
        inputs,
        outputs,
        measurements: PcrValues::of(&image.measurements, true),
        signing: ctx.signing.cloned(),
        reproducibility: publish::ReproducibilityRecord {
            rebuilt_twice: vec![
                "ccc-init".to_owned(),
                ctx.app.name().to_owned(),
                "bootstrap ramdisk".to_owned(),
                "customer ramdisk".to_owned(),
                "EIF".to_owned(),
            ],
            comparison: "byte for byte; any difference stops the release before anything is \
                         published"
                .to_owned(),
            first_pass: describe(&first, &format!("the checkout itself{ccc_in_place}")),
            second_pass: describe(
                &second,
                &format!(
                    "a fresh copy of the tracked files (git ls-files, working-tree content) in \
                     {}{ccc_in_place}",
                    second.source.display()
                ),
            ),
            kernel: kernel_note,
        },
        resources: Some(ctx.resources.clone()),
    })
}

/// The `verify-release V` command for `project`.
///
/// # Errors
/// The published files are missing or malformed, the rebuild fails, or any PCR differs.
pub fn verify(project: &Project, args: &VerifyArgs) -> Result<()> {
    let started = Instant::now();
    let version = &args.version;
    publish::check_version(version)?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| project.release_dir().join(version));
    let published = MeasurementsFile::load(&dir.join(measurements_file_name(version)))?;
    let manifest = Manifest::load(&dir.join(MANIFEST_FILE))?;
    ensure!(
        published.version == *version && manifest.version == *version,
        Error::published(
            &dir,
            format!(
                "describes version {} (manifest: {}), not {version}",
                published.version, manifest.version
            )
        )
    );
    let app = AppSpec::from_kind(
        &manifest.app.package,
        &manifest.app.kind,
        &manifest.app.name,
    )?;
    if manifest.kernel.origin == "custom" {
        ensure!(
            args.kernel.is_some(),
            Error::invalid(
                "--kernel",
                format!(
                    "release {version} was built with its own kernel ({}, sha256 {}): pass it \
                     with --kernel PATH",
                    manifest.kernel.source, manifest.kernel.bzimage_sha256
                )
            )
        );
    }
    let git = git::state(&project.root)?;
    eprintln!(
        "verify-release: published from commit {}{}; rebuilding from {}{}",
        manifest.git.commit,
        if manifest.git.dirty { " (DIRTY)" } else { "" },
        git.commit,
        if git.dirty { " (DIRTY)" } else { "" }
    );
    if git.commit != manifest.git.commit || git.dirty {
        eprintln!(
            "verify-release: WARNING: this checkout's inputs are not those of release {version} \
             (see `git diff --stat {} -- . ':(exclude)release'`): expect mismatches",
            manifest.git.commit
        );
    }
    if let Some(ccc) = &manifest.ccc
        && let Some(commit) = &ccc.commit
        && project
            .ccc
            .commit()
            .is_some_and(|(ours, _)| ours != *commit)
    {
        eprintln!(
            "verify-release: WARNING: release {version} was built with CCC {} at {commit}; this \
             project resolves CCC at another commit: expect mismatches",
            ccc.version
        );
    }
    let host: BTreeMap<String, String> = compile::tool_versions(&project.root)
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    eprint!(
        "verify-release: {}",
        host_tools::report(&host_tools::compare(&manifest.tools, &host))
    );
    let out = project.work_dir().join("verify");
    let image = build_image(project, &app, args.kernel.clone(), &out, |spec| {
        spec.identity.image_name = manifest.image_name.clone();
        spec.identity.image_version = version.clone();
    })?;
    let built = PcrValues::of(&image.measurements, true);
    let mut mismatches = 0;
    println!("verify-release {version}:");
    for ((name, want), (_, got)) in published.measurements.pcrs().iter().zip(built.pcrs()) {
        if want.eq_ignore_ascii_case(got) {
            println!("  {name} match     {got}");
        } else {
            mismatches += 1;
            println!("  {name} MISMATCH\n    published {want}\n    rebuilt   {got}");
        }
    }
    let eif_name = eif_file_name(&manifest.image_name, version);
    let eif_sha = crate::hash::sha256_file(&image.eif)?;
    // A signed release publishes the signed image; what was rebuilt twice, and is rebuilt
    // here, is the unsigned one the manifest records.
    let (what, published_sha) = match &manifest.signing {
        Some(signing) => ("unsigned image", Some(&signing.unsigned_eif.sha256)),
        None => (
            "published image",
            manifest.outputs.get(&eif_name).map(|d| &d.sha256),
        ),
    };
    match published_sha {
        Some(sha) if *sha == eif_sha => {
            println!("  EIF match     sha256 {eif_sha} (byte-identical to the {what})");
        }
        Some(sha) => println!(
            "  EIF differs   sha256 {eif_sha}, {what} {sha} (the metadata holds the commit time \
             and tool version; PCRs are what policies pin)"
        ),
        None => println!("  EIF           the manifest lists no {eif_name}"),
    }
    // The published image itself: fail closed on its signature whatever the PCRs say.
    let published_eif = dir.join(&eif_name);
    let at = args.at.unwrap_or_else(ccc_sdk::time::UnixMillis::now);
    let read = Eif::open(&published_eif).map_err(|source| Error::Eif {
        path: published_eif.clone(),
        source,
    })?;
    let signed = sign::check_published(
        &published_eif,
        &read,
        published.measurements.pcr8.as_deref(),
        at,
    )?;
    if let Some(check) = &signed {
        for (name, want, got) in [
            ("PCR0", read.measurements.pcr0, image.measurements.pcr0),
            ("PCR1", read.measurements.pcr1, image.measurements.pcr1),
            ("PCR2", read.measurements.pcr2, image.measurements.pcr2),
        ] {
            if want != got {
                mismatches += 1;
                println!(
                    "  {name} of the published signed EIF MISMATCH\n    published {}\n    \
                     rebuilt   {}",
                    want.hex(),
                    got.hex()
                );
            }
        }
        println!(
            "  PCR8 match     {} (the signature verifies at {at}, covers the rebuilt PCR0; \
             certificate valid until {})",
            check.pcr8.hex(),
            check.certificate.not_after
        );
    }
    eprintln!("verify-release: done in {}", elapsed(started.elapsed()));
    ensure!(
        mismatches == 0,
        Error::pcrs(format!(
            "{mismatches} PCRs differ from {}: this checkout does not rebuild release \
             {version} (check out commit {} and build on Debian 12)",
            dir.display(),
            manifest.git.commit
        ))
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_are_located() {
        let dir = std::env::temp_dir().join(format!("ccc-diff-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b, c, d) = (dir.join("a"), dir.join("b"), dir.join("c"), dir.join("d"));
        std::fs::write(&a, b"abcdef").unwrap();
        std::fs::write(&b, b"abcdef").unwrap();
        std::fs::write(&c, b"abcXef").unwrap();
        std::fs::write(&d, b"abcdefgh").unwrap();
        assert_eq!(first_difference(&a, &b).unwrap(), None);
        let how = first_difference(&a, &c).unwrap().unwrap();
        assert!(how.contains("byte offset 3 (0x3): 0x64 vs 0x58"), "{how}");
        let how = first_difference(&a, &d).unwrap().unwrap();
        assert!(how.contains("first 6 bytes are equal"), "{how}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Two passes whose customer ramdisks differ: the comparison names that artefact and the
    /// offset, and passes the identical ones.
    #[test]
    fn a_difference_between_the_passes_stops_the_release() {
        let dir = std::env::temp_dir().join(format!("ccc-compare-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let pass = |name: &str, customer: &[u8]| -> Built {
            let d = dir.join(name);
            std::fs::create_dir_all(&d).unwrap();
            let file = |f: &str, bytes: &[u8]| {
                std::fs::write(d.join(f), bytes).unwrap();
                d.join(f)
            };
            Built {
                binaries: Binaries {
                    init: file("init", b"init"),
                    app: file("app", b"app"),
                },
                image: Image {
                    eif: file("x.eif", b"eif"),
                    bootstrap: file("bootstrap.cpio", b"boot"),
                    customer: file("customer.cpio", customer),
                    measurements: ccc_eif::Measurements {
                        pcr0: ccc_eif::Pcr([1; 48]),
                        pcr1: ccc_eif::Pcr([2; 48]),
                        pcr2: ccc_eif::Pcr([3; 48]),
                        pcr8: None,
                    },
                    len: 3,
                },
            }
        };
        let app = AppSpec::bin("ccc-template-enclave", "ccc-template-enclave");
        let a = pass("a", b"rootfs/bin/app 0644");
        let b = pass("b", b"rootfs/bin/app 0644");
        compare(&a, &b, &app).unwrap();
        let c = pass("c", b"rootfs/bin/app 0600");
        let err = compare(&a, &c, &app).unwrap_err().to_string();
        assert!(err.contains("NOT published"), "{err}");
        assert!(
            err.contains("customer ramdisk: first difference at byte offset 17"),
            "{err}"
        );
        assert!(
            !err.contains("EIF:"),
            "only the differing artefact is listed: {err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn release_directories_hold_only_release_files() {
        let names = ReleaseFiles::new("ccc-enclave", "0.1.0");
        assert_eq!(
            names.all(),
            [
                "ccc-enclave-0.1.0.eif",
                "pcr-measurements-0.1.0.json",
                "kms-policy-template-0.1.0.json",
                "iam-policy-template-0.1.0.json",
                "build-manifest.json",
                "REPRODUCE.md",
                "SHA256SUMS"
            ]
        );
        let dir = std::env::temp_dir().join(format!("ccc-reldir-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        names.check_directory(&dir).unwrap();
        std::fs::write(dir.join("SHA256SUMS"), "").unwrap();
        names.check_directory(&dir).unwrap();
        std::fs::write(dir.join("notes.txt"), "").unwrap();
        let err = names.check_directory(&dir).unwrap_err().to_string();
        assert!(err.contains("notes.txt"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn app_selection() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            args: Args,
        }
        let template = AppSpec::bin("ccc-template-enclave", "ccc-template-enclave");
        let parse = |words: &[&str]| {
            Cli::try_parse_from(std::iter::once("release").chain(words.iter().copied()))
                .map(|c| c.args.app_spec(&template))
        };
        assert_eq!(parse(&[]).unwrap(), template);
        assert_eq!(parse(&["--app", "x"]).unwrap(), AppSpec::bin("x", "x"));
        assert_eq!(
            parse(&["--app", "x", "--bin", "y"]).unwrap(),
            AppSpec::bin("x", "y")
        );
        assert_eq!(
            parse(&["--app", "ccc-init", "--example", "nsm_probe"]).unwrap(),
            AppSpec {
                package: "ccc-init".into(),
                target: AppTarget::Example("nsm_probe".into())
            }
        );
        assert!(parse(&["--bin", "y"]).is_err(), "--bin needs --app");
        assert!(parse(&["--app", "x", "--bin", "y", "--example", "z"]).is_err());
        assert!(
            parse(&["--account", "111122223333"]).is_err(),
            "--account needs --role"
        );
        assert!(
            parse(&["--account", "111122223333", "--role", "r"]).is_err(),
            "--account needs --admin-role"
        );
        assert!(
            parse(&["--admin-role", "a"]).is_err(),
            "--admin-role needs --account"
        );
        assert!(
            parse(&[
                "--account",
                "111122223333",
                "--role",
                "r",
                "--admin-role",
                "a"
            ])
            .is_ok()
        );
        assert!(parse(&["--full", "--kernel", "/k"]).is_err());
    }
}
