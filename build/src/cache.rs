//! The per-user cache of what is expensive to make and the same for every project: CCC's
//! kernel, QEMU with the nitro-enclave machine, vhost-device-vsock, and the downloads they are
//! made from. It lives in `$CCC_CACHE_DIR`, else `$XDG_CACHE_HOME/ccc`, else
//! `$HOME/.cache/ccc`, and is shared by every project (a second project on the machine does not
//! rebuild the kernel).
//!
//! Entries are directories named by a hash of everything that decides their bytes (never by a
//! path, a user or a project), so a cache location cannot change what is built. An entry is
//! made while holding its lock file (`<kind>/locks/<key>.lock`), and its files appear by
//! rename, so two builds at once neither both compile nor see a half-written artefact.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};

/// The variable that overrides the cache's location.
pub const CACHE_DIR_VARIABLE: &str = "CCC_CACHE_DIR";

/// The cache directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    /// The cache the environment names: `$CCC_CACHE_DIR`, else `$XDG_CACHE_HOME/ccc`, else
    /// `$HOME/.cache/ccc` (relative values are ignored, as the XDG specification asks).
    ///
    /// # Errors
    /// None of the three variables gives an absolute path.
    pub fn from_env() -> Result<Self> {
        Self::locate(|name| std::env::var_os(name).map(PathBuf::from))
    }

    fn locate(var: impl Fn(&str) -> Option<PathBuf>) -> Result<Self> {
        let absolute = |name: &str| var(name).filter(|p| p.is_absolute());
        let root = absolute(CACHE_DIR_VARIABLE)
            .or_else(|| absolute("XDG_CACHE_HOME").map(|p| p.join("ccc")))
            .or_else(|| absolute("HOME").map(|p| p.join(".cache").join("ccc")))
            .ok_or_else(|| Error::Prerequisite {
                problem: format!(
                    "a cache directory: set {CACHE_DIR_VARIABLE} (or XDG_CACHE_HOME, or HOME) \
                     to an absolute path"
                ),
            })?;
        Ok(Self { root })
    }

    /// A cache at `root`.
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The cache's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of one kind of entry (`kernel`, `tools`).
    pub fn dir(&self, kind: &str) -> PathBuf {
        self.root.join(kind)
    }

    /// Takes the lock of entry `key` of `kind`, waiting (and saying so) while another process
    /// holds it. The lock is released when the guard is dropped, or when the process ends.
    ///
    /// # Errors
    /// The lock file cannot be created or locked.
    pub fn lock(&self, kind: &str, key: &str) -> Result<Lock> {
        let dir = self.dir(kind).join("locks");
        std::fs::create_dir_all(&dir).io("create", &dir)?;
        let path = dir.join(format!("{key}.lock"));
        let file = File::create(&path).io("create", &path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                eprintln!(
                    "cache: another process is making {kind} {key}; waiting for {}",
                    path.display()
                );
                file.lock().io("lock", &path)?;
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::io("lock", &path, e)),
        }
        Ok(Lock { _file: file })
    }

    /// Takes the lock of entry `key` of `kind` only if nobody holds it.
    ///
    /// # Errors
    /// The lock file cannot be created or locked.
    pub fn try_lock(&self, kind: &str, key: &str) -> Result<Option<Lock>> {
        let dir = self.dir(kind).join("locks");
        std::fs::create_dir_all(&dir).io("create", &dir)?;
        let path = dir.join(format!("{key}.lock"));
        let file = File::create(&path).io("create", &path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Lock { _file: file })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(Error::io("lock", &path, e)),
        }
    }
}

/// A held cache lock (released on drop).
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

/// Copies `from` to `to` through a temporary name next to `to` and a rename, so `to` is either
/// absent or complete.
///
/// # Errors
/// The copy or the rename fails.
pub fn install_file(from: &Path, to: &Path) -> Result<()> {
    let partial = partial_name(to);
    std::fs::copy(from, &partial).io(&format!("copy {} to", from.display()), &partial)?;
    std::fs::rename(&partial, to).io(&format!("rename {} to", partial.display()), to)
}

/// Writes `bytes` to `to` through a temporary name and a rename.
///
/// # Errors
/// The write or the rename fails.
pub fn install_bytes(bytes: &[u8], to: &Path) -> Result<()> {
    let partial = partial_name(to);
    std::fs::write(&partial, bytes).io("write", &partial)?;
    std::fs::rename(&partial, to).io(&format!("rename {} to", partial.display()), to)
}

fn partial_name(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".partial-{}", std::process::id()));
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_follows_the_documented_order() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| PathBuf::from(v))
            }
        };
        let all = env(&[
            ("CCC_CACHE_DIR", "/c"),
            ("XDG_CACHE_HOME", "/x"),
            ("HOME", "/h"),
        ]);
        assert_eq!(Cache::locate(all).unwrap().root(), Path::new("/c"));
        let xdg = env(&[("XDG_CACHE_HOME", "/x"), ("HOME", "/h")]);
        assert_eq!(Cache::locate(xdg).unwrap().root(), Path::new("/x/ccc"));
        let home = env(&[("HOME", "/h")]);
        assert_eq!(
            Cache::locate(home).unwrap().root(),
            Path::new("/h/.cache/ccc")
        );
        // Relative values are ignored.
        let relative = env(&[
            ("CCC_CACHE_DIR", "c"),
            ("XDG_CACHE_HOME", "x"),
            ("HOME", "/h"),
        ]);
        assert_eq!(
            Cache::locate(relative).unwrap().root(),
            Path::new("/h/.cache/ccc")
        );
        let err = Cache::locate(env(&[])).unwrap_err().to_string();
        assert!(err.contains("CCC_CACHE_DIR"), "{err}");
    }

    /// While a key's lock is held, nobody else can take it (flock locks belong to the open
    /// file, so a second open in the same process conflicts like another process would);
    /// other keys are independent; dropping the guard releases it.
    #[test]
    fn locks_exclude_per_key() {
        let dir = std::env::temp_dir().join(format!("ccc-cache-lock-{}", std::process::id()));
        let cache = Cache::at(&dir);
        let held = cache.lock("kernel", "k1").unwrap();
        let other = cache.lock("kernel", "k2").unwrap();
        let path = dir.join("kernel/locks/k1.lock");
        let probe = File::open(&path).unwrap();
        assert!(matches!(
            probe.try_lock(),
            Err(std::fs::TryLockError::WouldBlock)
        ));
        drop(held);
        probe.try_lock().unwrap();
        probe.unlock().unwrap();
        drop(other);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn installs_are_whole_or_absent() {
        let dir = std::env::temp_dir().join(format!("ccc-cache-install-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        install_bytes(b"image", &dir.join("bzImage")).unwrap();
        install_file(&dir.join("bzImage"), &dir.join("copy")).unwrap();
        assert_eq!(std::fs::read(dir.join("copy")).unwrap(), b"image");
        let names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(!names.iter().any(|n| n.contains("partial")), "{names:?}");
        assert!(install_file(&dir.join("absent"), &dir.join("x")).is_err());
        assert!(!dir.join("x").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
