//! `cargo ccc new` as a team runs it, outside this workspace: the scaffold names only its own
//! packages, depends on this CCC by path, resolves with a complete lock file, describes
//! itself as a CCC project, and its enclave binary builds offline and refuses to start
//! outside an enclave for the right reason. (The release and emulation of a scaffold run in
//! the CI step `plugin`: they need the kernel and QEMU.)
#![expect(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is the test failure"
)]

use ccc_build::cache::Cache;
use ccc_build::project::{AppSpec, CccOrigin, Project, Tool};
use std::path::{Path, PathBuf};
use std::process::Command;

fn ccc_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .is_some_and(|n| n == ".git" || n == "target")
        {
            continue;
        }
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

#[test]
fn a_new_project_builds_and_runs_outside_the_workspace() {
    let root = ccc_root();
    let work = std::env::temp_dir().join(format!("ccc-new-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    assert!(!work.starts_with(&root), "the project must sit outside CCC");

    let new = |name: &str| {
        Command::new(env!("CARGO_BIN_EXE_cargo-ccc"))
            .args(["ccc", "new", name, "--ccc-path"])
            .arg(&root)
            .current_dir(&work)
            .output()
            .unwrap()
    };
    let bad = new("Not_A_Name");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("cannot name a project"));
    let output = new("acme");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let project_dir = work.join("acme");
    // An existing directory is never overwritten.
    let again = new("acme");
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));

    // 1. Only the project's own names, and the files a project needs.
    let mut all = Vec::new();
    files(&project_dir, &mut all);
    for file in &all {
        let text = std::fs::read_to_string(file).unwrap();
        assert!(
            !text.contains("ccc-template") && !text.contains("ccc_template"),
            "{} still names the template",
            file.display()
        );
    }
    for needed in [
        "Cargo.toml",
        "Cargo.lock",
        "rust-toolchain.toml",
        "README.md",
        ".gitignore",
        "enclave/src/app.rs",
        "enclave/tests/api.rs",
        "parent/src/main.rs",
    ] {
        assert!(project_dir.join(needed).is_file(), "{needed} missing");
    }
    assert!(project_dir.join(".git").is_dir(), "git init");
    let readme = std::fs::read_to_string(project_dir.join("README.md")).unwrap();
    assert!(
        readme.contains("cargo ccc release --version 0.1.0"),
        "{readme}"
    );

    // 2. It is a CCC project whose CCC is this checkout, by path, and its lock file is complete
    //    (`cargo metadata --locked` succeeds inside Project::load).
    let tool = Tool {
        name: "cargo-ccc".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        command: "cargo ccc".into(),
    };
    let project = Project::load(&project_dir, tool, Cache::at(work.join("cache"))).unwrap();
    assert_eq!(project.app, AppSpec::bin("acme-enclave", "acme-enclave"));
    assert_eq!(
        project.parent,
        Some(AppSpec::bin("acme-parent", "acme-parent"))
    );
    assert_eq!(project.image_name, "acme");
    assert_eq!(project.ccc.origin, CccOrigin::Path);
    assert_eq!(project.ccc.root, root);

    // 3. The enclave binary builds offline (this checkout's target directory: already-built
    //    dependencies are reused), runs, and outside an enclave stops because there is no
    //    /dev/nsm — never falling back to a simulator.
    let target_dir =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(&project_dir)
        .args(["build", "--offline", "--locked", "-p", "acme-enclave"])
        .env("CARGO_TARGET_DIR", &target_dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "the new project does not build:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let binary = target_dir.join("debug").join("acme-enclave");
    let output = Command::new(&binary)
        .env_clear()
        .env("PATH", "/bin")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("ccc-enclave: FATAL: /dev/nsm not found"),
        "{stderr}"
    );
    let output = Command::new(&binary)
        .env_clear()
        .env("CCC_APP_NSM", "simulator")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("built without the `simulator` feature"),
        "{stderr}"
    );
    let _ = std::fs::remove_file(&binary);
    let _ = std::fs::remove_dir_all(&work);
}
