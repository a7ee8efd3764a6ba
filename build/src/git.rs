//! The git facts a release records about a checkout (commit, dirty flag, `SOURCE_DATE_EPOCH`)
//! and the copy of its tracked files the second pass builds from.

use ccc_eif::SourceDateEpoch;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::error::{Error, IoContext, Result, ensure};

/// The git pathspec of a release's inputs: every tracked file outside `release/`, which only
/// holds published outputs (so committing them changes neither the epoch nor the dirty flag).
const INPUTS_PATHSPEC: [&str; 3] = ["--", ".", ":(exclude)release"];

/// The facts about a checkout a release records.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GitState {
    /// The latest commit that changed an input (a tracked file outside `release/`): HEAD,
    /// unless the commits since only touched `release/` (such as the one publishing a
    /// release). Recording it instead of HEAD keeps a re-run after publishing a no-op.
    pub commit: String,
    /// Tracked files outside `release/` differ from HEAD.
    pub dirty: bool,
    /// The changed files (`git status --porcelain` lines), for the warning.
    pub changes: Vec<String>,
    /// The commit time of [`GitState::commit`].
    pub epoch: SourceDateEpoch,
}

/// Reads commit, dirty flag and epoch of the checkout at `root`.
///
/// # Errors
/// `root` is not a git checkout (the error says to commit first), or git's output is
/// unexpected.
pub fn state(root: &Path) -> Result<GitState> {
    let mut status = vec!["status", "--porcelain=v1", "--untracked-files=no"];
    status.extend(INPUTS_PATHSPEC);
    let changes: Vec<String> = git(root, &status)?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect();
    let mut log = vec!["log", "-1", "--format=%H %ct"];
    log.extend(INPUTS_PATHSPEC);
    let mut line = git(root, &log)?.trim().to_owned();
    if line.is_empty() {
        // No commit touches an input (a repository holding only release/): use HEAD.
        line = git(root, &["log", "-1", "--format=%H %ct"])?
            .trim()
            .to_owned();
    }
    let unexpected = |what: &str| {
        Error::program(
            "git log",
            format!("printed `{line}`, expected {what} (in {})", root.display()),
        )
    };
    let (commit, secs) = line
        .split_once(' ')
        .ok_or_else(|| unexpected("`<commit> <time>`"))?;
    ensure!(
        commit.len() == 40 && commit.bytes().all(|b| b.is_ascii_hexdigit()),
        unexpected("a commit of 40 hex digits")
    );
    let epoch = SourceDateEpoch::parse(secs).map_err(|_| unexpected("a commit time"))?;
    Ok(GitState {
        commit: commit.to_owned(),
        dirty: !changes.is_empty(),
        changes,
        epoch,
    })
}

/// `git -C root ARGS`'s stdout.
fn git(root: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            Error::program(
                "git",
                format!("cannot run it ({e}); a release is built from a git checkout"),
            )
        })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let hint = if stderr.contains("does not have any commits")
            || stderr.contains("not a git repository")
        {
            ": a release is built from a git checkout with at least one commit (`git init && \
             git add -A && git commit`)"
        } else {
            ""
        };
        return Err(Error::program(
            format!("git {}", args.join(" ")),
            format!("failed in {}: {}{hint}", root.display(), stderr.trim()),
        ));
    }
    String::from_utf8(out.stdout)
        .map_err(|_| Error::program(format!("git {}", args.join(" ")), "printed non-UTF-8 text"))
}

/// HEAD's commit of the checkout at `root` and whether its tracked files differ from it;
/// `None` when `root` is not a git checkout (a CCC source without history).
pub fn head(root: &Path) -> Option<(String, bool)> {
    let commit = git(root, &["rev-parse", "HEAD"]).ok()?.trim().to_owned();
    let dirty = !git(root, &["status", "--porcelain=v1", "--untracked-files=no"])
        .ok()?
        .trim()
        .is_empty();
    Some((commit, dirty))
}

/// Copies the tracked input files of the checkout at `root` (as they are in the working tree,
/// so a dirty tree is built the same way twice) into `dest`, which must not exist yet. Files
/// deleted in the working tree are skipped. Returns how many files were copied.
///
/// # Errors
/// git fails, or a file cannot be copied.
pub fn export_tracked(root: &Path, dest: &Path) -> Result<usize> {
    ensure!(
        !dest.exists(),
        Error::project(format!("{} exists; the copy must be fresh", dest.display()))
    );
    let mut args = vec!["ls-files", "-z", "--cached"];
    args.extend(INPUTS_PATHSPEC);
    let listing = git(root, &args)?;
    let mut copied = 0;
    for name in listing.split('\0').filter(|n| !n.is_empty()) {
        let from = root.join(name);
        let to = dest.join(name);
        let Ok(meta) = std::fs::symlink_metadata(&from) else {
            continue;
        };
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).io("create", parent)?;
        }
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&from).io("read the link", &from)?;
            std::os::unix::fs::symlink(&target, &to).io("create the symlink", &to)?;
        } else if meta.is_file() {
            std::fs::copy(&from, &to).io(&format!("copy {} to", from.display()), &to)?;
        } else {
            // A submodule (a directory entry in the index): refuse to guess.
            return Err(Error::project(format!(
                "{name} is tracked but is neither a file nor a symlink (a submodule?): a \
                 release copies tracked files only"
            )));
        }
        copied += 1;
    }
    ensure!(
        copied > 0,
        Error::project(format!("git lists no tracked files in {}", root.display()))
    );
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A throwaway repository: commits with fixed dates, then the facts read back.
    #[test]
    fn git_facts_ignore_the_release_directory() {
        let dir = std::env::temp_dir().join(format!("ccc-release-git-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("release/0.1.0")).unwrap();
        let run = |args: &[&str], date: &str| {
            let status = Command::new("git")
                .args(["-c", "user.name=t", "-c", "user.email=t@t"])
                .args(args)
                .current_dir(&dir)
                .env("GIT_AUTHOR_DATE", date)
                .env("GIT_COMMITTER_DATE", date)
                .stdout(Stdio::null())
                .status()
                .unwrap();
            assert!(status.success(), "git {args:?}");
        };
        run(&["init", "-q"], "");
        // No commit yet: the error says what to do.
        let err = state(&dir).unwrap_err().to_string();
        assert!(err.contains("git commit"), "{err}");
        std::fs::write(dir.join("a.rs"), "fn main() {}\n").unwrap();
        run(&["add", "a.rs"], "");
        run(&["commit", "-q", "-m", "code"], "@1700000000 +0000");
        std::fs::write(dir.join("release/0.1.0/SHA256SUMS"), "x\n").unwrap();
        run(&["add", "release"], "");
        run(&["commit", "-q", "-m", "publish"], "@1800000000 +0000");

        let facts = state(&dir).unwrap();
        assert_eq!(facts.epoch, SourceDateEpoch::from_secs(1_700_000_000));
        assert!(!facts.dirty);
        // The recorded commit is the one that changed the code, not the publishing one.
        let head_1 = Command::new("git")
            .args(["rev-parse", "HEAD~1"])
            .current_dir(&dir)
            .output()
            .unwrap();
        assert_eq!(
            facts.commit,
            String::from_utf8(head_1.stdout).unwrap().trim()
        );
        let (head_commit, head_dirty) = head(&dir).unwrap();
        assert_ne!(head_commit, facts.commit, "HEAD is the publishing commit");
        assert!(!head_dirty);
        // A changed published file is not a changed input.
        std::fs::write(dir.join("release/0.1.0/SHA256SUMS"), "y\n").unwrap();
        assert!(!state(&dir).unwrap().dirty);
        std::fs::write(dir.join("a.rs"), "fn main() { }\n").unwrap();
        let facts = state(&dir).unwrap();
        assert!(facts.dirty);
        assert_eq!(facts.changes, [" M a.rs"]);

        // The export holds the working-tree content of tracked inputs only.
        std::fs::write(dir.join("untracked.rs"), "").unwrap();
        let export = dir.join("export");
        assert_eq!(export_tracked(&dir, &export).unwrap(), 1);
        assert_eq!(
            std::fs::read_to_string(export.join("a.rs")).unwrap(),
            "fn main() { }\n"
        );
        assert!(!export.join("untracked.rs").exists());
        assert!(!export.join("release").exists());
        assert!(export_tracked(&dir, &export).is_err(), "must be fresh");
        assert!(head(&std::env::temp_dir().join("ccc-no-such-repo")).is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
