//! `cargo ccc new NAME`: a standalone project in `./NAME` — the enclave application and the
//! parent from CCC's template (packages `NAME-enclave` and `NAME-parent`), their tests against
//! the NSM simulator and the KMS emulator, a README with the project's own commands, and a
//! workspace manifest that depends on this CCC: by git revision (when this `cargo-ccc` was
//! installed from git) or by path to a CCC checkout (when it was installed from one, or with
//! `--ccc-path`). CCC's shared dependency versions, lints, release profile, toolchain pin and
//! lock file come along, so the project builds with exactly what CCC is tested with.

use anyhow::{Context as _, Result, bail, ensure};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use toml_edit::{DocumentMut, InlineTable, Item, Table, Value, value};

use crate::origin::{self, Origin};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded.rs"));
}

/// Longest project name (it prefixes package names and names the image).
const MAX_NAME: usize = 40;

/// The template's package names, replaced by the project's.
const TEMPLATE_ENCLAVE: &str = "ccc-template-enclave";
const TEMPLATE_PARENT: &str = "ccc-template-parent";

/// Options of `cargo ccc new`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The project's name: its directory, the prefix of its packages (NAME-enclave,
    /// NAME-parent) and its image's name. Lowercase letters, digits and dashes.
    name: String,
    /// Depend on the CCC checkout at DIR by path (works offline). Default: the checkout this
    /// cargo-ccc was installed from, or its git repository and commit.
    #[arg(long, value_name = "DIR", conflicts_with = "ccc_git")]
    ccc_path: Option<PathBuf>,
    /// Depend on CCC from this git repository (with --ccc-rev).
    #[arg(long, value_name = "URL", requires = "ccc_rev")]
    ccc_git: Option<String>,
    /// The commit of --ccc-git to depend on.
    #[arg(long, value_name = "COMMIT", requires = "ccc_git")]
    ccc_rev: Option<String>,
}

/// How the project depends on CCC.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Dependency {
    /// `{ git = URL, rev = COMMIT }`.
    Git { url: String, rev: String },
    /// `{ path = "<checkout>/<crate>" }` (absolute).
    Path(PathBuf),
}

impl Dependency {
    fn describe(&self) -> String {
        match self {
            Self::Git { url, rev } => format!("{url} at commit {rev}"),
            Self::Path(dir) => format!("the checkout at {}", dir.display()),
        }
    }
}

/// Checks a project name.
fn check_name(name: &str) -> Result<()> {
    ensure!(
        !name.is_empty()
            && name.len() <= MAX_NAME
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && !name.ends_with('-')
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
        "`{name}` cannot name a project: use 1 to {MAX_NAME} lowercase letters, digits and \
         dashes, starting with a letter and not ending with a dash (it prefixes the package \
         names {name}-enclave and {name}-parent)"
    );
    Ok(())
}

/// The dependency the options (or this binary's origin) choose.
fn dependency(args: &Args) -> Result<Dependency> {
    if let Some(dir) = &args.ccc_path {
        let dir = std::fs::canonicalize(dir)
            .with_context(|| format!("--ccc-path {}: no such directory", dir.display()))?;
        ensure!(
            origin::is_ccc_checkout(&dir),
            "--ccc-path {}: not a CCC checkout (no init/, kernel-config/source.json or \
             Cargo.lock)",
            dir.display()
        );
        return Ok(Dependency::Path(dir));
    }
    if let (Some(url), Some(rev)) = (&args.ccc_git, &args.ccc_rev) {
        return Ok(Dependency::Git {
            url: url.clone(),
            rev: rev.clone(),
        });
    }
    match Origin::current() {
        Some(Origin::Git { url, commit }) => Ok(Dependency::Git { url, rev: commit }),
        Some(Origin::Path(dir)) if origin::is_ccc_checkout(&dir) => Ok(Dependency::Path(dir)),
        _ => bail!(
            "cannot tell where this cargo-ccc's CCC is (it was not installed with cargo \
             install): pass --ccc-path <a CCC checkout> or --ccc-git URL --ccc-rev COMMIT"
        ),
    }
}

/// `cargo ccc new`.
///
/// # Errors
/// A bad name, an existing directory, no CCC to depend on, a write failure, or cargo failing
/// to resolve the new workspace (its message says why).
pub(crate) fn run(args: &Args) -> Result<()> {
    check_name(&args.name)?;
    let dependency = dependency(args)?;
    let dir = std::env::current_dir()
        .context("cannot read the current directory")?
        .join(&args.name);
    ensure!(
        !dir.exists(),
        "{} already exists: choose another name, or remove it first",
        dir.display()
    );
    write_project(&dir, &args.name, &dependency)?;
    eprintln!(
        "cargo ccc new: wrote {} ({}-enclave, {}-parent), depending on CCC {}",
        dir.display(),
        args.name,
        args.name,
        dependency.describe()
    );
    resolve(&dir)?;
    init_git(&dir);
    eprintln!(
        "cargo ccc new: next:\n  cd {}\n  git add -A && git commit -m \"{}: new enclave\"\n  \
         cargo ccc release --version 0.1.0\n  cargo test",
        args.name, args.name
    );
    Ok(())
}

/// Writes every file of the project into `dir` (which must not exist).
fn write_project(dir: &Path, name: &str, dependency: &Dependency) -> Result<()> {
    let write = |relative: &str, bytes: &[u8]| -> Result<()> {
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))
    };
    for (relative, bytes) in embedded::TEMPLATE {
        let text = String::from_utf8_lossy(bytes);
        let text = if relative.ends_with("Cargo.toml") {
            package_manifest(&text, name)?
        } else {
            rename(&text, name)
        };
        write(relative, text.as_bytes())?;
    }
    write(
        "Cargo.toml",
        workspace_manifest(name, dependency)?.as_bytes(),
    )?;
    write("Cargo.lock", embedded::LOCK_FILE.as_bytes())?;
    write("rust-toolchain.toml", embedded::TOOLCHAIN.as_bytes())?;
    write(".gitignore", b"/target\n/release/*/*.eif\n")?;
    write("README.md", readme(name, dependency).as_bytes())?;
    Ok(())
}

/// The template's names replaced by the project's, in source text.
fn rename(text: &str, name: &str) -> String {
    let snake = name.replace('-', "_");
    text.replace("enclave-template/", "")
        .replace(TEMPLATE_ENCLAVE, &format!("{name}-enclave"))
        .replace(TEMPLATE_PARENT, &format!("{name}-parent"))
        .replace(
            &TEMPLATE_ENCLAVE.replace('-', "_"),
            &format!("{snake}_enclave"),
        )
        .replace(
            &TEMPLATE_PARENT.replace('-', "_"),
            &format!("{snake}_parent"),
        )
}

/// A template package's manifest as the project's: renamed package and path dependency, its
/// own description, no license inherited from CCC.
fn package_manifest(text: &str, name: &str) -> Result<String> {
    let mut doc: DocumentMut = text
        .parse()
        .context("the template's manifest is not TOML")?;
    let package = doc["package"]
        .as_table_mut()
        .context("the template's manifest has no [package]")?;
    let old = package["name"].as_str().unwrap_or_default().to_owned();
    let side = if old == TEMPLATE_PARENT {
        "parent"
    } else {
        "enclave"
    };
    package["name"] = value(format!("{name}-{side}"));
    package["description"] = value(format!(
        "{name}: the {side} side (from CCC's enclave template)."
    ));
    package.remove("license");
    if let Some(dependencies) = doc.get_mut("dependencies").and_then(Item::as_table_mut)
        && let Some(item) = dependencies.remove(TEMPLATE_ENCLAVE)
    {
        dependencies.insert(&format!("{name}-enclave"), item);
    }
    Ok(rename(&doc.to_string(), name))
}

/// The project's workspace manifest, from CCC's: members, package defaults, shared
/// dependencies (CCC's own crates from git or the checkout), the project description, lints
/// and profiles.
fn workspace_manifest(name: &str, dependency: &Dependency) -> Result<String> {
    let mut doc: DocumentMut = embedded::WORKSPACE_MANIFEST
        .parse()
        .context("CCC's Cargo.toml is not TOML")?;
    let workspace = doc["workspace"]
        .as_table_mut()
        .context("CCC's Cargo.toml has no [workspace]")?;
    workspace.remove("default-members");
    workspace.remove("exclude");
    let mut members = toml_edit::Array::new();
    members.push("enclave");
    members.push("parent");
    workspace["members"] = value(members);
    if let Some(package) = workspace.get_mut("package").and_then(Item::as_table_mut) {
        package["version"] = value("0.1.0");
        package.remove("license");
    }
    let dependencies = workspace
        .get_mut("dependencies")
        .and_then(Item::as_table_mut)
        .context("CCC's Cargo.toml has no [workspace.dependencies]")?;
    for (_, item) in dependencies.iter_mut() {
        let Some(table) = item.as_inline_table_mut() else {
            continue;
        };
        let Some(path) = table.remove("path") else {
            continue;
        };
        let crate_dir = path.as_str().unwrap_or_default().to_owned();
        let mut source = InlineTable::new();
        match dependency {
            Dependency::Git { url, rev } => {
                source.insert("git", Value::from(url.as_str()));
                source.insert("rev", Value::from(rev.as_str()));
            }
            Dependency::Path(dir) => {
                source.insert(
                    "path",
                    Value::from(dir.join(&crate_dir).display().to_string()),
                );
            }
        }
        for (key, v) in table.iter() {
            source.insert(key, v.clone());
        }
        *table = source;
    }
    let mut ccc = Table::new();
    ccc.decor_mut().set_prefix(
        "\n# What `cargo ccc` builds: the enclave's application, the parent's binary (emulation \
         drives its\n# `run` and `client`), and the image's name.\n",
    );
    let package = |package: String| {
        let mut table = InlineTable::new();
        table.insert("package", Value::from(package));
        value(table)
    };
    ccc["app"] = package(format!("{name}-enclave"));
    ccc["parent"] = package(format!("{name}-parent"));
    ccc["image-name"] = value(name);
    let metadata = workspace
        .entry("metadata")
        .or_insert(Item::Table(Table::new()))
        .as_table_mut()
        .context("[workspace.metadata] is not a table")?;
    metadata.set_implicit(true);
    metadata.insert("ccc", Item::Table(ccc));
    let text = doc.to_string();
    Ok(format!(
        "# {name}: an AWS Nitro Enclave application built with CCC (`cargo ccc release`).\n\
         # Made by `cargo ccc new` from CCC's workspace settings: the shared dependency \
         versions, lints and\n# the release profile decide the enclave binary's bytes.\n{}",
        text.trim_start_matches('\n')
    ))
}

/// The project's README: its own commands.
fn readme(name: &str, dependency: &Dependency) -> String {
    format!(
        "# {name}

An AWS Nitro Enclave application built with CCC: `enclave/` ({name}-enclave) runs inside the
enclave, `parent/` ({name}-parent) on the parent instance. Made by `cargo ccc new` from CCC's
enclave template; CCC comes from {ccc} (`[workspace.dependencies]` in `Cargo.toml`).

## The two commands

```sh
cargo ccc release --version 0.1.0   # the reproducible EIF; publishes release/0.1.0/ (PCRs, KMS key policy, manifest)
cargo test                          # the enclave's API against the NSM simulator and the KMS emulator; the parent
```

`cargo ccc release` builds the image twice in different directories and publishes only if
every byte matches; `release/<V>/REPRODUCE.md` tells anyone how to rebuild it. Add
`--account 111122223333 --role ParentRole --admin-role KeyAdmin` to fill in the key policy's
principals, and lint any key policy before you upload it with `cargo ccc policy check FILE`.
A release is built from the last commit (commit first: `git add -A && git commit`).

`cargo ccc emulate` boots the release under QEMU's nitro-enclave machine with the parent and
the KMS emulator, and checks the PCRs, the attestation and the key release
(`--scenario tampered`: one byte of the application changed, KMS must refuse). The first run
builds QEMU and the kernel into `~/.cache/ccc` (shared by every project; 15-20 minutes on 2
cores).

## Your application

Change `enclave/src/app.rs`: the region and default key at the top, and one function per
operation. To add an operation: a variant in `enclave/src/protocol.rs` (`Request`,
`Response`, `OPERATIONS`, its limits in `Request::check`), a function and a `match` arm in
`app.rs`; the parent's `client` learns it from the same protocol module. Keep `attest` and
`hmac` if you want `cargo ccc emulate` to drive the image.

## CCC

The init, the kernel and the image layout are CCC's, pinned by the CCC this project depends
on. To move to another CCC: change the `rev` (or path) of every `ccc-*` dependency in
`Cargo.toml`, run `cargo update`, and install the matching `cargo-ccc`
(`cargo install --locked --git <CCC's repository> --rev <commit> cargo-ccc`). `cargo ccc`
refuses to build with a `cargo-ccc` of another CCC.
",
        ccc = dependency.describe()
    )
}

/// Lets cargo update the lock file (seeded with CCC's, so every shared dependency keeps the
/// version CCC is tested with) for the new workspace's packages and sources.
fn resolve(dir: &Path) -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .output()
        .context("cannot run cargo")?;
    ensure!(
        out.status.success(),
        "the new workspace does not resolve (its files are in {}): {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// `git init` (a release is built from a git checkout), when git is there.
fn init_git(dir: &Path) {
    let ok = Command::new("git")
        .args(["init", "-q"])
        .current_dir(dir)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("cargo ccc new: note: `git init` failed; a release is built from a git checkout");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["acme", "a", "my-app2"] {
            check_name(good).unwrap();
        }
        for bad in [
            "",
            "Acme",
            "1app",
            "app-",
            "a_b",
            "a b",
            "../x",
            &"a".repeat(41),
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn renames_reach_code_and_manifests() {
        assert_eq!(
            rename(
                "use ccc_template_parent::x; env!(\"CARGO_BIN_EXE_ccc-template-parent\"); \
                 ccc-template-enclave (`enclave-template/parent/src/client.rs`)",
                "my-app"
            ),
            "use my_app_parent::x; env!(\"CARGO_BIN_EXE_my-app-parent\"); my-app-enclave \
             (`parent/src/client.rs`)"
        );
        let parent = embedded::TEMPLATE
            .iter()
            .find(|(p, _)| *p == "parent/Cargo.toml")
            .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
            .unwrap();
        let manifest = package_manifest(&parent, "acme").unwrap();
        let doc: DocumentMut = manifest.parse().unwrap();
        assert_eq!(doc["package"]["name"].as_str(), Some("acme-parent"));
        assert!(doc["package"].get("license").is_none());
        assert!(doc["dependencies"].get("acme-enclave").is_some());
        assert!(!manifest.contains("ccc-template"), "{manifest}");
    }

    /// The workspace manifest depends on CCC's crates by git revision or by absolute path,
    /// keeps their features, and describes the project; every other shared dependency keeps
    /// CCC's version.
    #[test]
    fn the_workspace_depends_on_this_ccc() {
        let git = Dependency::Git {
            url: "https://example.com/ccc.git".into(),
            rev: "0123456789abcdef0123456789abcdef01234567".into(),
        };
        let doc: DocumentMut = workspace_manifest("acme", &git).unwrap().parse().unwrap();
        let ws = &doc["workspace"];
        let sdk = &ws["dependencies"]["ccc-sdk"];
        assert_eq!(sdk["git"].as_str(), Some("https://example.com/ccc.git"));
        assert_eq!(
            sdk["rev"].as_str(),
            Some("0123456789abcdef0123456789abcdef01234567")
        );
        assert!(sdk.get("path").is_none());
        assert_eq!(sdk["default-features"].as_bool(), Some(false));
        assert_eq!(
            ws["members"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|m| m.as_str())
                .collect::<Vec<_>>(),
            ["enclave", "parent"]
        );
        assert!(ws.get("default-members").is_none());
        assert_eq!(
            ws["metadata"]["ccc"]["app"]["package"].as_str(),
            Some("acme-enclave")
        );
        assert_eq!(
            ws["metadata"]["ccc"]["parent"]["package"].as_str(),
            Some("acme-parent")
        );
        assert_eq!(ws["metadata"]["ccc"]["image-name"].as_str(), Some("acme"));
        let ccc: DocumentMut = embedded::WORKSPACE_MANIFEST.parse().unwrap();
        assert_eq!(
            ws["dependencies"]["serde"].to_string(),
            ccc["workspace"]["dependencies"]["serde"].to_string()
        );
        assert_eq!(
            doc["profile"]["release"].to_string(),
            ccc["profile"]["release"].to_string()
        );
        let path = Dependency::Path(PathBuf::from("/src/ccc"));
        let doc: DocumentMut = workspace_manifest("acme", &path).unwrap().parse().unwrap();
        assert_eq!(
            doc["workspace"]["dependencies"]["ccc-emulator"]["path"].as_str(),
            Some("/src/ccc/emulator")
        );
    }
}
