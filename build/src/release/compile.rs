//! The compile step of a release: `ccc-init` (in CCC's workspace) and the application (in the
//! project's), built for musl in release mode with `--locked`, in a dedicated target
//! directory, with every build path remapped and an environment that holds only what the
//! build needs — so two builds of the same sources in different directories give the same
//! bytes, wherever the project, CCC, the toolchain or `CARGO_HOME` are.

use ccc_eif::SourceDateEpoch;
use std::ffi::OsString;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::error::{Error, IoContext, Result, ensure};
use crate::host::MUSL_TARGET;
use crate::progress::elapsed;
use crate::project::AppSpec;

/// What the build paths are remapped to in the binaries (`--remap-path-prefix` for rustc,
/// `-ffile-prefix-map` for C compilers). rustc and gcc both let the option given last win when
/// several prefixes match, so the most specific directory comes last.
const REMAPPED_SYSROOT: &str = "/rust-toolchain";
const REMAPPED_CARGO_HOME: &str = "/cargo";
/// The workspace cargo builds in (CCC's for the init and the template; the project's for its
/// application).
const REMAPPED_WORKSPACE: &str = "/ccc";
/// CCC's sources when they are a dependency outside the workspace being built (a git
/// checkout in `CARGO_HOME`, or a path).
const REMAPPED_CCC_SOURCE: &str = "/ccc-source";
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

/// One compile of the enclave binaries: which sources, which directories, which process
/// settings. The two passes of a release differ in everything here except the sources' content.
#[derive(Debug, Clone)]
pub(crate) struct Pass {
    /// `first` or `second` (for messages and directory names).
    pub(crate) name: &'static str,
    /// The project's workspace root to build.
    pub(crate) source: PathBuf,
    /// CCC's workspace root (the init is built there): `source` itself when the project is
    /// CCC, otherwise the CCC sources the project depends on.
    pub(crate) ccc: PathBuf,
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

/// Which workspace a cargo invocation builds in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Workspace {
    /// CCC's (the init).
    Ccc,
    /// The project's (the application).
    Project,
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
            // The toolchain rust-toolchain.toml pins, not one `cargo +x` chose for the tool.
            .env_remove("RUSTUP_TOOLCHAIN")
            .output()
            .map_err(|e| Error::program("rustc --print sysroot", format!("cannot start: {e}")))?;
        ensure!(
            out.status.success(),
            Error::program(
                "rustc --print sysroot",
                format!(
                    "failed in {}: {}",
                    source.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                )
            )
        );
        let sysroot = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let cargo_home = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| home.map(|h| h.join(".cargo")))
            .ok_or_else(|| Error::Prerequisite {
                problem: "CARGO_HOME or HOME in the environment".to_owned(),
            })?;
        let cargo = find_in_path("cargo").ok_or_else(|| Error::Prerequisite {
            problem: "`cargo` in PATH".to_owned(),
        })?;
        let cargo_bin_dir = cargo.parent().map(Path::to_path_buf).unwrap_or_default();
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

/// The remappings of a build in `workspace`, most specific last (see [`REMAPPED_WORKSPACE`]).
/// CCC's sources get their own prefix when they are outside the workspace being built; when
/// they sit inside it (or are it), the workspace's covers them.
fn remaps(host: &HostPaths, pass: &Pass, workspace: Workspace) -> Vec<(PathBuf, &'static str)> {
    let mut remaps = vec![
        (host.sysroot.clone(), REMAPPED_SYSROOT),
        (host.cargo_home.clone(), REMAPPED_CARGO_HOME),
    ];
    match workspace {
        Workspace::Ccc => remaps.push((pass.ccc.clone(), REMAPPED_WORKSPACE)),
        Workspace::Project if pass.ccc.starts_with(&pass.source) => {
            remaps.push((pass.source.clone(), REMAPPED_WORKSPACE));
        }
        Workspace::Project if pass.source.starts_with(&pass.ccc) => {
            // A project inside a CCC checkout: the more specific project prefix goes last.
            remaps.push((pass.ccc.clone(), REMAPPED_CCC_SOURCE));
            remaps.push((pass.source.clone(), REMAPPED_WORKSPACE));
        }
        Workspace::Project => {
            remaps.push((pass.ccc.clone(), REMAPPED_CCC_SOURCE));
            remaps.push((pass.source.clone(), REMAPPED_WORKSPACE));
        }
    }
    remaps.push((pass.target_dir(), REMAPPED_TARGET_DIR));
    remaps
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
        let from = from.to_str().ok_or_else(|| {
            Error::project(format!(
                "the build path {} is not UTF-8, which CFLAGS cannot carry",
                from.display()
            ))
        })?;
        ensure!(
            !from.contains(char::is_whitespace),
            Error::project(format!(
                "the build path `{from}` contains whitespace, which CFLAGS cannot carry; build \
                 from a directory without spaces"
            ))
        );
        flags.push(format!("-ffile-prefix-map={from}={to}"));
    }
    Ok(flags.join(" "))
}

/// The `cargo build` of one target in a pass, ready to run: `sh` sets the umask and execs cargo
/// with the pass's environment and nothing else from the host's.
fn cargo_command(
    pass: &Pass,
    workspace: Workspace,
    app: &AppSpec,
    epoch: SourceDateEpoch,
) -> Result<Command> {
    let dir = match workspace {
        Workspace::Ccc => &pass.ccc,
        Workspace::Project => &pass.source,
    };
    let host = HostPaths::discover(dir)?;
    let remaps = remaps(&host, pass, workspace);
    let mut command = Command::new("sh");
    command
        .args(["-c", "umask \"$0\" && exec \"$@\"", pass.umask, "cargo"])
        .args(["build", "--locked", "--release", "--target", MUSL_TARGET])
        .args([
            "--message-format=json-render-diagnostics",
            "-p",
            &app.package,
        ])
        .arg(format!("--{}", app.kind()))
        .arg(app.name())
        .current_dir(dir)
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
    workspace: Workspace,
    app: &AppSpec,
    epoch: SourceDateEpoch,
) -> Result<PathBuf> {
    let (kind, name) = (app.kind(), app.name());
    let what = format!("[{}] cargo build of {kind} {name}", pass.name);
    let mut command = cargo_command(pass, workspace, app, epoch)?;
    command.stdout(Stdio::piped()).stderr(Stdio::inherit());
    let mut child = command
        .spawn()
        .map_err(|e| Error::program(&what, format!("cannot start cargo: {e}")))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| Error::program(&what, "cargo's stdout is not piped"))?;
    let mut found = None;
    for line in std::io::BufReader::new(stdout).lines() {
        let line =
            line.map_err(|e| Error::program(&what, format!("cannot read cargo's output: {e}")))?;
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
    let status = child
        .wait()
        .map_err(|e| Error::program(&what, format!("cannot wait for cargo: {e}")))?;
    ensure!(
        status.success(),
        Error::program(
            &what,
            format!(
                "failed ({status}) in {}",
                match workspace {
                    Workspace::Ccc => pass.ccc.display(),
                    Workspace::Project => pass.source.display(),
                }
            )
        )
    );
    let path = found.ok_or_else(|| Error::program(&what, "cargo reported no executable"))?;
    let bytes = std::fs::read(&path).io("read", &path)?;
    let dynamic =
        crate::init::has_interpreter(&bytes).map_err(|e| e.context(path.display().to_string()))?;
    ensure!(
        !dynamic,
        Error::invalid(
            path.display().to_string(),
            "asks for a dynamic loader (PT_INTERP); an enclave binary must be static"
        )
    );
    Ok(path)
}

/// Builds `ccc-init` and the application for one pass and returns their paths (inside the
/// pass's target directory), after checking both are static executables.
///
/// They are two cargo invocations on purpose, and the init's in CCC's own workspace with CCC's
/// `Cargo.lock`: built together, cargo would unify the features of their shared dependencies
/// (libc, ...), and the init's bytes — hence PCR1 — would depend on which application is built
/// next to it. So every project built with the same CCC has the same init, and PCR1.
///
/// # Errors
/// A build fails, cargo reports no executable, or one is not static.
pub(crate) fn compile(pass: &Pass, app: &AppSpec, epoch: SourceDateEpoch) -> Result<Binaries> {
    let started = Instant::now();
    let tmp = pass.tmp_dir();
    std::fs::create_dir_all(&tmp).io("create", &tmp)?;
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
    let init = AppSpec::bin(crate::init::PACKAGE, crate::init::PACKAGE);
    let binaries = Binaries {
        init: build_target(pass, Workspace::Ccc, &init, epoch)?,
        app: build_target(pass, Workspace::Project, app, epoch)?,
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
    let package = |name: &str| first_line("dpkg-query", &["-W", "-f=${Version}", name]);
    let mut tools = vec![
        ("rustc", first_line("rustc", &["-V"])),
        ("cargo", first_line("cargo", &["-V"])),
        // The musl target links with the host's C compiler driver and linker.
        ("cc", first_line("cc", &["--version"])),
        ("ld", first_line("ld", &["--version"])),
        ("musl", package("musl-dev")),
        (
            "os",
            std::fs::read_to_string("/etc/debian_version")
                .map(|v| format!("Debian {}", v.trim()))
                .unwrap_or_else(|_| "unknown".to_owned()),
        ),
    ];
    // The kernel build's packages: inputs of PCR1 whenever the kernel is built (a cache miss).
    tools.extend(
        super::host_tools::KERNEL_PACKAGES
            .iter()
            .map(|&name| (name, package(name))),
    );
    tools
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
        .map_err(|e| Error::program("rustc -vV", format!("cannot start: {e}")))?;
    ensure!(
        out.status.success(),
        Error::program("rustc -vV", format!("failed ({})", out.status))
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> HostPaths {
        HostPaths {
            sysroot: "/root/.rustup/toolchains/1.95.0-x86_64-unknown-linux-gnu".into(),
            cargo_home: "/root/.cargo".into(),
            cargo_bin_dir: "/root/.cargo/bin".into(),
        }
    }

    fn flags(remaps: &[(PathBuf, &'static str)]) -> Vec<String> {
        encoded_rustflags(remaps)
            .to_str()
            .unwrap()
            .split('\x1f')
            .map(str::to_owned)
            .collect()
    }

    /// CCC's own release: the remaps (and so the template's bytes) are what they were before
    /// projects existed.
    #[test]
    fn remaps_put_the_most_specific_directory_last() {
        let pass = Pass {
            name: "first",
            source: "/src/ccc".into(),
            ccc: "/src/ccc".into(),
            dir: "/src/ccc/target/ccc-release/first".into(),
            umask: "022",
            tz: "UTC0",
            locale: "C",
        };
        let expected = [
            "--remap-path-prefix=/root/.rustup/toolchains/1.95.0-x86_64-unknown-linux-gnu=/rust-toolchain",
            "--remap-path-prefix=/root/.cargo=/cargo",
            "--remap-path-prefix=/src/ccc=/ccc",
            "--remap-path-prefix=/src/ccc/target/ccc-release/first/target=/ccc-target",
        ];
        for workspace in [Workspace::Ccc, Workspace::Project] {
            let remaps = remaps(&host(), &pass, workspace);
            assert_eq!(flags(&remaps), expected);
            assert_eq!(
                c_flags(&remaps).unwrap().split(' ').nth(3),
                Some("-ffile-prefix-map=/src/ccc/target/ccc-release/first/target=/ccc-target")
            );
        }
        let spaced = vec![(PathBuf::from("/a b"), "/x")];
        assert!(c_flags(&spaced).is_err());
    }

    /// A project that depends on CCC from git: the init builds in CCC's workspace exactly as
    /// CCC's own release does (so its bytes are the template's); the application sees CCC's
    /// sources under `/ccc-source`, after (more specific than) `CARGO_HOME`.
    #[test]
    fn a_project_remaps_ccc_wherever_it_is() {
        let checkout = "/root/.cargo/git/checkouts/ccc-0123456789abcdef/0a1b2c3";
        let pass = Pass {
            name: "first",
            source: "/home/me/acme".into(),
            ccc: checkout.into(),
            dir: "/home/me/acme/target/ccc-release/first".into(),
            umask: "022",
            tz: "UTC0",
            locale: "C",
        };
        let init = flags(&remaps(&host(), &pass, Workspace::Ccc));
        assert_eq!(init[2], format!("--remap-path-prefix={checkout}=/ccc"));
        assert_eq!(init.len(), 4);
        let app = flags(&remaps(&host(), &pass, Workspace::Project));
        assert_eq!(
            app[1..],
            [
                "--remap-path-prefix=/root/.cargo=/cargo".to_owned(),
                format!("--remap-path-prefix={checkout}=/ccc-source"),
                "--remap-path-prefix=/home/me/acme=/ccc".to_owned(),
                "--remap-path-prefix=/home/me/acme/target/ccc-release/first/target=/ccc-target"
                    .to_owned(),
            ]
        );
        // A project inside a CCC checkout: the project's prefix is the more specific one.
        let nested = Pass {
            source: "/src/ccc/examples/acme".into(),
            ccc: "/src/ccc".into(),
            ..pass
        };
        let app = flags(&remaps(&host(), &nested, Workspace::Project));
        assert_eq!(app[2], "--remap-path-prefix=/src/ccc=/ccc-source");
        assert_eq!(app[3], "--remap-path-prefix=/src/ccc/examples/acme=/ccc");
    }
}
