//! `REPRODUCE.md` and the rebuild commands of a release: how anyone rebuilds the same bytes,
//! in the words of the tool that made it (`cargo xtask` in CCC's repository, `cargo ccc` in a
//! project).

use crate::project::{AppTarget, CccOrigin};

use super::{ReleaseContext, ReleaseFiles};

/// The arguments that select what a release builds (for the rebuild commands).
fn selection_args(ctx: &ReleaseContext<'_>) -> String {
    let mut args = String::new();
    if *ctx.app != ctx.project.app {
        args.push_str(&format!(" --app {}", ctx.app.package));
        match &ctx.app.target {
            AppTarget::Bin(name) if *name == ctx.app.package => {}
            AppTarget::Bin(name) => args.push_str(&format!(" --bin {name}")),
            AppTarget::Example(name) => args.push_str(&format!(" --example {name}")),
        }
    }
    if ctx.custom_kernel {
        args.push_str(" --kernel <the same bzImage>");
    }
    args
}

/// The commands that rebuild the release and compare its PCRs (in the measurements file and
/// `REPRODUCE.md`).
pub(super) fn rebuild_commands(ctx: &ReleaseContext<'_>) -> Vec<String> {
    let kernel = if ctx.custom_kernel {
        " --kernel <the same bzImage>"
    } else {
        ""
    };
    let project = ctx.project;
    let mut commands = if project.is_ccc() {
        vec!["git clone <this repository> ccc && cd ccc".to_owned()]
    } else {
        vec![format!(
            "git clone <this project's repository> {0} && cd {0}",
            project.image_name
        )]
    };
    commands.extend([
        format!(
            "git checkout <the commit that published release/{}>",
            ctx.version
        ),
        format!(
            "git diff --stat {} HEAD -- . ':(exclude)release'   # must print nothing",
            ctx.git.commit
        ),
    ]);
    if !project.is_ccc() {
        let commit = project.ccc.commit().map_or_else(
            || "<CCC's commit in build-manifest.json>".to_owned(),
            |(c, _)| c,
        );
        commands.push(match &project.ccc.origin {
            CccOrigin::Git { url, .. } => {
                format!("cargo install --locked --git {url} --rev {commit} cargo-ccc")
            }
            _ => format!(
                "cargo install --locked --path <a CCC checkout at {commit}>/cargo-ccc   # and \
                 point the ccc-* path dependencies at that checkout"
            ),
        });
    }
    commands.push(format!(
        "{} verify-release {}{kernel}",
        ctx.command(),
        ctx.version
    ));
    commands
}

/// The text of `REPRODUCE.md`.
pub(super) fn markdown(
    ctx: &ReleaseContext<'_>,
    names: &ReleaseFiles,
    rebuild: &[String],
) -> String {
    let version = ctx.version;
    let m = &ctx.first.image.measurements;
    let dirty = if ctx.git.dirty {
        "\n\n**Warning: built from a working tree with uncommitted changes (`dirty: true` in the \
         manifest). Nobody can rebuild it from the commit alone.**"
    } else {
        ""
    };
    let args = selection_args(ctx);
    let tool = ctx.command();
    let (title, ccc_note) = if ctx.project.is_ccc() {
        ("CCC".to_owned(), String::new())
    } else {
        let ccc = &ctx.project.ccc;
        let at = ccc
            .commit()
            .map_or_else(String::new, |(commit, _)| format!(" at commit `{commit}`"));
        (
            format!("`{}`", ctx.project.image_name),
            format!(
                "\n\nBuilt with CCC {}{at} (`ccc` in `build-manifest.json`): its `ccc-init`, \
                 kernel configuration and kernel pin, and `cargo-ccc` from the same commit.",
                ccc.version
            ),
        )
    };
    let kernel_text = if ctx.custom_kernel {
        "The kernel was supplied with `--kernel` (its SHA-256 is in the manifest); bring the \
         same file."
    } else {
        "The kernel is built from the Debian package pinned in CCC's `kernel-config/source.json` \
         with CCC's committed `kernel-config/config-6.12-x86_64` and the patches of \
         `kernel-config/patches/`, each pinned by SHA-256 (listed under `kernel.patches` in the \
         manifest; see CCC's `docs/kernel.md`) (about 5 minutes on 2 cores; \
         cached per user in `$CCC_CACHE_DIR`, else `$XDG_CACHE_HOME/ccc`, else \
         `~/.cache/ccc`, and shared by every project)."
    };
    let full_text = if ctx.full {
        "This release ran with `--full`: the kernel was also rebuilt in another directory and \
         compared, byte for byte."
            .to_owned()
    } else {
        format!(
            "The kernel was built once and used by both passes; its own reproducibility is \
             checked by `cargo xtask kernel --verify-reproducible` in CCC's repository (or \
             `{tool} release --full`)."
        )
    };
    let second_source = if ctx.project.is_ccc() {
        ""
    } else {
        " (CCC's sources, a dependency, are used in place by both)"
    };
    let signing = match ctx.signing {
        Some(record) => format!(
            "\n## Signature (PCR8)\n\nThe image is signed (ECDSA P-384, COSE ES384, as nitro-cli \
             signs): its signing certificate\ngives\n\n    PCR8 {pcr8}\n\n(certificate SHA-256 \
             {cert}, valid {from} to {to}). The key policy also pins PCR8.\nThe two passes built \
             the **unsigned** image, byte-identical (SHA-256 {unsigned}); the\nsignature \
             section was appended afterwards. ECDSA signatures are randomised, so re-signing \
             gives\nother bytes: what reproduces is the unsigned image, PCR0/1/2 and PCR8. \
             `verify-release` rebuilds the\nunsigned image and checks that `{eif}`'s signature \
             verifies, covers the rebuilt PCR0,\nand that its certificate gives this PCR8; \
             `describe-eif {eif}` prints the certificate. The image\nstops launching on Nitro \
             when the certificate expires ({to}).\n",
            pcr8 = record.pcr8,
            cert = record.certificate_sha256,
            from = record.certificate_not_before,
            to = record.certificate_not_after,
            unsigned = record.unsigned_eif.sha256,
            eif = names.eif,
        ),
        None => String::new(),
    };
    let placeholder = if ctx.principal.is_placeholder() {
        format!(
            "\nThe template names `ACCOUNT`, `ROLE` and `KEY_ADMIN_ROLE`: replace them with your \
             account id,\nthe name of the parent instance's IAM role and the name of the \
             key-administrator role (or run\n`{tool} release --version {version} --account \
             111122223333 --role NAME --admin-role NAME --out DIR`),\nthen:\n\n    \
             aws kms put-key-policy --key-id KEY --policy-name default --policy \
             file://{}\n\nand check what you upload with `{tool} policy check FILE` (exit \
             status 0: no findings).\n",
            names.key_policy
        )
    } else {
        String::new()
    };
    format!(
        "# Reproducing {title} release {version}

Written by `{tool} release --version {version}{args}` from commit `{commit}` (the latest
commit that changed anything outside `release/`; its commit time is the build's
`SOURCE_DATE_EPOCH`).{ccc_note}{dirty}

| file | content |
|---|---|
| `{eif}` | the enclave image (not in git: rebuild it, below) |
| `{meas}` | PCR0, PCR1, PCR2 and the KMS condition values |
| `{kms}` | KMS key policy pinning this image |
| `{iam}` | IAM policy for the parent's role: `kms:GenerateRandom` for this image |
| `build-manifest.json` | commit, toolchain, kernel source, SHA-256 of every input and output |
| `SHA256SUMS` | `sha256sum` of every other file here |

## Measurements

    PCR0 {pcr0}
    PCR1 {pcr1}
    PCR2 {pcr2}

PCR0 covers the kernel, the command line and both ramdisks; PCR1 the kernel, the command line
and the bootstrap ramdisk (ccc-init); PCR2 the application ramdisk.

## Memory and vCPUs

{resources}
{signing}
## Rebuild and compare

On Debian 12 (x86_64), as root (otherwise the commands stop with the exact `apt-get install` to
run first):

    {rebuild}

`verify-release` rebuilds ccc-init, the application and the EIF from the checkout and prints,
for PCR0, PCR1 and PCR2, `match` or `MISMATCH` with both values; it exits non-zero on any
mismatch.

{kernel_text}

To compare every byte instead, build the whole release into a scratch directory and check it
against the published sums:

    {tool} release --version {version}{args} --out /tmp/release-{version}
    cd /tmp/release-{version} && sha256sum -c <checkout>/release/{version}/SHA256SUMS

Every line must say `OK`. `{meas}` and `build-manifest.json` also record the host's compiler
and linker versions (the musl target links with the host's `cc` and `ld`) and the kernel
build's packages: on a machine with other Debian package versions those two files differ, and
usually the binaries with them. `verify-release` names each host tool that differs from the
manifest, and the PCR it can change, before it rebuilds.
They and this file also hold the measured least memory (`resources`), which can differ from
host to host by a step of the search: then those three lines differ and the rest must match.

## What was built twice, and how it was compared

`{tool} release` builds `ccc-init`, the application, both ramdisks and the EIF twice: first
from the checkout (umask 022, TZ UTC0, LC_ALL C), then from a fresh copy of the tracked files in
`target/ccc-release/second/src`{second_source} with its own target and temporary directories, umask 077,
TZ CCC-12:45 and LC_ALL C.UTF-8. It publishes only when all five are byte-identical. Build paths
are remapped (`--remap-path-prefix`, `-ffile-prefix-map`), the environment is cleared, the build
is `--locked`, and `SOURCE_DATE_EPOCH` is the commit time.

{full_text}

## Key policy

`{kms}` follows AWS's guidance for Nitro Enclaves key policies: nobody uses the key
without this image's attestation, and nothing the parent controls can change that
(`docs/threat-model.md` in CCC's repository says which attack each statement stops).

1. `KeyAdministration`: the key-administrator role (`KEY_ADMIN_ROLE`) manages the key and its
   policy, so the key is never orphaned (KMS refuses a policy that locks everyone out). It lists
   actions one by one and holds nothing that reveals plaintext or routes around attestation:
   no `kms:Decrypt`, `kms:GenerateDataKey*`, `kms:ReEncrypt*`, `kms:DeriveSharedSecret`,
   `kms:CreateGrant`. Not the account root: `arn:aws:iam::ACCOUNT:root` would hand the decision
   to IAM, and so to every role of the account with broad IAM rights, the parent's included.
2. `OperatorsEncryptButNeverSeal`: principals of the account may `kms:Encrypt` secrets for the
   enclave (this reveals nothing), never with the encryption context `ccc:purpose=seal`, which
   the enclave reserves for its sealed blobs.
3. `EnclaveUseOnlyWithThisImage`: the parent instance's role (`ROLE`) may call `kms:Decrypt`
   and `kms:GenerateDataKey` only with an attestation document (`Recipient`) whose PCR0
   (`kms:RecipientAttestation:ImageSha384`), PCR1 and PCR2 equal this release's
   (`StringEqualsIgnoreCase`). A debug-mode enclave reports all-zero PCRs; the release tool
   never writes a policy with all-zero PCRs.
4. to 6. `DenySecretsUnlessImageSha384Matches`, `...PCR1Matches`, `...PCR2Matches`: an explicit
   Deny, for every principal, of `kms:Decrypt`, `kms:GenerateDataKey*`, `kms:ReEncrypt*` and
   `kms:DeriveSharedSecret` unless that PCR is this release's (`StringNotEqualsIgnoreCase`,
   which also holds when the request carries no attestation at all: IAM user guide, condition
   operators). No statement added later, no grant and no IAM policy can release a secret
   outside this image.
7. `DenyMintingSealedBlobs`: nobody may `kms:Encrypt` with `ccc:purpose=seal`: an operator who
   could would choose a data key, wrap it and build a sealed blob the enclave takes for its own.
8. `DenyPolicyAndGrantChangesToTheEnclaveRole`: the parent's role may never change the policy,
   create, revoke or retire grants, or replicate the key, whatever its IAM policies say.
{placeholder}
`kms:GenerateRandom` is not in the key policy: it uses no key, so KMS authorises it through IAM
policies only (KMS API reference, GenerateRandom: \"Required permissions: kms:GenerateRandom (IAM
policy)\"). Attach `{iam}` to the parent's role to allow it for this image only (the attestation
condition keys apply to GenerateRandom in IAM policies).
",
        commit = ctx.git.commit,
        eif = names.eif,
        meas = names.measurements,
        kms = names.key_policy,
        iam = names.iam_policy,
        pcr0 = m.pcr0.hex(),
        pcr1 = m.pcr1.hex(),
        pcr2 = m.pcr2.hex(),
        rebuild = rebuild.join("\n    "),
        resources = resources_text(ctx.resources),
    )
}

/// The "Memory and vCPUs" section's text (`resources` in `{meas}` and the manifest).
fn resources_text(r: &super::resources::Resources) -> String {
    let least = match r.least_memory_mib {
        Some(least) => format!(
            "The least memory with which this EIF booted and obtained its attestation document \
             was **{least} MiB**: {}.",
            r.least_memory_method
        ),
        None => format!("The least memory was {}.", r.least_memory_method),
    };
    format!(
        "Run it with\n\n    nitro-cli run-enclave --eif-path EIF --memory {memory} --cpu-count \
         {cpus}\n\n(`resources` in the measurements file and the manifest; \
         `deploy/systemd/enclave.env.example` in CCC's repository takes them as \
         `CCC_MEMORY_MIB` and `CCC_CPU_COUNT`, and `allocator.yaml` must reserve at least as \
         much). The EIF is {bytes} bytes: nitro-cli refuses `--memory` below {minimum} MiB (four \
         times its size, rounded up; error E26).\n\n{least}\n\nRule: {rule}.\n",
        memory = r.recommended_memory_mib,
        cpus = r.recommended_cpu_count,
        bytes = r.eif_bytes,
        minimum = r.nitro_cli_minimum_memory_mib,
        rule = r.rule,
    )
}
