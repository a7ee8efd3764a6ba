//! The init refuses to run anywhere but as PID 1, so running it by mistake on a host cannot
//! mount over its /dev or reboot it.

use std::process::Command;

#[test]
fn refuses_to_run_unless_pid_1() {
    let out = Command::new(env!("CARGO_BIN_EXE_ccc-init"))
        .output()
        .expect("run ccc-init");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("ccc-init: must run as PID 1"),
        "stderr: {stderr}"
    );
    assert!(out.stdout.is_empty());
}
