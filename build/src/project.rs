//! A project: a cargo workspace that builds one enclave application, described by its own
//! Cargo metadata. CCC's repository (whose application is the enclave template) is one
//! project; a workspace made by `cargo ccc new` is another. Nothing here depends on where the
//! project or CCC sit on disk.
//!
//! The description lives in the workspace's root `Cargo.toml`:
//!
//! ```toml
//! [workspace.metadata.ccc]
//! app = { package = "acme-enclave" }     # the enclave's application (`bin` defaults to the package name; or `example`)
//! parent = { package = "acme-parent" }   # the parent instance's binary (`run`, `client`), for emulation
//! image-name = "acme"                    # the EIF's ImageName and file stem (default: the app's name)
//! ```
//!
//! CCC itself — the init, the kernel configuration and its source pin — comes from the CCC
//! sources the project depends on: the workspace that holds the `ccc-sdk` package cargo
//! resolved for it (a git checkout in `CARGO_HOME`, a path, or this workspace), so a project's
//! `Cargo.lock` pins the CCC it is built with.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::cache::Cache;
use crate::error::{Error, Result, ensure};

/// The package whose workspace is CCC's source.
pub const SDK_PACKAGE: &str = "ccc-sdk";

/// Files every CCC source holds (relative to its root), checked before it is used.
const CCC_MARKERS: [&str; 3] = ["init/Cargo.toml", "kernel-config/source.json", "Cargo.lock"];

/// Which binary or example of which package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSpec {
    /// The workspace package (`-p`).
    pub package: String,
    /// Its binary or example.
    pub target: AppTarget,
}

/// A binary target or an example target of a package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppTarget {
    /// `--bin NAME`.
    Bin(String),
    /// `--example NAME`.
    Example(String),
}

impl AppSpec {
    /// Binary `name` of `package`.
    pub fn bin(package: &str, name: &str) -> Self {
        Self {
            package: package.to_owned(),
            target: AppTarget::Bin(name.to_owned()),
        }
    }

    /// Example `name` of `package`.
    pub fn example(package: &str, name: &str) -> Self {
        Self {
            package: package.to_owned(),
            target: AppTarget::Example(name.to_owned()),
        }
    }

    /// The binary's file name (also its name in the image).
    pub fn name(&self) -> &str {
        match &self.target {
            AppTarget::Bin(name) | AppTarget::Example(name) => name,
        }
    }

    /// `bin` or `example`, as cargo calls the target kind.
    pub fn kind(&self) -> &'static str {
        match self.target {
            AppTarget::Bin(_) => "bin",
            AppTarget::Example(_) => "example",
        }
    }

    /// From a manifest's `kind` and `name`.
    ///
    /// # Errors
    /// A kind other than `bin` or `example`.
    pub fn from_kind(package: &str, kind: &str, name: &str) -> Result<Self> {
        match kind {
            "bin" => Ok(Self::bin(package, name)),
            "example" => Ok(Self::example(package, name)),
            other => Err(Error::invalid(
                "the application's kind",
                format!("`{other}` is neither `bin` nor `example`"),
            )),
        }
    }
}

/// The program that builds, as the EIF metadata (`BuildTool`, `BuildToolVersion`) and the
/// rebuild instructions name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tool {
    /// `BuildTool` in the EIF metadata.
    pub name: String,
    /// `BuildToolVersion` in the EIF metadata.
    pub version: String,
    /// How a user invokes it (`cargo xtask`, `cargo ccc`).
    pub command: String,
}

/// Where a project's CCC comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CccOrigin {
    /// The project is CCC's own workspace.
    Workspace,
    /// A path dependency on a CCC checkout.
    Path,
    /// A git dependency.
    Git {
        /// The repository URL (as in `Cargo.toml`).
        url: String,
        /// The exact commit cargo locked.
        commit: String,
    },
}

/// The CCC sources a project is built with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ccc {
    /// The root of CCC's workspace (holds `init/`, `kernel-config/`, `Cargo.lock`).
    pub root: PathBuf,
    /// CCC's version (the `ccc-sdk` package's).
    pub version: String,
    /// Where it comes from.
    pub origin: CccOrigin,
}

impl Ccc {
    /// The commit of these sources and whether they differ from it, when known: the locked
    /// commit of a git dependency, the checkout's HEAD for a path or this workspace.
    pub fn commit(&self) -> Option<(String, bool)> {
        match &self.origin {
            CccOrigin::Git { commit, .. } => Some((commit.clone(), false)),
            CccOrigin::Path | CccOrigin::Workspace => crate::git::head(&self.root),
        }
    }
}

/// One package of the project's dependency graph, as far as a build needs it.
#[derive(Debug, Clone)]
struct Package {
    name: String,
    version: String,
    /// `(kind, name)` of every target.
    targets: Vec<(String, String)>,
    member: bool,
}

/// A project: what to build, from where, with which CCC, into which cache.
#[derive(Debug, Clone)]
pub struct Project {
    /// The workspace root.
    pub root: PathBuf,
    /// The enclave's application (`[workspace.metadata.ccc] app`).
    pub app: AppSpec,
    /// The parent instance's binary (`[workspace.metadata.ccc] parent`), if the project has
    /// one.
    pub parent: Option<AppSpec>,
    /// The image name of the application's EIF.
    pub image_name: String,
    /// The application package's version (a release's default version).
    pub version: String,
    /// The CCC sources.
    pub ccc: Ccc,
    /// The per-user cache.
    pub cache: Cache,
    /// The program building it.
    pub tool: Tool,
    packages: Vec<Package>,
}

impl Project {
    /// Reads the project whose workspace holds `dir` (with `cargo metadata --locked`).
    ///
    /// # Errors
    /// cargo fails (no workspace, a stale `Cargo.lock`), the metadata has no
    /// `[workspace.metadata.ccc]` or names a package or target the workspace lacks, no CCC
    /// sources are among the dependencies, or a path dependency lies outside both the project
    /// and CCC (its path would reach the binaries).
    pub fn load(dir: &Path, tool: Tool, cache: Cache) -> Result<Self> {
        let out = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .args(["metadata", "--format-version", "1", "--locked"])
            .current_dir(dir)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Error::program("cargo metadata", format!("cannot start: {e}")))?;
        if !out.status.success() {
            return Err(Error::program(
                "cargo metadata",
                format!(
                    "failed in {}: {}",
                    dir.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            ));
        }
        let metadata: Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| Error::program("cargo metadata", format!("printed bad JSON: {e}")))?;
        Self::from_metadata(&metadata, tool, cache)
    }

    fn from_metadata(metadata: &Value, tool: Tool, cache: Cache) -> Result<Self> {
        let root = PathBuf::from(
            metadata["workspace_root"]
                .as_str()
                .ok_or_else(|| Error::program("cargo metadata", "printed no workspace_root"))?,
        );
        let members: Vec<&str> = metadata["workspace_members"]
            .as_array()
            .map(|m| m.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let all = metadata["packages"].as_array().cloned().unwrap_or_default();
        let packages: Vec<Package> = all
            .iter()
            .map(|p| Package {
                name: p["name"].as_str().unwrap_or_default().to_owned(),
                version: p["version"].as_str().unwrap_or_default().to_owned(),
                targets: p["targets"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                    .iter()
                    .flat_map(|t| {
                        let name = t["name"].as_str().unwrap_or_default().to_owned();
                        t["kind"]
                            .as_array()
                            .map(Vec::as_slice)
                            .unwrap_or_default()
                            .iter()
                            .filter_map(Value::as_str)
                            .map(move |k| (k.to_owned(), name.clone()))
                    })
                    .collect(),
                member: p["id"].as_str().is_some_and(|id| members.contains(&id)),
            })
            .collect();

        let manifest = root.join("Cargo.toml");
        let config = &metadata["metadata"]["ccc"];
        ensure!(
            config.is_object(),
            Error::project(format!(
                "{} has no [workspace.metadata.ccc]: add one naming the enclave's application, \
                 e.g.\n\n[workspace.metadata.ccc]\napp = {{ package = \"my-enclave\" }}\nparent \
                 = {{ package = \"my-parent\" }}\n",
                manifest.display()
            ))
        );
        let target = |key: &str| -> Result<Option<AppSpec>> {
            let entry = &config[key];
            if entry.is_null() {
                return Ok(None);
            }
            let bad = |what: &str| {
                Error::project(format!(
                    "{}: [workspace.metadata.ccc] {key} {what}",
                    manifest.display()
                ))
            };
            let package = entry["package"]
                .as_str()
                .ok_or_else(|| bad("needs `package = \"NAME\"`"))?;
            let spec = match (entry["bin"].as_str(), entry["example"].as_str()) {
                (Some(_), Some(_)) => return Err(bad("names both `bin` and `example`")),
                (_, Some(example)) => AppSpec::example(package, example),
                (Some(bin), None) => AppSpec::bin(package, bin),
                (None, None) => AppSpec::bin(package, package),
            };
            Ok(Some(spec))
        };
        let app = target("app")?.ok_or_else(|| {
            Error::project(format!(
                "{}: [workspace.metadata.ccc] needs `app = {{ package = \"NAME\" }}`, the \
                 enclave's application",
                manifest.display()
            ))
        })?;
        let parent = target("parent")?;
        let image_name = match &config["image-name"] {
            Value::Null => app.name().to_owned(),
            Value::String(name) => name.clone(),
            _ => {
                return Err(Error::project(format!(
                    "{}: [workspace.metadata.ccc] image-name must be a string",
                    manifest.display()
                )));
            }
        };
        crate::release::publish::check_name(&image_name).map_err(|e| {
            Error::project(format!(
                "{}: [workspace.metadata.ccc] {e}",
                manifest.display()
            ))
        })?;

        let ccc = find_ccc(&all, &root)?;
        check_path_dependencies(&all, &root, &ccc.root)?;
        let mut project = Self {
            root,
            version: String::new(),
            app: app.clone(),
            parent: parent.clone(),
            image_name,
            ccc,
            cache,
            tool,
            packages,
        };
        project.check_target(&app, "app")?;
        if let Some(parent) = &parent {
            project.check_target(parent, "parent")?;
        }
        project.version = project
            .packages
            .iter()
            .find(|p| p.member && p.name == app.package)
            .map(|p| p.version.clone())
            .unwrap_or_default();
        Ok(project)
    }

    /// Checks that `spec` is a target of a workspace member (`what` names it in the error).
    ///
    /// # Errors
    /// It is not, with the list of what is available.
    pub fn check_target(&self, spec: &AppSpec, what: &str) -> Result<()> {
        let members: Vec<&Package> = self.packages.iter().filter(|p| p.member).collect();
        let Some(package) = members.iter().find(|p| p.name == spec.package) else {
            return Err(Error::project(format!(
                "{what} {}: no such package in the workspace at {} (members: {})",
                spec.package,
                self.root.display(),
                members
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        let kind = spec.kind();
        let targets: Vec<&str> = package
            .targets
            .iter()
            .filter(|(k, _)| k == kind)
            .map(|(_, name)| name.as_str())
            .collect();
        ensure!(
            targets.contains(&spec.name()),
            Error::project(format!(
                "{what}: package {} has no {kind} named {} ({kind}s: {}); choose one with \
                 --{kind} NAME",
                spec.package,
                spec.name(),
                if targets.is_empty() {
                    "none".to_owned()
                } else {
                    targets.join(", ")
                }
            ))
        );
        Ok(())
    }

    /// The image name for `app`: the project's for its own application, the binary's name for
    /// any other.
    pub fn image_name_for(&self, app: &AppSpec) -> String {
        if *app == self.app {
            self.image_name.clone()
        } else {
            app.name().to_owned()
        }
    }

    /// `release/` of the project.
    pub fn release_dir(&self) -> PathBuf {
        self.root.join("release")
    }

    /// Where releases build (both passes), inside the project's target directory.
    pub fn work_dir(&self) -> PathBuf {
        self.root.join("target").join("ccc-release")
    }

    /// True when the project is CCC's own workspace.
    pub fn is_ccc(&self) -> bool {
        self.ccc.origin == CccOrigin::Workspace
    }
}

/// The CCC sources among the packages: the workspace of `ccc-sdk`.
fn find_ccc(packages: &[Value], root: &Path) -> Result<Ccc> {
    let sdk = packages
        .iter()
        .find(|p| p["name"] == SDK_PACKAGE)
        .ok_or_else(|| {
            Error::project(format!(
                "the workspace at {} does not depend on {SDK_PACKAGE}, so it names no CCC to \
                 build with: add `{SDK_PACKAGE} = {{ git = \"<CCC's repository>\", rev = \
                 \"<commit>\" }}` (or `path = \"<checkout>/sdk\"`) to its dependencies (`cargo \
                 ccc new` writes a project that has it)",
                root.display()
            ))
        })?;
    let manifest = PathBuf::from(sdk["manifest_path"].as_str().unwrap_or_default());
    let ccc_root = manifest
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .ok_or_else(|| {
            Error::project(format!(
                "{SDK_PACKAGE}'s manifest {} is not inside a workspace",
                manifest.display()
            ))
        })?;
    for marker in CCC_MARKERS {
        ensure!(
            ccc_root.join(marker).is_file(),
            Error::project(format!(
                "{SDK_PACKAGE} comes from {}, which is not a CCC workspace (no {marker}): depend \
                 on CCC's repository (git or a checkout), not on a copy of the sdk crate alone",
                ccc_root.display()
            ))
        );
    }
    let version = sdk["version"].as_str().unwrap_or_default().to_owned();
    let origin = if ccc_root == root {
        CccOrigin::Workspace
    } else {
        match sdk["source"].as_str() {
            None => CccOrigin::Path,
            Some(source) => parse_git_source(source).ok_or_else(|| {
                Error::project(format!(
                    "{SDK_PACKAGE} comes from `{source}`: CCC is used from git or a path, not a \
                     registry"
                ))
            })?,
        }
    };
    Ok(Ccc {
        root: ccc_root,
        version,
        origin,
    })
}

/// `git+URL[?query]#COMMIT`, as `cargo metadata` writes a git package's source.
fn parse_git_source(source: &str) -> Option<CccOrigin> {
    let rest = source.strip_prefix("git+")?;
    let (url, commit) = rest.rsplit_once('#')?;
    let url = url.split_once('?').map_or(url, |(u, _)| u);
    (commit.len() == 40 && commit.bytes().all(|b| b.is_ascii_hexdigit())).then(|| CccOrigin::Git {
        url: url.to_owned(),
        commit: commit.to_owned(),
    })
}

/// Refuses path dependencies outside the project and CCC: their location would reach the
/// binaries (only the workspace, CCC, `CARGO_HOME` and the toolchain are remapped).
fn check_path_dependencies(packages: &[Value], root: &Path, ccc: &Path) -> Result<()> {
    let outside: Vec<String> = packages
        .iter()
        .filter(|p| p["source"].is_null())
        .filter_map(|p| {
            let manifest = PathBuf::from(p["manifest_path"].as_str()?);
            (!manifest.starts_with(root) && !manifest.starts_with(ccc)).then(|| {
                format!(
                    "{} ({})",
                    p["name"].as_str().unwrap_or("?"),
                    manifest.display()
                )
            })
        })
        .collect();
    ensure!(
        outside.is_empty(),
        Error::project(format!(
            "path dependencies outside the project ({}) and CCC ({}): {}. Their paths would be \
             compiled into the enclave's binaries, so the PCRs would depend on where they sit: \
             move them into the workspace, or depend on them by git or registry",
            root.display(),
            ccc.display(),
            outside.join(", ")
        ))
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tool() -> Tool {
        Tool {
            name: "test".into(),
            version: "0".into(),
            command: "cargo test-tool".into(),
        }
    }

    /// A minimal `cargo metadata` document: a workspace at /p with an app and a parent, CCC's
    /// sdk at `sdk_manifest` with `sdk_source`.
    fn metadata(ccc: Value, sdk_manifest: &str, sdk_source: Value) -> Value {
        json!({
            "workspace_root": "/p",
            "workspace_members": ["app 1.2.3 (path+file:///p/app)", "par (path+file:///p/parent)"],
            "metadata": {"ccc": ccc},
            "packages": [
                {"name": "app", "version": "1.2.3", "id": "app 1.2.3 (path+file:///p/app)",
                 "manifest_path": "/p/app/Cargo.toml", "source": null,
                 "targets": [{"name": "app", "kind": ["bin"]}, {"name": "app", "kind": ["lib"]},
                             {"name": "probe", "kind": ["example"]}]},
                {"name": "par", "version": "1.2.3", "id": "par (path+file:///p/parent)",
                 "manifest_path": "/p/parent/Cargo.toml", "source": null,
                 "targets": [{"name": "par", "kind": ["bin"]}]},
                {"name": "ccc-sdk", "version": "0.1.0", "id": "ccc-sdk",
                 "manifest_path": sdk_manifest, "source": sdk_source, "targets": []},
            ]
        })
    }

    /// A directory that looks like CCC's sources.
    fn fake_ccc(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ccc-project-{name}-{}", std::process::id()));
        for marker in CCC_MARKERS {
            let path = dir.join(marker);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "").unwrap();
        }
        dir
    }

    #[test]
    fn reads_the_description_and_finds_ccc() {
        let ccc = fake_ccc("git");
        let manifest = ccc.join("sdk/Cargo.toml").display().to_string();
        let commit = "0123456789abcdef0123456789abcdef01234567";
        let m = metadata(
            json!({"app": {"package": "app"}, "parent": {"package": "par"}, "image-name": "acme"}),
            &manifest,
            json!(format!("git+https://example.com/ccc.git?rev=0123#{commit}")),
        );
        let project = Project::from_metadata(&m, tool(), Cache::at("/c")).unwrap();
        assert_eq!(project.app, AppSpec::bin("app", "app"));
        assert_eq!(project.parent, Some(AppSpec::bin("par", "par")));
        assert_eq!(project.image_name, "acme");
        assert_eq!(project.version, "1.2.3");
        assert_eq!(project.ccc.root, ccc);
        assert_eq!(
            project.ccc.origin,
            CccOrigin::Git {
                url: "https://example.com/ccc.git".into(),
                commit: commit.into()
            }
        );
        assert_eq!(
            project.image_name_for(&AppSpec::example("app", "probe")),
            "probe"
        );
        project
            .check_target(&AppSpec::example("app", "probe"), "--app")
            .unwrap();
        let err = project
            .check_target(&AppSpec::bin("app", "nope"), "--app")
            .unwrap_err()
            .to_string();
        assert!(err.contains("has no bin named nope (bins: app)"), "{err}");
        let err = project
            .check_target(&AppSpec::bin("ccc-sdk", "x"), "--app")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no such package in the workspace"), "{err}");
        std::fs::remove_dir_all(&ccc).unwrap();
    }

    #[test]
    fn refuses_what_would_leak_or_mislead() {
        let ccc = fake_ccc("refuse");
        let sdk = ccc.join("sdk/Cargo.toml").display().to_string();
        let good = json!({"app": {"package": "app"}});
        // No description at all.
        let m = metadata(Value::Null, &sdk, Value::Null);
        let err = Project::from_metadata(&m, tool(), Cache::at("/c"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("[workspace.metadata.ccc]"), "{err}");
        // An app the workspace does not have.
        let m = metadata(json!({"app": {"package": "nope"}}), &sdk, Value::Null);
        assert!(Project::from_metadata(&m, tool(), Cache::at("/c")).is_err());
        // A bad image name.
        let m = metadata(
            json!({"app": {"package": "app"}, "image-name": "../x"}),
            &sdk,
            Value::Null,
        );
        assert!(Project::from_metadata(&m, tool(), Cache::at("/c")).is_err());
        // The sdk alone, without CCC's workspace around it.
        let m = metadata(good.clone(), "/elsewhere/sdk/Cargo.toml", Value::Null);
        let err = Project::from_metadata(&m, tool(), Cache::at("/c"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a CCC workspace"), "{err}");
        // A path dependency outside the project and CCC.
        let mut m = metadata(good, &sdk, Value::Null);
        m["packages"].as_array_mut().unwrap().push(json!({
            "name": "stray", "version": "0.1.0", "id": "stray",
            "manifest_path": "/home/me/stray/Cargo.toml", "source": null, "targets": []
        }));
        let err = Project::from_metadata(&m, tool(), Cache::at("/c"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("stray (/home/me/stray/Cargo.toml)"), "{err}");
        std::fs::remove_dir_all(&ccc).unwrap();
    }

    #[test]
    fn git_sources_parse() {
        let commit = "a".repeat(40);
        assert_eq!(
            parse_git_source(&format!("git+file:///srv/ccc#{commit}")),
            Some(CccOrigin::Git {
                url: "file:///srv/ccc".into(),
                commit: commit.clone()
            })
        );
        assert_eq!(
            parse_git_source("registry+https://github.com/rust-lang/crates.io-index"),
            None
        );
        assert_eq!(parse_git_source("git+https://x/y#short"), None);
    }

    /// CCC's own workspace is a project whose CCC is itself.
    #[test]
    fn this_repository_is_a_project() {
        let project = Project::load(&crate::tests::ccc_root(), tool(), Cache::at("/c")).unwrap();
        assert!(project.is_ccc());
        assert_eq!(project.root, crate::tests::ccc_root());
        assert_eq!(
            project.app,
            AppSpec::bin("ccc-template-enclave", "ccc-template-enclave")
        );
        assert_eq!(project.image_name, "ccc-enclave");
        assert_eq!(project.version, env!("CARGO_PKG_VERSION"));
        assert_eq!(
            project.parent,
            Some(AppSpec::bin("ccc-template-parent", "ccc-template-parent"))
        );
    }
}
