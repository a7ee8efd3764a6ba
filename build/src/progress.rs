//! Long-running build commands (kernel, QEMU): the full output goes to a log file, the
//! terminal gets a line every few seconds with the command's latest line, and a failure prints
//! the log's tail and its path.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::error::{Error, IoContext, Result};

/// How often the latest output line is shown.
const REPORT_EVERY: Duration = Duration::from_secs(15);

/// How many lines of the log are printed when the command fails.
const TAIL_LINES: usize = 40;

/// Formats a duration as `1m05s` / `12.3s`.
pub fn elapsed(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 60 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// Runs `command` with stdout and stderr merged into `log` (appended), printing
/// `label: [elapsed] <latest line>` every few seconds.
///
/// # Errors
/// The command could not start, or exited unsuccessfully (the error names the log; its last
/// lines are printed first).
pub fn run_logged(mut command: Command, label: &str, log: &Path) -> Result<()> {
    let mut log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .io("open", log)?;
    writeln!(log_file, "$ {command:?}").io("write", log)?;
    let pipe_error = |e| Error::program(label, format!("cannot create a pipe: {e}"));
    let (reader, writer) = std::io::pipe().map_err(pipe_error)?;
    command
        .stdin(std::process::Stdio::null())
        .stdout(writer.try_clone().map_err(pipe_error)?)
        .stderr(writer);
    let mut child = command
        .spawn()
        .map_err(|e| Error::program(label, format!("cannot start {command:?}: {e}")))?;
    // Our copies of the pipe's write end must go, or reading never sees end-of-file.
    drop(command);
    let started = Instant::now();
    let mut last_report = Instant::now();
    let mut tail: VecDeque<String> = VecDeque::with_capacity(TAIL_LINES);
    for line in BufReader::new(reader).split(b'\n') {
        let line =
            line.map_err(|e| Error::program(label, format!("cannot read its output: {e}")))?;
        let line = String::from_utf8_lossy(&line).into_owned();
        writeln!(log_file, "{line}").io("write", log)?;
        if last_report.elapsed() >= REPORT_EVERY {
            eprintln!("{label}: [{}] {}", elapsed(started.elapsed()), line.trim());
            last_report = Instant::now();
        }
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
    let status = child
        .wait()
        .map_err(|e| Error::program(label, format!("cannot wait for it: {e}")))?;
    if !status.success() {
        for line in &tail {
            eprintln!("{label}| {line}");
        }
        return Err(Error::program(
            label,
            format!(
                "failed ({status}) after {}; full log: {}",
                elapsed(started.elapsed()),
                log.display()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_output_and_reports_failure_with_the_log_path() {
        let dir = std::env::temp_dir().join(format!("ccc-progress-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("ok.log");
        let mut ok = Command::new("sh");
        ok.args(["-c", "echo out; echo err >&2"]);
        run_logged(ok, "test", &log).unwrap();
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(
            text.contains("\nout\n") && text.contains("\nerr\n"),
            "{text}"
        );

        let log = dir.join("fail.log");
        let mut fail = Command::new("sh");
        fail.args(["-c", "echo last words; exit 3"]);
        let err = run_logged(fail, "test", &log).unwrap_err().to_string();
        assert!(err.contains("exit status: 3"), "{err}");
        assert!(err.contains(&log.display().to_string()), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(elapsed(Duration::from_millis(12_340)), "12.3s");
        assert_eq!(elapsed(Duration::from_secs(65)), "1m05s");
    }
}
