//! The application's launch description (nitro-cli's `/cmd` and `/env`), the executable lookup,
//! and how its end is reported.
//!
//! nitro-cli's customer ramdisk carries `/cmd` (the image's `Cmd`, else its `Entrypoint`, one
//! argv element per line) and `/env` (one `KEY=VALUE` per line) next to `/rootfs`; AWS's init
//! reads them line by line, without quoting, so an element cannot contain a newline (a trailing
//! `\n` ends each line). This module reads the same format.

use std::ffi::CString;
use std::fmt;
use std::path::PathBuf;

/// Largest `/cmd` or `/env` accepted. Linux caps argv + envp at a quarter of the stack limit
/// (`MAX_ARG_STRLEN` is 128 KiB per string); 1 MiB is far above any real image's needs.
pub(crate) const MAX_LAUNCH_FILE_BYTES: usize = 1024 * 1024;

/// Where a bare program name is looked up, as AWS's init does (`PATH` for the lookup only; the
/// app's own environment comes from `/env` unchanged).
pub(crate) const SEARCH_PATH: [&str; 4] = ["/sbin", "/usr/sbin", "/bin", "/usr/bin"];

/// What `/cmd` and `/env` describe, ready for `execve`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Launch {
    /// argv; never empty.
    pub(crate) argv: Vec<CString>,
    /// envp, `KEY=VALUE` each.
    pub(crate) envp: Vec<CString>,
}

/// A launch file the init cannot use.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) enum LaunchError {
    /// Larger than [`MAX_LAUNCH_FILE_BYTES`].
    TooLarge { file: &'static str, len: usize },
    /// A line holds a NUL byte, which argv/envp strings cannot carry.
    Nul { file: &'static str, line: usize },
    /// `/cmd` has no program to run.
    EmptyCmd,
    /// An `/env` line without `=` or with an empty key.
    BadEnv { line: usize, text: String },
}

impl fmt::Display for LaunchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge { file, len } => write!(
                f,
                "{file} has {len} bytes, more than the {MAX_LAUNCH_FILE_BYTES} allowed"
            ),
            Self::Nul { file, line } => write!(
                f,
                "{file} line {line} contains a NUL byte, which an argument or environment \
                 string cannot hold"
            ),
            Self::EmptyCmd => write!(
                f,
                "/cmd names no program: put the argv, one element per line, in the customer \
                 ramdisk's /cmd"
            ),
            Self::BadEnv { line, text } => write!(
                f,
                "/env line {line} is `{text}`, expected KEY=VALUE with a non-empty KEY"
            ),
        }
    }
}

/// Splits a launch file into its lines: `\n` ends a line, a last line without one still counts,
/// and nothing else is interpreted (empty lines are empty strings, as with AWS's init).
fn lines(file: &'static str, bytes: &[u8]) -> Result<Vec<CString>, LaunchError> {
    if bytes.len() > MAX_LAUNCH_FILE_BYTES {
        return Err(LaunchError::TooLarge {
            file,
            len: bytes.len(),
        });
    }
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    if body.is_empty() {
        return Ok(Vec::new());
    }
    body.split(|&b| b == b'\n')
        .enumerate()
        .map(|(i, line)| CString::new(line).map_err(|_| LaunchError::Nul { file, line: i + 1 }))
        .collect()
}

impl Launch {
    /// Builds the launch description from the bytes of `/cmd` and `/env`.
    ///
    /// # Errors
    /// An empty `/cmd`, NUL bytes, an `/env` line that is not `KEY=VALUE`, or a file too large.
    pub(crate) fn parse(cmd: &[u8], env: &[u8]) -> Result<Self, LaunchError> {
        let argv = lines("/cmd", cmd)?;
        match argv.first() {
            Some(program) if !program.as_bytes().is_empty() => {}
            _ => return Err(LaunchError::EmptyCmd),
        }
        let envp = lines("/env", env)?;
        for (i, entry) in envp.iter().enumerate() {
            let bytes = entry.as_bytes();
            if bytes
                .iter()
                .position(|&b| b == b'=')
                .is_none_or(|eq| eq == 0)
            {
                return Err(LaunchError::BadEnv {
                    line: i + 1,
                    text: String::from_utf8_lossy(bytes).into_owned(),
                });
            }
        }
        Ok(Self { argv, envp })
    }

    /// The paths to try, in order, for `argv[0]`: itself when it contains a `/`, otherwise
    /// each [`SEARCH_PATH`] directory joined with it.
    pub(crate) fn candidates(&self) -> Vec<PathBuf> {
        let program = self
            .argv
            .first()
            .map(|p| String::from_utf8_lossy(p.as_bytes()).into_owned())
            .unwrap_or_default();
        if program.contains('/') {
            vec![PathBuf::from(program)]
        } else {
            SEARCH_PATH
                .iter()
                .map(|dir| PathBuf::from(dir).join(&program))
                .collect()
        }
    }
}

/// How the application ended, from its `waitpid` status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// `exit(code)`.
    Exited(i32),
    /// Killed by a signal.
    Signaled(i32),
}

impl Ending {
    /// Decodes a raw `waitpid` status (Linux layout: low 7 bits = signal, next byte = code).
    pub(crate) fn from_wait_status(status: i32) -> Self {
        let signal = status & 0x7f;
        if signal == 0 {
            Self::Exited((status >> 8) & 0xff)
        } else {
            Self::Signaled(signal)
        }
    }
}

impl fmt::Display for Ending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Exited(code) => write!(f, "app exited with status {code}"),
            Self::Signaled(signal) => match signal_name(signal) {
                Some(name) => write!(f, "app killed by signal {signal} ({name})"),
                None => write!(f, "app killed by signal {signal}"),
            },
        }
    }
}

/// The name of the common x86_64 Linux signals (asm-generic numbering).
fn signal_name(signal: i32) -> Option<&'static str> {
    Some(match signal {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        5 => "SIGTRAP",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        10 => "SIGUSR1",
        11 => "SIGSEGV",
        12 => "SIGUSR2",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        31 => "SIGSYS",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[CString]) -> Vec<&str> {
        v.iter().map(|s| s.to_str().unwrap()).collect()
    }

    #[test]
    fn nitro_cli_layout() {
        // The shape nitro-cli's own test expects for `cmd` and `env`.
        let launch = Launch::parse(
            b"/bin/hello.sh\n",
            b"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n\
              HELLO=Hello from the enclave side!\n",
        )
        .unwrap();
        assert_eq!(strings(&launch.argv), ["/bin/hello.sh"]);
        assert_eq!(
            strings(&launch.envp),
            [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "HELLO=Hello from the enclave side!"
            ]
        );
        assert_eq!(launch.candidates(), [PathBuf::from("/bin/hello.sh")]);
    }

    #[test]
    fn lines_are_taken_verbatim() {
        let launch = Launch::parse(b"app\n--flag= spaced  value \n\n-x", b"").unwrap();
        assert_eq!(
            strings(&launch.argv),
            ["app", "--flag= spaced  value ", "", "-x"]
        );
        assert!(launch.envp.is_empty());
        // `=` inside a value and an empty value are fine.
        let launch = Launch::parse(b"app", b"A=b=c\nEMPTY=\n").unwrap();
        assert_eq!(strings(&launch.envp), ["A=b=c", "EMPTY="]);
    }

    #[test]
    fn bare_names_are_searched_in_order() {
        let launch = Launch::parse(b"server\n", b"").unwrap();
        assert_eq!(
            launch.candidates(),
            [
                "/sbin/server",
                "/usr/sbin/server",
                "/bin/server",
                "/usr/bin/server"
            ]
            .map(PathBuf::from)
        );
        let launch = Launch::parse(b"./server\n", b"").unwrap();
        assert_eq!(launch.candidates(), [PathBuf::from("./server")]);
    }

    #[test]
    fn empty_cmd_is_an_error() {
        for cmd in [&b""[..], b"\n", b"\n--arg\n"] {
            assert_eq!(
                Launch::parse(cmd, b""),
                Err(LaunchError::EmptyCmd),
                "{cmd:?}"
            );
        }
    }

    #[test]
    fn bad_env_lines() {
        assert_eq!(
            Launch::parse(b"app", b"A=1\nNOEQUALS\n"),
            Err(LaunchError::BadEnv {
                line: 2,
                text: "NOEQUALS".into()
            })
        );
        assert_eq!(
            Launch::parse(b"app", b"=value"),
            Err(LaunchError::BadEnv {
                line: 1,
                text: "=value".into()
            })
        );
        // A blank line in /env is not an environment entry.
        assert!(matches!(
            Launch::parse(b"app", b"A=1\n\nB=2\n"),
            Err(LaunchError::BadEnv { line: 2, .. })
        ));
    }

    #[test]
    fn nul_and_size_limits() {
        assert_eq!(
            Launch::parse(b"app\nx\0y\n", b""),
            Err(LaunchError::Nul {
                file: "/cmd",
                line: 2
            })
        );
        let big = vec![b'a'; MAX_LAUNCH_FILE_BYTES + 1];
        assert_eq!(
            Launch::parse(b"app", &big),
            Err(LaunchError::TooLarge {
                file: "/env",
                len: MAX_LAUNCH_FILE_BYTES + 1
            })
        );
    }

    #[test]
    fn wait_status_formatting() {
        // Raw statuses as the kernel builds them: exit code << 8, or the signal number.
        assert_eq!(
            Ending::from_wait_status(0).to_string(),
            "app exited with status 0"
        );
        assert_eq!(
            Ending::from_wait_status(3 << 8).to_string(),
            "app exited with status 3"
        );
        assert_eq!(Ending::from_wait_status(255 << 8), Ending::Exited(255));
        assert_eq!(
            Ending::from_wait_status(9).to_string(),
            "app killed by signal 9 (SIGKILL)"
        );
        // Core-dump bit (0x80) set with SIGSEGV.
        assert_eq!(
            Ending::from_wait_status(0x80 | 11).to_string(),
            "app killed by signal 11 (SIGSEGV)"
        );
        assert_eq!(
            Ending::from_wait_status(40).to_string(),
            "app killed by signal 40"
        );
    }
}
