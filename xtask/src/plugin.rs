//! CI step `plugin`: CCC used from a cargo project outside this workspace, as the README tells
//! a team to — the README's "Build your own enclave" block, run as written from this checkout
//! (its `${EDITOR:-vi} enclave/src/app.rs` line is a real change to the application) — and
//! then the project's reproducibility across paths:
//!
//! 1. `cargo install` of cargo-ccc, `cargo ccc new acme` in a fresh temporary directory, an
//!    app change (see [`EDIT_APP`]), a commit, `cargo ccc release --version 0.1.0` (path A), `cargo ccc emulate`,
//!    `cargo test` — the block itself;
//! 2. the project cloned to path B (another parent directory, of another length), built with
//!    another cache location (`CCC_CACHE_DIR`, the kernel and tools copied there): `cargo ccc
//!    release --version 0.1.0 --out DIR` must give the EIF of path A byte for byte (and the
//!    same published files);
//! 3. `cargo ccc emulate --scenario tampered` from path B: KMS must refuse.

use anyhow::{Context, Result, bail, ensure};
use ccc_build::cache::Cache;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The README line before the block the step runs.
const MARKER: &str = "<!-- ci: plugin -->";

/// The project the README creates.
const NAME: &str = "acme";

/// The release version the README publishes.
const VERSION: &str = "0.1.0";

/// The second path's parent directory: a name of another length than the first's.
const PATH_B: &str = "a-second-and-much-longer-parent-directory";

/// The shell block after [`MARKER`] in `readme`.
///
/// # Errors
/// No marker, or no `sh` block right after it.
pub(crate) fn readme_block(readme: &str) -> Result<String> {
    let after = readme
        .split_once(MARKER)
        .map(|(_, rest)| rest)
        .with_context(|| format!("README.md has no `{MARKER}` line"))?;
    let body = after
        .trim_start()
        .strip_prefix("```sh\n")
        .with_context(|| format!("README.md: no ```sh block right after `{MARKER}`"))?;
    let (block, _) = body
        .split_once("\n```")
        .context("README.md: the plugin block is not closed")?;
    Ok(block.to_owned() + "\n")
}

/// The application change the README's `${EDITOR:-vi} enclave/src/app.rs` makes in CI: one
/// step name of `seal` (a string in the binary, so PCR2 and PCR0 change; the operations and
/// their tests, which the project's `cargo test` and `cargo ccc emulate` run, stay as they
/// are), checked to have happened.
const EDIT_APP: &str = "#!/bin/sh\nset -e\n\
    sed -i 's/\"seal: AES-256-GCM\"/\"seal: AES-256-GCM (acme)\"/' \"$1\"\n\
    grep -q '\"seal: AES-256-GCM (acme)\"' \"$1\"\n";

/// Runs `script` with bash (`-euxo pipefail`) in `dir` with `env`.
fn bash(script: &str, dir: &Path, env: &[(&str, String)]) -> Result<()> {
    let status = Command::new("bash")
        .args(["-euxo", "pipefail", "-c", script])
        .current_dir(dir)
        .envs(env.iter().map(|(k, v)| (*k, v)))
        .status()
        .context("cannot run bash")?;
    ensure!(status.success(), "`{}` failed ({status})", script.trim());
    Ok(())
}

/// Copies the cached kernels and emulation tools of `from` into a fresh cache `to` (what a
/// second machine or user with its own cache directory would have built).
fn seed_cache(from: &Cache, to: &Path) -> Result<()> {
    let copy = |kind: &str, keep: &dyn Fn(&Path) -> bool| -> Result<()> {
        let dir = from.dir(kind);
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?
        {
            let path = entry?.path();
            if path.is_dir() && keep(&path) {
                let target = to.join(kind).join(path.file_name().unwrap_or_default());
                std::fs::create_dir_all(to.join(kind))?;
                let status = Command::new("cp")
                    .arg("-a")
                    .arg(&path)
                    .arg(&target)
                    .status()?;
                ensure!(status.success(), "cannot copy {}", path.display());
            }
        }
        Ok(())
    };
    copy("kernel", &|p| p.join("bzImage").is_file())?;
    copy("tools", &|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("qemu-") || n.starts_with("vhost-device-vsock-"))
    })
}

/// The CI step.
///
/// # Errors
/// A command of the README block fails, the two releases differ, or an emulation fails.
pub(crate) fn run() -> Result<()> {
    let root = crate::workspace_root();
    let readme = std::fs::read_to_string(root.join("README.md"))?;
    let block = readme_block(&readme)?;
    let scratch = std::env::temp_dir().join(format!("ccc-plugin-{}", std::process::id()));
    if scratch.exists() {
        std::fs::remove_dir_all(&scratch)?;
    }
    std::fs::create_dir_all(&scratch)?;
    ensure!(
        !scratch.starts_with(&root),
        "the scratch directory must be outside the workspace"
    );
    let install = scratch.join("install");
    let editor = scratch.join("edit-app");
    std::fs::write(&editor, EDIT_APP)?;
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let tmp = scratch.join("a");
    std::fs::create_dir_all(&tmp)?;
    let path = format!(
        "{}:{}",
        install.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut env = vec![
        ("CARGO_INSTALL_ROOT", install.display().to_string()),
        ("PATH", path),
        ("TMPDIR", tmp.display().to_string()),
        ("EDITOR", editor.display().to_string()),
        // Reuse this checkout's compiled dependencies (a build cache: what is built is the same).
        (
            "CARGO_TARGET_DIR",
            root.join("target").display().to_string(),
        ),
        ("GIT_AUTHOR_NAME", "ccc ci".to_owned()),
        ("GIT_AUTHOR_EMAIL", "ci@ccc.invalid".to_owned()),
        ("GIT_COMMITTER_NAME", "ccc ci".to_owned()),
        ("GIT_COMMITTER_EMAIL", "ci@ccc.invalid".to_owned()),
    ];

    // 1. The README, as written, from this checkout.
    eprintln!(
        "plugin: running README.md's block from {}:\n{block}",
        root.display()
    );
    // Each traced command with the seconds since the block started (bash ignores PS4 from the
    // environment when it runs as root, so it is set in front of the block).
    bash(&format!("PS4='+ [${{SECONDS}}s] '\n{block}"), &root, &env)?;
    let created: Vec<PathBuf> = std::fs::read_dir(&tmp)?
        .filter_map(Result::ok)
        .map(|e| e.path().join(NAME))
        .filter(|p| p.join("Cargo.toml").is_file())
        .collect();
    let [project_a] = created.as_slice() else {
        bail!(
            "the README block made {} `{NAME}` projects under {}, expected one",
            created.len(),
            tmp.display()
        );
    };
    let eif = format!("{NAME}-{VERSION}.eif");
    let release_a = project_a.join("release").join(VERSION);
    ensure!(
        release_a.join(&eif).is_file(),
        "no {eif} in {}",
        release_a.display()
    );

    // 2. The same commit from another path, with another cache location.
    bash(
        "git add release && git commit -qm 'acme: release 0.1.0'",
        project_a,
        &env,
    )?;
    let parent_b = scratch.join(PATH_B);
    std::fs::create_dir_all(&parent_b)?;
    let project_b = parent_b.join(NAME);
    let status = Command::new("git")
        .args(["clone", "-q"])
        .arg(project_a)
        .arg(&project_b)
        .status()?;
    ensure!(status.success(), "git clone failed");
    let cache_b = scratch.join("cache-b");
    seed_cache(&Cache::from_env()?, &cache_b)?;
    env.push(("CCC_CACHE_DIR", cache_b.display().to_string()));
    let out_b = scratch.join("release-b");
    bash(
        &format!(
            "cargo ccc release --version {VERSION} --out {}",
            out_b.display()
        ),
        &project_b,
        &env,
    )?;
    let mut differing = Vec::new();
    for entry in std::fs::read_dir(&release_a)? {
        let name = entry?.file_name();
        if let Some(how) =
            ccc_build::release::first_difference(&release_a.join(&name), &out_b.join(&name))?
        {
            differing.push(format!("{}: {how}", name.to_string_lossy()));
        }
    }
    eprintln!(
        "plugin: release {VERSION} of {} and of {}: {}",
        project_a.display(),
        project_b.display(),
        if differing.is_empty() {
            "every published file identical".to_owned()
        } else {
            format!("DIFFERENT: {}", differing.join("; "))
        }
    );
    ensure!(
        differing.is_empty(),
        "the project's release depends on where it sits (or on the cache location): {}",
        differing.join("; ")
    );

    // 3. The tampered scenario from path B.
    bash("cargo ccc emulate --scenario tampered", &project_b, &env)?;
    std::fs::remove_dir_all(&scratch)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The block the step runs is the README's, and it has the steps the step relies on:
    /// install from this checkout, a project outside it, the app change, a commit, the
    /// release, the emulation and the project's tests.
    #[test]
    fn the_readme_block_is_what_the_step_runs() {
        let readme = std::fs::read_to_string(crate::workspace_root().join("README.md")).unwrap();
        let block = readme_block(&readme).unwrap();
        let commands: Vec<&str> = block
            .lines()
            .map(|l| l.split(" #").next().unwrap_or_default().trim())
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        assert_eq!(
            commands,
            [
                "cargo install --locked --path cargo-ccc",
                "cd \"$(mktemp -d)\"",
                "cargo ccc new acme && cd acme",
                "${EDITOR:-vi} enclave/src/app.rs",
                "git add -A && git commit -qm \"acme: first enclave\"",
                "cargo ccc release --version 0.1.0",
                "cargo ccc emulate",
                "cargo test",
            ]
        );
        assert!(readme_block("no marker").is_err());
        assert!(readme_block(&format!("{MARKER}\ntext")).is_err());
    }

    /// The CI editor changes the application, and fails loudly when the line it changes is
    /// gone (so a template change cannot turn the step into a release of the unchanged app).
    #[test]
    fn the_ci_edit_changes_the_app() {
        let dir = std::env::temp_dir().join(format!("ccc-plugin-edit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("edit");
        std::fs::write(&script, EDIT_APP).unwrap();
        let app = crate::workspace_root().join("enclave-template/enclave/src/app.rs");
        let copy = dir.join("app.rs");
        std::fs::copy(&app, &copy).unwrap();
        let status = Command::new("sh").arg(&script).arg(&copy).status().unwrap();
        assert!(status.success());
        let edited = std::fs::read_to_string(&copy).unwrap();
        assert_ne!(edited, std::fs::read_to_string(&app).unwrap());
        assert!(edited.contains("\"seal: AES-256-GCM (acme)\""));
        std::fs::write(&copy, "fn main() {}\n").unwrap();
        let status = Command::new("sh").arg(&script).arg(&copy).status().unwrap();
        assert!(!status.success());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
