//! Repository policy as ordinary tests ("tidy"): one `#[test]` per rule, each over the files
//! git tracks (`git ls-files`), each failure naming the files and the fix.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root (this crate is `<root>/tests`).
fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits one level below the workspace root")
        .to_path_buf()
}

/// Every tracked file that exists in the working tree, relative to the root, sorted.
fn tracked_files() -> Vec<PathBuf> {
    let root = repository_root();
    let output = Command::new("git")
        .args(["ls-files", "-z", "--cached"])
        .current_dir(&root)
        .output()
        .unwrap_or_else(|e| panic!("tidy tests need git on PATH to list tracked files: {e}"));
    assert!(
        output.status.success(),
        "`git ls-files` failed in {} (tidy tests need a git checkout): {}",
        root.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let mut files: Vec<PathBuf> = output
        .stdout
        .split(|&b| b == 0)
        .filter(|name| !name.is_empty())
        .map(|name| PathBuf::from(String::from_utf8_lossy(name).into_owned()))
        // A file deleted in the working tree but not yet in the index has nothing to check.
        .filter(|relative| root.join(relative).is_file())
        .collect();
    files.sort();
    assert!(
        files.iter().any(|f| f == Path::new("Cargo.toml")),
        "`git ls-files` in {} does not list Cargo.toml: not this repository?",
        root.display()
    );
    files
}

/// The tracked files whose bytes contain any of `needles`, with the needle found.
fn files_containing(files: &[PathBuf], needles: &[String]) -> Vec<String> {
    let root = repository_root();
    let mut found = Vec::new();
    for relative in files {
        let bytes = std::fs::read(root.join(relative))
            .unwrap_or_else(|e| panic!("reading {}: {e}", relative.display()));
        for needle in needles {
            if bytes
                .windows(needle.len())
                .any(|window| window == needle.as_bytes())
            {
                found.push(format!("{} ({needle})", relative.display()));
            }
        }
    }
    found
}

/// A clone needs nothing beside it: the known-answer vectors live in `tests/vectors/` and are
/// found by `ccc_test_vectors` alone. No tracked file may point at the folder the vectors
/// used to be read from, or at the environment variable that chose it; only
/// `tests/vectors/PROVENANCE.md` records where they were collected.
#[test]
fn nothing_reaches_outside_the_repository_for_test_vectors() {
    // Built from parts, so this file does not match itself.
    let folder = ["..", "shared"].join("/");
    let absolute = ["", "work", "shared"].join("/");
    let variable = ["CCC", "SHARED", "DIR"].join("_");
    let needles = [folder, absolute, variable];
    let files: Vec<PathBuf> = tracked_files()
        .into_iter()
        .filter(|f| f != Path::new("tests/vectors/PROVENANCE.md"))
        .collect();
    assert!(
        files.iter().any(|f| f.starts_with("tests/vectors")),
        "no tracked file under tests/vectors: the vectors must be committed"
    );
    let offenders = files_containing(&files, &needles);
    assert!(
        offenders.is_empty(),
        "these tracked files reach outside the repository for test vectors; read them with \
         `ccc_test_vectors::{{path, read, read_text, read_decoded}}` (tests/vectors/) instead:\n{}",
        offenders.join("\n")
    );
}

/// The rule above cannot pass by accident: its search finds a needle planted in a file.
#[test]
fn the_tidy_search_finds_what_it_looks_for() {
    let dir = std::env::temp_dir().join(format!("ccc-tidy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let planted = dir.join("planted.txt");
    let needle = ["CCC", "SHARED", "DIR"].join("_");
    std::fs::write(&planted, format!("read from ${needle} please")).unwrap();
    // An absolute path joined onto the root stays absolute, so the helper reads the plant.
    let found = files_containing(
        std::slice::from_ref(&planted),
        std::slice::from_ref(&needle),
    );
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(found, [format!("{} ({needle})", planted.display())]);
}
