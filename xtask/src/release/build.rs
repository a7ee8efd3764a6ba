//! The compile step of a release: `ccc-init` and the application, built for musl in release mode
//! with `--locked`, in a dedicated target directory, with every build path remapped and an
//! environment that holds only what the build needs — so two builds of the same sources in
//! different directories give the same bytes. Also the git facts a release records (commit,
//! dirty flag, `SOURCE_DATE_EPOCH`) and the copy of the tracked files the second pass builds.

use anyhow::{Context, Result, bail, ensure};
use ccc_eif::SourceDateEpoch;
use std::ffi::OsString;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::init::MUSL_TARGET;
use crate::progress::elapsed;

/// The git pathspec of a release's inputs: every tracked file outside `release/`, which only
/// holds published outputs (so committing them changes neither the epoch nor the dirty flag).
const INPUTS_PATHSPEC: [&str; 3] = ["--", ".", ":(exclude)release"];

/// What the build paths are remapped to in the binaries (`--remap-path-prefix` for rustc,
/// `-ffile-prefix-map` for C compilers). rustc and gcc both let the option given last win when
/// several prefixes match, so the most specific directory comes last.
const REMAPPED_SYSROOT: &str = "/rust-toolchain";
const REMAPPED_CARGO_HOME: &str = "/cargo";
const REMAPPED_WORKSPACE: &str = "/ccc";
const REMAPPED_TARGET_DIR: &str = "/ccc-target";

/// The PATH every build sees after the directory of `cargo` itself: no shims (pyenv, ccache) can
/// change which compiler or linker runs.
const BUILD_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Host variables a build may see (besides the ones the pass sets itself): where cargo, rustup
/// and the registry cache live, and how to reach the registry. Nothing here changes a byte of
/// the output; everything else (RUSTFLAGS, RUSTC_WRAPPER, CC, CFLAGS, CARGO_PROFILE_*, ...)
/// is dropped.
const PASSED_THROUGH: &[&str] = &[
    "HOME",
    "USER",
    "CARGO_HOME",
    "RUSTUP_HOME",
    "RUSTUP_AUTO_INSTALL",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
];

/// Host variable prefixes passed through for registry access (proxies, mirrors, CA bundles).
const PASSED_THROUGH_PREFIXES: &[&str] = &["CARGO_HTTP_", "CARGO_NET_", "CARGO_REGISTRIES_"];

/// The facts about the checkout a release records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GitState {
    /// The latest commit that changed an input (a tracked file outside `release/`): HEAD,
    /// unless the commits since only touched `release/` (such as the one publishing a
    /// release). Recording it instead of HEAD keeps a re-run after publishing a no-op.
    pub(crate) commit: String,
    /// Tracked files outside `release/` differ from HEAD.
    pub(crate) dirty: bool,
    /// The changed files (`git status --porcelain` lines), for the warning.
    pub(crate) changes: Vec<String>,
    /// The commit time of [`GitState::commit`].
    pub(crate) epoch: SourceDateEpoch,
}

/// Reads commit, dirty flag and epoch of the checkout at `root`.
///
/// # Errors
/// `root` is not a git checkout, or git's output is unexpected.
pub(crate) fn git_state(root: &Path) -> Result<GitState> {
    let mut status = vec!["status", "--porcelain=v1", "--untracked-files=no"];
    status.extend(INPUTS_PATHSPEC);
    let changes: Vec<String> = git(root, &status)?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect();
    let mut log = vec!["log", "-1", "--format=%H %ct"];
    log.extend(INPUTS_PATHSPEC);
    let mut line = git(root, &log)?.trim().to_owned();
    if line.is_empty() {
        // No commit touches an input (a repository holding only release/): use HEAD.
        line = git(root, &["log", "-1", "--format=%H %ct"])?
            .trim()
            .to_owned();
    }
    let (commit, secs) = line
        .split_once(' ')
        .with_context(|| format!("`git log` printed `{line}`, expected `<commit> <time>`"))?;
    ensure!(
        commit.len() == 40 && commit.bytes().all(|b| b.is_ascii_hexdigit()),
        "`git log` printed commit `{commit}`, expected 40 hex digits"
    );
    let epoch = SourceDateEpoch::parse(secs)
        .with_context(|| format!("git printed commit time `{secs}`"))?;
    Ok(GitState {
        commit: commit.to_owned(),
        dirty: !changes.is_empty(),
        changes,
        epoch,
    })
}

fn git(root: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("cannot run git (a release is built from a git checkout)")?;
    if !out.status.success() {
        bail!(
            "`git {}` failed in {}: {}",
            args.join(" "),
            root.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8(out.stdout).context("git printed non-UTF-8 text")
}

/// Copies the tracked input files of the checkout at `root` (as they are in the working tree,
/// so a dirty tree is built the same way twice) into `dest`, which must not exist yet. Files
/// deleted in the working tree are skipped. Returns how many files were copied.
///
/// # Errors
/// git fails, or a file cannot be copied.
pub(crate) fn export_tracked(root: &Path, dest: &Path) -> Result<usize> {
    ensure!(
        !dest.exists(),
        "{} exists; the copy must be fresh",
        dest.display()
    );
    let mut args = vec!["ls-files", "-z", "--cached"];
    args.extend(INPUTS_PATHSPEC);
    let listing = git(root, &args)?;
    let mut copied = 0;
    for name in listing.split('\0').filter(|n| !n.is_empty()) {
        let from = root.join(name);
        let to = dest.join(name);
        let Ok(meta) = std::fs::symlink_metadata(&from) else {
            continue;
        };
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)?;
        }
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&from)?;
            std::os::unix::fs::symlink(&target, &to)
                .with_context(|| format!("cannot create the symlink {}", to.display()))?;
        } else if meta.is_file() {
            std::fs::copy(&from, &to)
                .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
        } else {
            // A submodule (a directory entry in the index): CCC has none; refuse to guess.
            bail!("{name} is tracked but is neither a file nor a symlink (a submodule?)");
        }
        copied += 1;
    }
    ensure!(
        copied > 0,
        "git lists no tracked files in {}",
        root.display()
    );
    Ok(copied)
}

/// Which binary of which workspace package is the enclave's application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AppSpec {
    /// The workspace package (`-p`).
    pub(crate) package: String,
    /// Its binary or example.
    pub(crate) target: AppTarget,
}

/// A binary target or an example target of a package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AppTarget {
    /// `--bin NAME`.
    Bin(String),
    /// `--example NAME`.
    Example(String),
}

/// The default application: the enclave template.
pub(crate) const TEMPLATE_PACKAGE: &str = "ccc-template-enclave";

/// The init's package and binary.
const INIT_PACKAGE: &str = "ccc-init";

impl AppSpec {
    /// The enclave template's binary.
    pub(crate) fn template() -> Self {
        Self::bin(TEMPLATE_PACKAGE, TEMPLATE_PACKAGE)
    }

    /// Binary `name` of `package`.
    pub(crate) fn bin(package: &str, name: &str) -> Self {
        Self {
            package: package.to_owned(),
            target: AppTarget::Bin(name.to_owned()),
        }
    }

    /// The binary's file name (also its name in the image).
    pub(crate) fn name(&self) -> &str {
        match &self.target {
            AppTarget::Bin(name) | AppTarget::Example(name) => name,
        }
    }

    /// True for the enclave template.
    pub(crate) fn is_template(&self) -> bool {
        *self == Self::template()
    }

    /// `bin` or `example`, as cargo calls the target kind.
    pub(crate) fn kind(&self) -> &'static str {
        match self.target {
            AppTarget::Bin(_) => "bin",
            AppTarget::Example(_) => "example",
        }
    }

    /// Checks with `cargo metadata` that the package is a workspace member with that target.
    ///
    /// # Errors
    /// It is not, with the list of what is available.
    pub(crate) fn check(&self, root: &Path) -> Result<()> {
        let out = Command::new("cargo")
            .args(["metadata", "--no-deps", "--format-version", "1", "--locked"])
            .current_dir(root)
            .stderr(Stdio::inherit())
            .output()
            .context("cannot run `cargo metadata`")?;
        ensure!(out.status.success(), "`cargo metadata` failed");
        let metadata: serde_json::Value =
            serde_json::from_slice(&out.stdout).context("`cargo metadata` printed bad JSON")?;
        let packages = metadata["packages"].as_array().cloned().unwrap_or_default();
        let names: Vec<&str> = packages.iter().filter_map(|p| p["name"].as_str()).collect();
        let Some(package) = packages
            .iter()
            .find(|p| p["name"].as_str() == Some(&self.package))
        else {
            bail!(
                "--app {}: no such package in this workspace (members: {})",
                self.package,
                names.join(", ")
            );
        };
        let kind = self.kind();
        let targets: Vec<&str> = package["targets"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter(|t| {
                t["kind"]
                    .as_array()
                    .is_some_and(|k| k.iter().any(|k| k == kind))
            })
            .filter_map(|t| t["name"].as_str())
            .collect();
        ensure!(
            targets.contains(&self.name()),
            "package {} has no {kind} named {} ({kind}s: {}); choose one with --{kind} NAME",
            self.package,
            self.name(),
            if targets.is_empty() {
                "none".to_owned()
            } else {
                targets.join(", ")
            }
        );
        Ok(())
    }
}

/// One compile of the enclave binaries: which sources, which directories, which process
/// settings. The two passes of a release differ in everything here except the sources' content.
#[derive(Debug, Clone)]
pub(crate) struct Pass {
    /// `first` or `second` (for messages and directory names).
    pub(crate) name: &'static str,
    /// The workspace root to build.
    pub(crate) source: PathBuf,
    /// The pass's own directory: `target/`, `tmp/` and `out/` live in it.
    pub(crate) dir: PathBuf,
    /// The umask the build runs with (octal text for `sh`'s `umask`).
    pub(crate) umask: &'static str,
    /// The `TZ` the build runs with.
    pub(crate) tz: &'static str,
    /// The `LC_ALL` and `LANG` the build runs with.
    pub(crate) locale: &'static str,
}

impl Pass {
    /// `CARGO_TARGET_DIR` of this pass.
    pub(crate) fn target_dir(&self) -> PathBuf {
        self.dir.join("target")
    }

    /// `TMPDIR` of this pass.
    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.dir.join("tmp")
    }

    /// Where the pass's ramdisks and EIF are written.
    pub(crate) fn out_dir(&self) -> PathBuf {
        self.dir.join("out")
    }
}

/// The two binaries every image needs.
#[derive(Debug, Clone)]
pub(crate) struct Binaries {
    /// The static `ccc-init`.
    pub(crate) init: PathBuf,
    /// The static application.
    pub(crate) app: PathBuf,
}

/// Host paths that must not leak into the binaries.
#[derive(Debug, Clone)]
struct HostPaths {
    sysroot: PathBuf,
    cargo_home: PathBuf,
    cargo_bin_dir: PathBuf,
}

impl HostPaths {
    fn discover(source: &Path) -> Result<Self> {
        let out = Command::new("rustc")
            .args(["--print", "sysroot"])
            .current_dir(source)
            // The toolchain rust-toolchain.toml pins, not one `cargo +x` chose for xtask.
            .env_remove("RUSTUP_TOOLCHAIN")
            .output()
            .context("cannot run `rustc --print sysroot`")?;
        ensure!(out.status.success(), "`rustc --print sysroot` failed");
        let sysroot = PathBuf::from(String::from_utf8(out.stdout)?.trim());
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let cargo_home = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| home.map(|h| h.join(".cargo")))
            .context("neither CARGO_HOME nor HOME is set")?;
        let cargo = find_in_path("cargo").context("no `cargo` in PATH")?;
        let cargo_bin_dir = cargo
            .parent()
            .map(Path::to_path_buf)
            .context("cargo's path has no directory")?;
        Ok(Self {
            sysroot,
            cargo_home,
            cargo_bin_dir,
        })
    }
}

fn find_in_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// The remappings of a pass, most specific last (see [`REMAPPED_WORKSPACE`]).
fn remaps(host: &HostPaths, pass: &Pass) -> Vec<(PathBuf, &'static str)> {
    vec![
        (host.sysroot.clone(), REMAPPED_SYSROOT),
        (host.cargo_home.clone(), REMAPPED_CARGO_HOME),
        (pass.source.clone(), REMAPPED_WORKSPACE),
        (pass.target_dir(), REMAPPED_TARGET_DIR),
    ]
}

/// `CARGO_ENCODED_RUSTFLAGS` (0x1f-separated, so paths may hold spaces).
fn encoded_rustflags(remaps: &[(PathBuf, &'static str)]) -> OsString {
    let mut flags = OsString::new();
    for (i, (from, to)) in remaps.iter().enumerate() {
        if i > 0 {
            flags.push("\x1f");
        }
        flags.push("--remap-path-prefix=");
        flags.push(from);
        flags.push("=");
        flags.push(to);
    }
    flags
}

/// `CFLAGS` for C code compiled for the musl target (the `cc` crate splits them on whitespace,
/// so the paths must not contain any).
fn c_flags(remaps: &[(PathBuf, &'static str)]) -> Result<String> {
    let mut flags = Vec::new();
    for (from, to) in remaps {
        let from = from
            .to_str()
            .with_context(|| format!("{} is not UTF-8", from.display()))?;
        ensure!(
            !from.contains(char::is_whitespace),
            "the build path `{from}` contains whitespace, which CFLAGS cannot carry; build from \
             a directory without spaces"
        );
        flags.push(format!("-ffile-prefix-map={from}={to}"));
    }
    Ok(flags.join(" "))
}

/// The `cargo build` of one target in a pass, ready to run: `sh` sets the umask and execs cargo
/// with the pass's environment and nothing else from the host's.
fn cargo_command(
    pass: &Pass,
    package: &str,
    kind: &str,
    name: &str,
    epoch: SourceDateEpoch,
) -> Result<Command> {
    let host = HostPaths::discover(&pass.source)?;
    let remaps = remaps(&host, pass);
    let mut command = Command::new("sh");
    command
        .args(["-c", "umask \"$0\" && exec \"$@\"", pass.umask, "cargo"])
        .args(["build", "--locked", "--release", "--target", MUSL_TARGET])
        .args(["--message-format=json-render-diagnostics", "-p", package])
        .arg(format!("--{kind}"))
        .arg(name)
        .current_dir(&pass.source)
        .env_clear();
    for (key, value) in std::env::vars_os() {
        let Some(var) = key.to_str() else { continue };
        if PASSED_THROUGH.contains(&var)
            || PASSED_THROUGH_PREFIXES.iter().any(|p| var.starts_with(p))
        {
            command.env(&key, value);
        }
    }
    let mut path = host.cargo_bin_dir.into_os_string();
    path.push(":");
    path.push(BUILD_PATH);
    let target_env = MUSL_TARGET.replace('-', "_");
    let cflags = c_flags(&remaps)?;
    command
        .env("PATH", path)
        .env("CARGO_HOME", &host.cargo_home)
        .env("CARGO_TARGET_DIR", pass.target_dir())
        .env("CARGO_ENCODED_RUSTFLAGS", encoded_rustflags(&remaps))
        .env("CARGO_INCREMENTAL", "0")
        .env("CARGO_TERM_COLOR", "never")
        .env(format!("CFLAGS_{target_env}"), &cflags)
        .env(format!("CXXFLAGS_{target_env}"), &cflags)
        .env("SOURCE_DATE_EPOCH", epoch.secs().to_string())
        .env("TZ", pass.tz)
        .env("LC_ALL", pass.locale)
        .env("LANG", pass.locale)
        .env("TMPDIR", pass.tmp_dir());
    Ok(command)
}

/// Builds one executable target and returns its path (from cargo's JSON messages).
fn build_target(
    pass: &Pass,
    package: &str,
    kind: &str,
    name: &str,
    epoch: SourceDateEpoch,
) -> Result<PathBuf> {
    let mut command = cargo_command(pass, package, kind, name, epoch)?;
    command.stdout(Stdio::piped()).stderr(Stdio::inherit());
    let mut child = command.spawn().context("cannot start cargo")?;
    let stdout = child.stdout.take().context("cargo's stdout is not piped")?;
    let mut found = None;
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line?;
        let Ok(message) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        let target = &message["target"];
        if message["reason"] == "compiler-artifact"
            && target["name"] == name
            && target["kind"]
                .as_array()
                .is_some_and(|kinds| kinds.iter().any(|k| k == kind))
            && let Some(path) = message["executable"].as_str()
        {
            found = Some(PathBuf::from(path));
        }
    }
    let status = child.wait()?;
    ensure!(
        status.success(),
        "[{}] cargo build of {kind} {name} failed ({status}) in {}",
        pass.name,
        pass.source.display()
    );
    let path =
        found.with_context(|| format!("cargo reported no executable for {kind} `{name}`"))?;
    let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    ensure!(
        !crate::init::has_interpreter(&bytes)?,
        "{} asks for a dynamic loader (PT_INTERP); an enclave binary must be static",
        path.display()
    );
    Ok(path)
}

/// Builds `ccc-init` and the application for one pass and returns their paths (inside the
/// pass's target directory), after checking both are static executables.
///
/// They are two cargo invocations on purpose: built together, cargo would unify the features
/// of their shared dependencies (libc, ...), and the init's bytes — hence PCR1 — would depend
/// on which application is built next to it.
///
/// # Errors
/// A build fails, cargo reports no executable, or one is not static.
pub(crate) fn compile(pass: &Pass, app: &AppSpec, epoch: SourceDateEpoch) -> Result<Binaries> {
    let started = Instant::now();
    std::fs::create_dir_all(pass.tmp_dir())?;
    eprintln!(
        "release: [{}] cargo build --release --target {MUSL_TARGET}: ccc-init, then {} {} (in \
         {}, umask {}, TZ {}, LC_ALL {})",
        pass.name,
        app.kind(),
        app.name(),
        pass.source.display(),
        pass.umask,
        pass.tz,
        pass.locale
    );
    let binaries = Binaries {
        init: build_target(pass, INIT_PACKAGE, "bin", INIT_PACKAGE, epoch)?,
        app: build_target(pass, &app.package, app.kind(), app.name(), epoch)?,
    };
    eprintln!(
        "release: [{}] built in {}",
        pass.name,
        elapsed(started.elapsed())
    );
    Ok(binaries)
}

/// Versions of the tools whose behaviour decides the binaries' bytes, as `(name, version)`.
/// A tool that cannot be asked is recorded as `unknown` (the manifest says what was used; it
/// does not gate the build).
pub(crate) fn tool_versions(root: &Path) -> Vec<(&'static str, String)> {
    let first_line = |program: &str, args: &[&str]| -> String {
        Command::new(program)
            .args(args)
            .current_dir(root)
            .env_remove("RUSTUP_TOOLCHAIN")
            .stdin(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| "unknown".to_owned())
    };
    vec![
        ("rustc", first_line("rustc", &["-V"])),
        ("cargo", first_line("cargo", &["-V"])),
        // The musl target links with the host's C compiler driver and linker.
        ("cc", first_line("cc", &["--version"])),
        ("ld", first_line("ld", &["--version"])),
        (
            "musl",
            first_line("dpkg-query", &["-W", "-f=${Version}", "musl-dev"]),
        ),
        (
            "os",
            std::fs::read_to_string("/etc/debian_version")
                .map(|v| format!("Debian {}", v.trim()))
                .unwrap_or_else(|_| "unknown".to_owned()),
        ),
    ]
}

/// `rustc -vV` in `root` (the pinned toolchain's full version block).
///
/// # Errors
/// rustc cannot run.
pub(crate) fn rustc_verbose_version(root: &Path) -> Result<String> {
    let out = Command::new("rustc")
        .arg("-vV")
        .current_dir(root)
        .env_remove("RUSTUP_TOOLCHAIN")
        .output()
        .context("cannot run `rustc -vV`")?;
    ensure!(out.status.success(), "`rustc -vV` failed");
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaps_put_the_most_specific_directory_last() {
        let host = HostPaths {
            sysroot: "/root/.rustup/toolchains/1.95.0-x86_64-unknown-linux-gnu".into(),
            cargo_home: "/root/.cargo".into(),
            cargo_bin_dir: "/root/.cargo/bin".into(),
        };
        let pass = Pass {
            name: "first",
            source: "/src/ccc".into(),
            dir: "/src/ccc/target/ccc-release/first".into(),
            umask: "022",
            tz: "UTC0",
            locale: "C",
        };
        let remaps = remaps(&host, &pass);
        let flags = encoded_rustflags(&remaps);
        let flags: Vec<&str> = flags.to_str().unwrap().split('\x1f').collect();
        assert_eq!(
            flags,
            [
                "--remap-path-prefix=/root/.rustup/toolchains/1.95.0-x86_64-unknown-linux-gnu=/rust-toolchain",
                "--remap-path-prefix=/root/.cargo=/cargo",
                "--remap-path-prefix=/src/ccc=/ccc",
                "--remap-path-prefix=/src/ccc/target/ccc-release/first/target=/ccc-target",
            ]
        );
        assert_eq!(
            c_flags(&remaps).unwrap().split(' ').nth(3),
            Some("-ffile-prefix-map=/src/ccc/target/ccc-release/first/target=/ccc-target")
        );
        let spaced = vec![(PathBuf::from("/a b"), "/x")];
        assert!(c_flags(&spaced).is_err());
    }

    #[test]
    fn app_names() {
        let template = AppSpec::template();
        assert!(template.is_template());
        assert_eq!(template.name(), "ccc-template-enclave");
        assert_eq!(template.kind(), "bin");
        let probe = AppSpec {
            package: "ccc-init".into(),
            target: AppTarget::Example("nsm_probe".into()),
        };
        assert!(!probe.is_template());
        assert_eq!((probe.name(), probe.kind()), ("nsm_probe", "example"));
    }

    /// A throwaway repository: commits with fixed dates, then the facts read back.
    #[test]
    fn git_facts_ignore_the_release_directory() {
        let dir = std::env::temp_dir().join(format!("ccc-release-git-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("release/0.1.0")).unwrap();
        let run = |args: &[&str], date: &str| {
            let status = Command::new("git")
                .args(["-c", "user.name=t", "-c", "user.email=t@t"])
                .args(args)
                .current_dir(&dir)
                .env("GIT_AUTHOR_DATE", date)
                .env("GIT_COMMITTER_DATE", date)
                .stdout(Stdio::null())
                .status()
                .unwrap();
            assert!(status.success(), "git {args:?}");
        };
        run(&["init", "-q"], "");
        std::fs::write(dir.join("a.rs"), "fn main() {}\n").unwrap();
        run(&["add", "a.rs"], "");
        run(&["commit", "-q", "-m", "code"], "@1700000000 +0000");
        std::fs::write(dir.join("release/0.1.0/SHA256SUMS"), "x\n").unwrap();
        run(&["add", "release"], "");
        run(&["commit", "-q", "-m", "publish"], "@1800000000 +0000");

        let state = git_state(&dir).unwrap();
        assert_eq!(state.epoch, SourceDateEpoch::from_secs(1_700_000_000));
        assert!(!state.dirty);
        // The recorded commit is the one that changed the code, not the publishing one.
        let head = Command::new("git")
            .args(["rev-parse", "HEAD~1"])
            .current_dir(&dir)
            .output()
            .unwrap();
        assert_eq!(state.commit, String::from_utf8(head.stdout).unwrap().trim());
        // A changed published file is not a changed input.
        std::fs::write(dir.join("release/0.1.0/SHA256SUMS"), "y\n").unwrap();
        assert!(!git_state(&dir).unwrap().dirty);
        std::fs::write(dir.join("a.rs"), "fn main() { }\n").unwrap();
        let state = git_state(&dir).unwrap();
        assert!(state.dirty);
        assert_eq!(state.changes, [" M a.rs"]);

        // The export holds the working-tree content of tracked inputs only.
        std::fs::write(dir.join("untracked.rs"), "").unwrap();
        let export = dir.join("export");
        assert_eq!(export_tracked(&dir, &export).unwrap(), 1);
        assert_eq!(
            std::fs::read_to_string(export.join("a.rs")).unwrap(),
            "fn main() { }\n"
        );
        assert!(!export.join("untracked.rs").exists());
        assert!(!export.join("release").exists());
        assert!(export_tracked(&dir, &export).is_err(), "must be fresh");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
