//! Where this `cargo-ccc` came from — which CCC it is — and the check that a project is built
//! with the same CCC it depends on.
//!
//! `cargo install` records every installed binary's source in `.crates2.json` of the install
//! root (the directory above `bin/`): `git+URL?rev=R#COMMIT` for a git install,
//! `path+file:///DIR` for `--path`. A binary that was not installed (a test build) falls back
//! to the checkout it was built from.

use anyhow::{Result, bail};
use ccc_build::project::{CccOrigin, Project};
use std::path::{Path, PathBuf};

/// The package's name as `.crates2.json` keys it.
const PACKAGE: &str = "cargo-ccc";

/// Files every CCC checkout holds (relative to its root).
const CCC_MARKERS: [&str; 3] = ["init/Cargo.toml", "kernel-config/source.json", "Cargo.lock"];

/// Where this binary's CCC is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Origin {
    /// Installed from a git repository at a commit.
    Git {
        /// The repository URL, as given to `cargo install --git`.
        url: String,
        /// The exact commit.
        commit: String,
    },
    /// Installed from (or built in) a CCC checkout.
    Path(PathBuf),
}

impl Origin {
    /// This binary's origin: its install record, else the checkout it was built from.
    pub(crate) fn current() -> Option<Self> {
        let exe = std::env::current_exe().ok()?;
        let install_root = exe.parent()?.parent()?;
        if let Ok(text) = std::fs::read_to_string(install_root.join(".crates2.json"))
            && let Some(origin) = from_crates2(&text)
        {
            return Some(origin);
        }
        let built_in = Path::new(env!("CARGO_MANIFEST_DIR")).parent()?;
        is_ccc_checkout(built_in).then(|| Self::Path(built_in.to_path_buf()))
    }
}

/// True when `dir` looks like CCC's workspace.
pub(crate) fn is_ccc_checkout(dir: &Path) -> bool {
    CCC_MARKERS.iter().all(|m| dir.join(m).is_file())
}

/// This package's origin in the text of a `.crates2.json`.
fn from_crates2(text: &str) -> Option<Origin> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    let installs = value.get("installs")?.as_object()?;
    installs.keys().find_map(|key| {
        let (name, rest) = key.split_once(' ')?;
        if name != PACKAGE {
            return None;
        }
        let source = rest.rsplit_once('(')?.1.strip_suffix(')')?;
        if let Some(git) = source.strip_prefix("git+") {
            let (url, commit) = git.rsplit_once('#')?;
            let url = url.split_once('?').map_or(url, |(u, _)| u);
            return Some(Origin::Git {
                url: url.to_owned(),
                commit: commit.to_owned(),
            });
        }
        let dir = PathBuf::from(source.strip_prefix("path+file://")?);
        // The package directory (…/cargo-ccc); CCC's root is its parent.
        Some(Origin::Path(dir.parent()?.to_path_buf()))
    })
}

/// HEAD of the git checkout at `dir`.
fn head(dir: &Path) -> Option<String> {
    ccc_build::git::head(dir).map(|(commit, _)| commit)
}

/// Refuses to build a project whose CCC is not this `cargo-ccc`'s: the recipe (command line,
/// layout, remapping) is this binary's, while the init and the kernel come from the project's
/// CCC, so a mix would publish an image nobody can rebuild with either version.
///
/// # Errors
/// The versions differ, or both commits are known and differ; the message says which
/// `cargo install` (or dependency change) fixes it.
pub(crate) fn check_matches(project: &Project) -> Result<()> {
    let ours = env!("CARGO_PKG_VERSION");
    let ccc = &project.ccc;
    let reinstall = match &ccc.origin {
        CccOrigin::Git { url, commit } => {
            format!("cargo install --locked --force --git {url} --rev {commit} cargo-ccc")
        }
        CccOrigin::Path | CccOrigin::Workspace => format!(
            "cargo install --locked --force --path {}",
            ccc.root.join("cargo-ccc").display()
        ),
    };
    if ccc.version != ours {
        bail!(
            "this project is built with CCC {} ({}), but this cargo-ccc is CCC {ours}: install \
             the matching one (`{reinstall}`), or move the project's ccc-* dependencies to CCC \
             {ours}",
            ccc.version,
            ccc.root.display()
        );
    }
    let theirs = ccc.commit().map(|(commit, _)| commit);
    let mine = match Origin::current() {
        Some(Origin::Git { commit, .. }) => Some(commit),
        Some(Origin::Path(dir)) => head(&dir),
        None => None,
    };
    match (theirs, mine) {
        (Some(theirs), Some(mine)) if theirs != mine => bail!(
            "this project is built with CCC at commit {theirs} ({}), but this cargo-ccc is CCC \
             at commit {mine}: install the matching one (`{reinstall}`), or move the project's \
             ccc-* dependencies to commit {mine} (then `cargo update`)",
            ccc.root.display()
        ),
        (Some(_), Some(_)) => {}
        _ => eprintln!(
            "cargo-ccc: note: cannot tell whether this cargo-ccc is the same CCC commit as the \
             project's ({}); the manifest records both versions",
            ccc.root.display()
        ),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_records_name_the_source() {
        let commit = "0123456789abcdef0123456789abcdef01234567";
        let git = format!(
            r#"{{"installs":{{"vhost-device-vsock 0.3.0 (registry+https://github.com/rust-lang/crates.io-index)":{{}},
            "cargo-ccc 0.1.0 (git+https://example.com/ccc.git?rev=0123#{commit})":{{"bins":["cargo-ccc"]}}}}}}"#
        );
        assert_eq!(
            from_crates2(&git),
            Some(Origin::Git {
                url: "https://example.com/ccc.git".into(),
                commit: commit.into()
            })
        );
        let path = r#"{"installs":{"cargo-ccc 0.1.0 (path+file:///src/ccc/cargo-ccc)":{}}}"#;
        assert_eq!(
            from_crates2(path),
            Some(Origin::Path(PathBuf::from("/src/ccc")))
        );
        let other = r#"{"installs":{"ripgrep 14.0.0 (registry+https://x)":{}}}"#;
        assert_eq!(from_crates2(other), None);
        assert_eq!(from_crates2("not json"), None);
    }

    /// A test binary is not installed: its origin is the checkout it was built in (this one).
    #[test]
    fn an_uninstalled_binary_is_its_checkout() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        assert!(is_ccc_checkout(root));
        assert_eq!(Origin::current(), Some(Origin::Path(root.to_path_buf())));
    }
}
