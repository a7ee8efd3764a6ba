//! The fork story, done the way the README tells a team to: copy the template's enclave
//! crate, rename the package, change the application (`src/app.rs`), and build it in a
//! workspace of its own that uses the SDK by path. The build reuses this checkout's target
//! directory (already-built dependencies are not rebuilt), and the renamed binary must run
//! and refuse to start outside an enclave for the right reason.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap, expect or panic is the test failure"
)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Replaces `old` (which must occur) with `new` in the file at `path`.
fn edit(path: &Path, old: &str, new: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(old), "{} has no {old:?}", path.display());
    std::fs::write(path, text.replacen(old, new, 1)).unwrap();
}

/// The workspace manifest of the fork: this workspace's settings (package defaults, shared
/// dependencies with absolute paths, lints, profiles), with the fork as its only member.
fn fork_workspace(root: &Path) -> String {
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let mut out = String::new();
    let mut lines = manifest.lines();
    while let Some(line) = lines.next() {
        if line.starts_with("members = [") {
            out.push_str("members = [\"my-enclave\"]\n");
            if !line.ends_with(']') {
                for inner in lines.by_ref() {
                    if inner.trim_start().starts_with(']') {
                        break;
                    }
                }
            }
        } else if line.starts_with("default-members") || line.starts_with("exclude") {
            continue;
        } else {
            out.push_str(&line.replace("{ path = \"", &format!("{{ path = \"{}/", root.display())));
            out.push('\n');
        }
    }
    out
}

#[test]
fn a_renamed_copy_of_the_template_builds_and_runs() {
    let template = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let root = template.parent().unwrap().parent().unwrap().to_path_buf();
    let target_dir =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let work =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("fork-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let fork = work.join("my-enclave");

    // 1. Copy the whole crate, as the README's `cp -r` does (its manifest names its tests),
    //    and rename it.
    copy_dir(&template, &fork);
    edit(
        &fork.join("Cargo.toml"),
        "name = \"ccc-template-enclave\"",
        "name = \"my-enclave\"",
    );
    // 2. Change the application: its region, and one operation.
    edit(
        &fork.join("src/app.rs"),
        "pub const REGION: &str = \"us-east-1\";",
        "pub const REGION: &str = \"eu-west-1\";",
    );
    edit(
        &fork.join("src/app.rs"),
        "let mac = AwsLc.hmac_sha256(secret.expose(), &[message]);",
        "let mac = AwsLc.hmac_sha256(secret.expose(), &[b\"my-enclave/v1:\", message]);",
    );
    // 3. Its own workspace, using the SDK by path, and this checkout's lock file.
    std::fs::write(work.join("Cargo.toml"), fork_workspace(&root)).unwrap();
    std::fs::copy(root.join("Cargo.lock"), work.join("Cargo.lock")).unwrap();

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(&work)
        .args([
            "build",
            "--offline",
            "-p",
            "my-enclave",
            "--bin",
            "my-enclave",
        ])
        .env("CARGO_TARGET_DIR", &target_dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "the fork does not build:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // 4. The renamed binary runs; outside an enclave it stops because there is no /dev/nsm,
    //    and never falls back to a simulator.
    let binary = target_dir.join("debug").join("my-enclave");
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
    let _ = std::fs::remove_dir_all(&work);
}
