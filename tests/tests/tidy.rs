//! Repository policy as ordinary tests ("tidy"): one `#[test]` per rule, each over the files
//! git tracks (`git ls-files`), each failure naming the file (and line) and the fix.
//!
//! Rules about Rust source read it through [`code`], which blanks comments and string and
//! character literals (keeping line numbers), so a rule never trips over its own explanation.
#![expect(
    clippy::panic,
    clippy::expect_used,
    reason = "a failed tidy rule, or a repository it cannot read, is a test failure: a panic"
)]

use std::collections::BTreeSet;
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

/// The text of a tracked file.
fn read(relative: &Path) -> String {
    std::fs::read_to_string(repository_root().join(relative))
        .unwrap_or_else(|e| panic!("reading {}: {e}", relative.display()))
}

/// Every tracked Rust file.
fn rust_files() -> Vec<PathBuf> {
    tracked_files()
        .into_iter()
        .filter(|f| f.extension().is_some_and(|e| e == "rs"))
        .collect()
}

/// Rust source with comments, string literals and character literals replaced by spaces
/// (newlines kept, so line numbers stay right). Lifetimes (`'a`) are left alone.
fn code(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        // Line comment (doc comments included).
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
            continue;
        }
        // Block comment, nested.
        if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
            continue;
        }
        let previous_is_ident = i > 0 && ident(chars[i - 1]);
        // Raw strings: r"..", r#".."#, br#".."#.
        let raw_start = match (c, next) {
            ('r', Some('"' | '#')) if !previous_is_ident => Some(i + 1),
            ('b', Some('r')) if !previous_is_ident => {
                matches!(chars.get(i + 2), Some('"' | '#')).then_some(i + 2)
            }
            _ => None,
        };
        if let Some(mut j) = raw_start {
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) == Some(&'"') {
                for &k in &chars[i..=j] {
                    out.push(k);
                }
                i = j + 1;
                let closing: Vec<char> = std::iter::once('"')
                    .chain(std::iter::repeat_n('#', hashes))
                    .collect();
                while i < chars.len() && !chars[i..].starts_with(&closing) {
                    out.push(blank(chars[i]));
                    i += 1;
                }
                for &k in chars.get(i..i + closing.len()).unwrap_or(&[]) {
                    out.push(k);
                }
                i += closing.len();
                continue;
            }
        }
        // Strings and byte strings.
        if c == '"' {
            out.push('"');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if let Some(&k) = chars.get(i) {
                    out.push(blank(k));
                }
                i += 1;
            }
            out.push('"');
            i += 1;
            continue;
        }
        // Character literals ('x', '\n', '\u{1F600}'); a lifetime has no closing quote.
        if c == '\'' {
            let literal_end = if next == Some('\\') {
                chars[i + 2..]
                    .iter()
                    .position(|&k| k == '\'')
                    .map(|p| i + 2 + p)
            } else if chars.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            if let Some(end) = literal_end {
                out.push('\'');
                out.extend(std::iter::repeat_n(' ', end - i - 1));
                out.push('\'');
                i = end + 1;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

/// Whether `text[at..]` starts the whole word `word` (not part of a longer identifier).
fn word_at(text: &str, at: usize, word: &str) -> bool {
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    text[at..].starts_with(word)
        && !text[..at].chars().next_back().is_some_and(ident)
        && !text[at + word.len()..].chars().next().is_some_and(ident)
}

/// 1-based line of byte offset `at`.
fn line_of(text: &str, at: usize) -> usize {
    text[..at].matches('\n').count() + 1
}

/// `(line, text)` of every attribute (`#[..]`, `#![..]`) in blanked source.
fn attributes(code: &str) -> Vec<(usize, String)> {
    let bytes = code.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'#' {
            let open = if bytes.get(i + 1) == Some(&b'[') {
                Some(i + 1)
            } else if bytes.get(i + 1) == Some(&b'!') && bytes.get(i + 2) == Some(&b'[') {
                Some(i + 2)
            } else {
                None
            };
            if let Some(open) = open {
                let mut depth = 0;
                let mut end = open;
                for (k, &b) in bytes.iter().enumerate().skip(open) {
                    match b {
                        b'[' => depth += 1,
                        b']' => {
                            depth -= 1;
                            if depth == 0 {
                                end = k;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                found.push((line_of(code, i), code[i..=end].to_owned()));
                i = end + 1;
                continue;
            }
        }
        i += 1;
    }
    found
}

/// The workspace's member directories (from the root manifest's `members`).
fn workspace_members() -> Vec<String> {
    let manifest = read(Path::new("Cargo.toml"));
    let start = manifest
        .find("members = [")
        .expect("the root Cargo.toml lists its members");
    let list = &manifest[start + "members = [".len()..];
    let list = &list[..list.find(']').expect("the members list is closed")];
    list.split(',')
        .map(|item| item.trim().trim_matches('"').to_owned())
        .filter(|item| !item.is_empty())
        .collect()
}

/// The package name in a manifest's `[package]` table.
fn package_name(manifest: &str) -> Option<String> {
    let package = &manifest[manifest.find("[package]")?..];
    let line = package.lines().find(|l| l.starts_with("name = "))?;
    Some(line["name = ".len()..].trim().trim_matches('"').to_owned())
}

/// `unsafe` lives in ccc-sys (`sys/`) alone; everywhere else the keyword may not appear in
/// code, and every other crate takes the workspace lints, which forbid `unsafe_code`.
#[test]
fn unsafe_only_in_ccc_sys() {
    let mut offenders = Vec::new();
    for file in rust_files() {
        if file.starts_with("sys") {
            continue;
        }
        let code = code(&read(&file));
        for (at, _) in code.match_indices("unsafe") {
            if word_at(&code, at, "unsafe") {
                offenders.push(format!("{}:{}", file.display(), line_of(&code, at)));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "`unsafe` outside ccc-sys; move the system call into sys/ (a safe function whose \
         unsafe block has a `// SAFETY:` comment) and call that:\n{}",
        offenders.join("\n")
    );

    let root = read(Path::new("Cargo.toml"));
    assert!(
        root.contains("unsafe_code = \"forbid\""),
        "Cargo.toml: [workspace.lints.rust] must say unsafe_code = \"forbid\""
    );
    let mut without_lints = Vec::new();
    for member in workspace_members() {
        let path = Path::new(&member).join("Cargo.toml");
        let manifest = read(&path);
        let takes_workspace_lints = manifest.contains("[lints]\nworkspace = true");
        if member == "sys" {
            assert!(
                !takes_workspace_lints && manifest.contains("undocumented_unsafe_blocks"),
                "sys/Cargo.toml: ccc-sys has its own [lints] table (the workspace forbids \
                 unsafe) with undocumented_unsafe_blocks"
            );
        } else if !takes_workspace_lints {
            without_lints.push(path.display().to_string());
        }
    }
    assert!(
        without_lints.is_empty(),
        "these crates do not take the workspace lints (so unsafe is not forbidden there); add \
         `[lints]\\nworkspace = true`:\n{}",
        without_lints.join("\n")
    );
}

/// ccc-sys's lint table is the workspace's (minus `unsafe_code`), so leaving the workspace
/// table does not loosen anything else.
#[test]
fn ccc_sys_lints_follow_the_workspace() {
    let root = read(Path::new("Cargo.toml"));
    let sys = read(Path::new("sys/Cargo.toml"));
    let table = |manifest: &str, header: &str| -> BTreeSet<String> {
        let Some(start) = manifest.find(header) else {
            return BTreeSet::new();
        };
        manifest[start + header.len()..]
            .lines()
            .take_while(|l| !l.starts_with('['))
            .map(|l| l.split('#').next().unwrap_or("").trim().to_owned())
            .filter(|l| !l.is_empty())
            .collect()
    };
    let mut missing = Vec::new();
    for (workspace, own) in [
        ("[workspace.lints.rust]", "[lints.rust]"),
        ("[workspace.lints.clippy]", "[lints.clippy]"),
    ] {
        let theirs = table(&sys, own);
        for lint in table(&root, workspace) {
            if !lint.starts_with("unsafe_code") && !theirs.contains(&lint) {
                missing.push(format!("{own} {lint}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "sys/Cargo.toml lacks workspace lints; copy them into its tables:\n{}",
        missing.join("\n")
    );
}

/// ARCHITECTURE.md maps the repository: every workspace crate, every top-level directory and
/// every fuzz target is named there.
#[test]
fn architecture_names_every_crate_directory_and_fuzz_target() {
    let architecture = read(Path::new("ARCHITECTURE.md"));
    let mut missing = Vec::new();
    for member in workspace_members() {
        let manifest = read(&Path::new(&member).join("Cargo.toml"));
        let name = package_name(&manifest)
            .unwrap_or_else(|| panic!("{member}/Cargo.toml has no [package] name"));
        if !architecture.contains(&format!("`{name}`"))
            && !architecture.contains(&format!("`{member}/`"))
        {
            missing.push(format!(
                "crate {name} ({member}/): name it as `{name}` in its section"
            ));
        }
    }
    let directories: BTreeSet<String> = tracked_files()
        .iter()
        .filter(|f| f.components().count() > 1)
        .filter_map(|f| f.components().next())
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .filter(|d| !d.starts_with('.'))
        .collect();
    for directory in directories {
        if !architecture.contains(&format!("### `{directory}/`")) {
            missing.push(format!(
                "directory {directory}/: add a `### \\`{directory}/\\`` section"
            ));
        }
    }
    for file in tracked_files() {
        if file.parent() == Some(Path::new("fuzz/fuzz_targets")) {
            let target = file.file_stem().unwrap_or_default().to_string_lossy();
            if !architecture.contains(&format!("`{target}`")) {
                missing.push(format!(
                    "fuzz target {target} ({}): name it as `{target}` under ### `fuzz/`",
                    file.display()
                ));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md does not name these; keep it true in the commit that adds them:\n{}",
        missing.join("\n")
    );
}

/// A lint is silenced only with a reason: `#[expect(lint, reason = "...")]` (which also
/// fails once the lint stops firing), or `#[allow(lint, reason = "...")]` where the lint
/// fires only in some configurations.
#[test]
fn no_allow_or_expect_without_a_reason() {
    let mut offenders = Vec::new();
    for file in rust_files() {
        let code = code(&read(&file));
        for (line, attribute) in attributes(&code) {
            let silences = ["allow", "expect"].iter().any(|word| {
                attribute
                    .match_indices(&format!("{word}("))
                    .any(|(at, _)| word_at(&attribute, at, word))
            });
            if silences && !attribute.contains("reason") {
                offenders.push(format!(
                    "{}:{line}: {}",
                    file.display(),
                    attribute.split_whitespace().collect::<Vec<_>>().join(" ")
                ));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "lints silenced without a reason; write #[expect(lint, reason = \"why\")] (or \
         #[allow(lint, reason = \"why\")] where the lint fires only in some cfg):\n{}",
        offenders.join("\n")
    );
}

/// Every crate that parses bytes from a peer (the enclave's and parent's network input, KMS
/// clients' requests, the NSM, EIF files, the kernel command line) denies
/// `clippy::indexing_slicing` outside tests, at every crate root (library and binary): untrusted
/// bytes are read with `get()`, `split_first()` and cursors, never by an index that can panic.
#[test]
fn crates_that_parse_peer_bytes_deny_indexing() {
    const ROOTS: &[&str] = &[
        "sdk/src/lib.rs",
        "eif/src/lib.rs",
        "emulator/src/lib.rs",
        "init/src/main.rs",
        "enclave-template/enclave/src/lib.rs",
        "enclave-template/enclave/src/main.rs",
        "enclave-template/parent/src/lib.rs",
        "enclave-template/parent/src/main.rs",
    ];
    let missing: Vec<&str> = ROOTS
        .iter()
        .copied()
        .filter(|root| {
            !code(&read(Path::new(root)))
                .contains("#![cfg_attr(not(test), deny(clippy::indexing_slicing))]")
        })
        .collect();
    assert!(
        missing.is_empty(),
        "crate roots that parse peer bytes but do not deny indexing; add \
         #![cfg_attr(not(test), deny(clippy::indexing_slicing))]:\n{}",
        missing.join("\n")
    );
}

/// The source files of the workspace's product libraries: not binaries, tests, examples,
/// benches, xtask or the bench, and not `tests/` (ccc-tests is scaffolding whose only callers
/// are tests, which panic on any error).
fn library_sources() -> Vec<PathBuf> {
    let members = workspace_members();
    rust_files()
        .into_iter()
        .filter(|file| {
            members
                .iter()
                .any(|m| file.starts_with(Path::new(m).join("src")))
                && file.file_name() != Some("main.rs".as_ref())
                && !file.components().any(|c| c.as_os_str() == "bin")
                && !file.starts_with("xtask")
                && !file.starts_with("bench")
                && !file.starts_with("tests")
        })
        .collect()
}

/// Public APIs return typed errors (`#[non_exhaustive]` enums whose Display names the fix),
/// never `Result<_, String>`, and no `FromStr`/`TryFrom` has `String` as its error.
#[test]
fn no_string_errors_in_public_apis() {
    let mut offenders = Vec::new();
    for file in library_sources() {
        let code = code(&read(&file));
        // Public functions, and the methods of public traits.
        let mut signatures: Vec<usize> = code
            .match_indices("pub fn ")
            .map(|(at, _)| at)
            .chain(code.match_indices("pub const fn ").map(|(at, _)| at))
            .collect();
        for (start, _) in code.match_indices("pub trait ") {
            let body = code[start..].find('{').map_or(start, |b| start + b);
            let mut depth = 0;
            for (k, c) in code[body..].char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            signatures.extend(
                                code[body..body + k]
                                    .match_indices("fn ")
                                    .filter(|(at, _)| word_at(&code, body + at, "fn"))
                                    .map(|(at, _)| body + at),
                            );
                            break;
                        }
                    }
                    _ => {}
                }
            }
        }
        for at in signatures {
            let end = code[at..].find(['{', ';']).map_or(code.len(), |e| at + e);
            let signature: String = code[at..end].split_whitespace().collect();
            if signature.contains("->Result<") && signature.ends_with(",String>") {
                offenders.push(format!("{}:{}", file.display(), line_of(&code, at)));
            }
        }
        for needle in ["type Err = String", "type Error = String"] {
            for (at, _) in code.match_indices(needle) {
                offenders.push(format!("{}:{}", file.display(), line_of(&code, at)));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "public APIs with String errors; return a #[non_exhaustive] error type whose Display \
         names the fix instead:\n{}",
        offenders.join("\n")
    );
}

/// The SDK prints nothing: diagnostics go to the caller (the KMS client's `Observer`, the
/// credentials server's log callback, typed errors).
#[test]
fn the_sdk_prints_nothing() {
    let mut offenders = Vec::new();
    for file in rust_files() {
        if !file.starts_with("sdk/src") {
            continue;
        }
        let code = code(&read(&file));
        for word in ["println!", "eprintln!", "print!", "eprint!", "dbg!"] {
            for (at, _) in code.match_indices(word) {
                if word_at(&code, at, word.trim_end_matches('!')) {
                    offenders.push(format!(
                        "{}:{} ({word})",
                        file.display(),
                        line_of(&code, at)
                    ));
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "the SDK writes to the console; report through the Observer, the log callback or the \
         error instead:\n{}",
        offenders.join("\n")
    );
}

/// Error types implement `core::error::Error` whatever the features: a no_std user boxes
/// them too.
#[test]
fn error_impls_do_not_depend_on_std() {
    let mut offenders = Vec::new();
    for file in library_sources() {
        let source = read(&file);
        // The cfg's string is blanked in `code`: read it from the source, on lines that are
        // code (not comments).
        let code = code(&source);
        let lines: Vec<(&str, &str)> = source.lines().zip(code.lines()).collect();
        for (index, pair) in lines.windows(2).enumerate() {
            let ((cfg, cfg_code), (_, item)) = (pair[0], pair[1]);
            if cfg.trim() == "#[cfg(feature = \"std\")]"
                && cfg_code.trim_start().starts_with("#[cfg")
                && item.trim_start().starts_with("impl ")
                && item.contains("Error for ")
            {
                offenders.push(format!("{}:{}", file.display(), index + 1));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "Error impls behind the std feature; write `impl core::error::Error for ..` without \
         the cfg:\n{}",
        offenders.join("\n")
    );
}

/// Every integration test left out of `cargo test --workspace` (`test = false`) runs in a
/// CI step: it is listed in xtask/src/ci.rs's `OPT_IN_TESTS`.
#[test]
fn opt_in_tests_run_in_ci() {
    let ci = read(Path::new("xtask/src/ci.rs"));
    let mut missing = Vec::new();
    for member in workspace_members() {
        let path = Path::new(&member).join("Cargo.toml");
        let manifest = read(&path);
        for table in manifest.split("[[test]]").skip(1) {
            let table = table.split("\n[").next().unwrap_or("");
            if !table.lines().any(|l| l.trim() == "test = false") {
                continue;
            }
            let name = table
                .lines()
                .find_map(|l| l.trim().strip_prefix("name = "))
                .map(|n| n.trim_matches('"').to_owned())
                .unwrap_or_default();
            if !ci.contains(&format!("name: \"{name}\"")) {
                missing.push(format!("{}: [[test]] {name}", path.display()));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "these tests are left out of `cargo test --workspace` but no CI step runs them; add \
         them to OPT_IN_TESTS in xtask/src/ci.rs:\n{}",
        missing.join("\n")
    );
}

/// The rules above read code through [`code`]; it must blank what is not code and keep
/// what is, or they would pass (or fail) by accident.
#[test]
fn the_code_filter_blanks_comments_and_literals_only() {
    let source = "let a = \"unsafe { }\"; // unsafe\n/* unsafe /* nested */ unsafe */ unsafe {}\n\
                  let c = '\"'; let r = r#\"unsafe \"# ; fn f<'a>(x: &'a str) {}\n";
    let blanked = code(source);
    assert_eq!(blanked.lines().count(), source.lines().count());
    let words: Vec<usize> = blanked
        .match_indices("unsafe")
        .filter(|(at, _)| word_at(&blanked, *at, "unsafe"))
        .map(|(at, _)| line_of(&blanked, at))
        .collect();
    assert_eq!(words, [2], "{blanked}");
    assert!(blanked.contains("fn f<'a>(x: &'a str)"), "{blanked}");
    let attrs = attributes(&code(
        "#![expect(dead_code)]\n#[allow(\n  clippy::x,\n)]\nfn g() {}",
    ));
    assert_eq!(
        attrs
            .iter()
            .map(|(line, text)| (*line, text.split_whitespace().collect::<String>()))
            .collect::<Vec<_>>(),
        [
            (1, "#![expect(dead_code)]".to_owned()),
            (2, "#[allow(clippy::x,)]".to_owned())
        ]
    );
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

/// The metric names a deployment file names (`deploy/alarms.yaml`, the CloudWatch agent's
/// selectors): every `ccc_…` word.
fn deployment_metric_names() -> Vec<(String, String)> {
    let mut named = Vec::new();
    for file in ["deploy/alarms.yaml", "deploy/cloudwatch-agent.json"] {
        let text = read(Path::new(file));
        for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if word.starts_with("ccc_") {
                named.push((file.to_owned(), word.to_owned()));
            }
        }
    }
    named
}

/// An alarm on a metric the parent does not serve watches nothing and never fires: every
/// metric the deployment files name is registered in the parent's metrics module (counters
/// are registered without the `_total` the exposition adds). The parent's own test
/// (`tests/observe.rs`) checks the names it serves; this keeps deploy/ in step with them.
#[test]
fn every_metric_the_deployment_files_name_is_served_by_the_parent() {
    let source = read(Path::new("enclave-template/parent/src/metrics.rs"));
    let named = deployment_metric_names();
    assert!(
        named.len() >= 4,
        "the deployment files name too few metrics: {named:?}"
    );
    let missing: Vec<String> = named
        .iter()
        .filter(|(_, name)| {
            let registered = name.strip_suffix("_total").unwrap_or(name);
            !source.contains(&format!("\"{registered}\""))
        })
        .map(|(file, name)| format!("{file}: {name}"))
        .collect();
    assert!(
        missing.is_empty(),
        "deploy/ names metrics enclave-template/parent/src/metrics.rs does not register (rename \
         them in deploy/ or register them):\n{}",
        missing.join("\n")
    );
}

/// Rust source as the compiler reads its string literals: a `\` at the end of a line drops
/// the newline and the next line's leading whitespace, and `\"` is a quote. Messages split
/// across lines in the source read whole.
fn joined_literals(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(stripped) = after.strip_prefix('\n') {
            rest = stripped.trim_start_matches([' ', '\t', '\n']);
        } else if let Some(stripped) = after.strip_prefix('"') {
            out.push('"');
            rest = stripped;
        } else {
            out.push('\\');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The messages `docs/troubleshooting.md` quotes as CCC's own: every backtick span on a
/// `- **CCC says:**` line. (Lines saying what KMS or nitro-cli print are not ours to check.)
fn quoted_messages(guide: &str) -> Vec<(usize, String)> {
    let mut quoted = Vec::new();
    for (number, line) in guide.lines().enumerate() {
        let Some(rest) = line.trim_start().strip_prefix("- **CCC says:**") else {
            continue;
        };
        for (index, span) in rest.split('`').enumerate() {
            if index % 2 == 1 {
                quoted.push((number + 1, span.to_owned()));
            }
        }
    }
    quoted
}

/// The debugging guide cannot rot: every message it quotes from CCC occurs verbatim in the
/// non-test Rust sources (string continuations joined), and it covers every symptom issue 12
/// lists.
#[test]
fn the_troubleshooting_guide_quotes_live_messages() {
    let guide = read(Path::new("docs/troubleshooting.md"));
    let quoted = quoted_messages(&guide);
    assert!(
        quoted.len() >= 20,
        "docs/troubleshooting.md quotes only {} messages on `- **CCC says:**` lines; each \
         symptom quotes what CCC prints",
        quoted.len()
    );
    let sources: String = rust_files()
        .iter()
        .filter(|f| !f.components().any(|c| c.as_os_str() == "tests"))
        .map(|f| joined_literals(&read(f)))
        .collect::<Vec<_>>()
        .join("\n");
    let short: Vec<String> = quoted
        .iter()
        .filter(|(_, m)| m.chars().count() < 12)
        .map(|(line, m)| format!("docs/troubleshooting.md:{line}: `{m}`"))
        .collect();
    assert!(
        short.is_empty(),
        "quote at least 12 characters of a message, so the check means something:\n{}",
        short.join("\n")
    );
    let stale: Vec<String> = quoted
        .iter()
        .filter(|(_, m)| !sources.contains(m.as_str()))
        .map(|(line, m)| format!("docs/troubleshooting.md:{line}: `{m}`"))
        .collect();
    assert!(
        stale.is_empty(),
        "docs/troubleshooting.md quotes messages that no longer occur verbatim in the Rust \
         sources (outside tests); update the guide to what the code prints now:\n{}",
        stale.join("\n")
    );
    let headings: Vec<String> = guide
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(str::to_lowercase)
        .collect();
    let topics = [
        "pcrs differ after a rebuild",
        "debug mode",
        "accessdenied",
        "region, key or alias",
        "clock",
        "credentials",
        "imdsv2 hop limit",
        "allowlist",
        "vsock cid or port",
        "memory",
        "signing certificate",
        "throttl",
        "another enclave or too old",
    ];
    let missing: Vec<&str> = topics
        .iter()
        .copied()
        .filter(|t| !headings.iter().any(|h| h.contains(t)))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/troubleshooting.md has no `## ` section on: {}",
        missing.join(", ")
    );
}

/// The guide check reads messages the way rustc does and finds what the guide quotes.
#[test]
fn the_guide_check_joins_continued_literals() {
    let source = "f.write_str(\"enclave runs in debug mode (PCR0, PCR1 and PCR2 are all zero): \\\n                 its memory \\\"and\\\" console\")";
    let joined = joined_literals(source);
    assert!(
        joined.contains("all zero): its memory \"and\" console"),
        "{joined}"
    );
    let guide = "## Debug mode\n- **CCC says:** `all zero): its` and `memory \"and\"`\n- **KMS says:** `x`\n";
    assert_eq!(
        quoted_messages(guide),
        [
            (2, "all zero): its".to_owned()),
            (2, "memory \"and\"".to_owned())
        ]
    );
}
