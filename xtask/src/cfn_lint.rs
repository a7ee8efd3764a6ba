//! `cargo xtask ci`'s `cfn-lint` step: AWS's CloudFormation linter over the templates under
//! `deploy/` (the alarms an operator deploys), so a template that CloudFormation would refuse,
//! or that names a property or an intrinsic wrongly, fails CI instead of the operator's deploy.
//! cfn-lint comes from PyPI, pinned, into a virtualenv under `target/tools/` on first use
//! (like moto), and is reused after.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The cfn-lint release installed (PyPI `cfn-lint`).
const CFN_LINT_VERSION: &str = "1.58.0";

/// cfn-lint's console entry point, as its installed script calls it (the arguments follow).
const RUN_CFN_LINT: &str = "import sys; from cfnlint.runner import main; sys.exit(main())";

/// The CloudFormation templates CI lints (relative to the workspace root).
const TEMPLATES: &[&str] = &["deploy/alarms.yaml"];

/// The virtualenv's `python` (cfn-lint installed in it), installed into `tools` on first use:
/// `python3 -m venv` into a staging directory, `pip install cfn-lint==VERSION`, then a rename
/// (a concurrent run that loses the race uses the winner's). The venv's `bin/cfn-lint` script
/// names the staging directory's python in its `#!` line, so cfn-lint is run through `python`.
fn ensure_installed(tools: &Path) -> Result<PathBuf> {
    let venv = tools.join(format!("cfn-lint-venv-{CFN_LINT_VERSION}"));
    let binary = venv.join("bin/python");
    if binary.exists() {
        return Ok(binary);
    }
    std::fs::create_dir_all(tools).with_context(|| format!("cannot create {}", tools.display()))?;
    let staging = tools.join(format!(
        "cfn-lint-venv-{CFN_LINT_VERSION}.tmp-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&staging);
    eprintln!(
        "cfn-lint: installing cfn-lint=={CFN_LINT_VERSION} into {} (first run only)",
        venv.display()
    );
    run(
        Command::new("python3").args(["-m", "venv"]).arg(&staging),
        "create the cfn-lint virtualenv (on Debian: apt-get install python3-venv)",
    )?;
    run(
        Command::new(staging.join("bin/python"))
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .arg(format!("cfn-lint=={CFN_LINT_VERSION}")),
        "pip install cfn-lint (needs access to PyPI)",
    )?;
    match std::fs::rename(&staging, &venv) {
        Ok(()) => Ok(binary),
        Err(_) if binary.exists() => {
            let _ = std::fs::remove_dir_all(&staging);
            Ok(binary)
        }
        Err(e) => Err(e)
            .with_context(|| format!("cannot move {} to {}", staging.display(), venv.display())),
    }
}

fn run(command: &mut Command, what: &str) -> Result<()> {
    let status = command.status().with_context(|| format!("cannot {what}"))?;
    if !status.success() {
        bail!("cannot {what}: {status}");
    }
    Ok(())
}

/// Lints every template in [`TEMPLATES`]; cfn-lint prints each finding with its rule and line.
///
/// # Errors
/// cfn-lint could not be installed, or it reported an error or a warning.
pub(crate) fn ci_step() -> Result<()> {
    let root = crate::workspace_root();
    let python = ensure_installed(&root.join("target/tools"))?;
    for template in TEMPLATES {
        let status = Command::new(&python)
            .args(["-c", RUN_CFN_LINT, "--"])
            .arg(root.join(template))
            .status()
            .with_context(|| format!("cannot run cfn-lint with {}", python.display()))?;
        if !status.success() {
            bail!(
                "cfn-lint found problems in {template} ({status}): fix each finding listed above \
                 (its rule id, e.g. E3002, is explained at the cfn-lint rules list)"
            );
        }
        eprintln!("cfn-lint: {template}: no findings");
    }
    Ok(())
}
