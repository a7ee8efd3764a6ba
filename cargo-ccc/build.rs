//! Embeds what `cargo ccc new` writes: the enclave template (`enclave-template/`), CCC's
//! workspace manifest (its shared dependencies, lints and profiles), lock file and toolchain
//! pin, all from the CCC checkout this binary is built from, so a scaffold matches the CCC it
//! depends on.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Template files are these kinds; anything else (editor files, build output) stays out.
const EXTENSIONS: [&str; 5] = ["rs", "toml", "md", "yaml", "json"];

fn collect(dir: &Path, base: &Path, out: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name == "target" {
            continue;
        }
        if path.is_dir() {
            collect(&path, base, out);
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| EXTENSIONS.contains(&e))
            && let Ok(relative) = path.strip_prefix(base)
        {
            out.push((relative.to_string_lossy().into_owned(), path.clone()));
        }
    }
}

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let root = manifest_dir.parent().unwrap_or(&manifest_dir).to_path_buf();
    let template = root.join("enclave-template");
    let mut files = Vec::new();
    collect(&template, &template, &mut files);
    files.sort();
    let mut code = String::from(
        "/// The enclave template's files: (path under enclave-template/, contents).\n\
         pub(crate) const TEMPLATE: &[(&str, &[u8])] = &[\n",
    );
    for (relative, path) in &files {
        let _ = writeln!(code, "    ({relative:?}, include_bytes!({path:?})),");
    }
    code.push_str("];\n");
    for (name, file) in [
        ("WORKSPACE_MANIFEST", "Cargo.toml"),
        ("LOCK_FILE", "Cargo.lock"),
        ("TOOLCHAIN", "rust-toolchain.toml"),
    ] {
        let path = root.join(file);
        let _ = writeln!(
            code,
            "/// CCC's `{file}`.\npub(crate) const {name}: &str = include_str!({path:?});"
        );
        println!("cargo:rerun-if-changed={}", path.display());
    }
    println!("cargo:rerun-if-changed={}", template.display());
    for (_, path) in &files {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default()).join("embedded.rs");
    if let Err(e) = std::fs::write(&out, code) {
        println!("cargo:warning=cannot write {}: {e}", out.display());
        std::process::exit(1);
    }
}
