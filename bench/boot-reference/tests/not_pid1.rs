//! The reference refuses to run anywhere but as PID 1, so starting it by mistake on a host
//! cannot mount over its /dev or reboot it.

use std::process::Command;

#[test]
fn refuses_to_run_unless_pid_1() {
    let out = Command::new(env!("CARGO_BIN_EXE_ccc-boot-reference"))
        .output()
        .expect("run ccc-boot-reference");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("ccc-boot-reference: must run as PID 1"),
        "stdout: {stdout}"
    );
}
