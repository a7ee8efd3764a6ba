//! Turning the SDK's errors into error frames that name the step that failed, so the caller
//! (and the console) can tell a key policy that refused this image from an unreachable proxy
//! or a parent without credentials.

use crate::protocol::{ErrorCode, Failure};
use ccc_sdk::cms::CmsError;
use ccc_sdk::credentials::CredentialsError;
use ccc_sdk::kms::client::ClientError;
use ccc_sdk::kms::{ErrorKind, KmsError};
use ccc_sdk::nsm::NsmError;

/// The failure of a KMS call made for `step` (e.g. `"kms Decrypt with Recipient"`). When the
/// call failed before reaching KMS, the step says where: getting the attestation document or
/// the credentials.
#[must_use]
pub fn kms(step: &str, error: &ClientError) -> Failure {
    let message = error.to_string();
    match innermost(error) {
        ClientError::Nsm(_) => Failure::new(
            ErrorCode::Nsm,
            format!("nsm Attestation (for {step})"),
            message,
        ),
        ClientError::Key(_) => Failure::new(
            ErrorCode::Internal,
            format!("enclave RSA key (for {step})"),
            message,
        ),
        ClientError::Credentials(e) => Failure::new(
            ErrorCode::Credentials,
            format!("credentials from the parent (for {step})"),
            credentials_message(e, &message),
        ),
        ClientError::Transport(_) => Failure::new(ErrorCode::KmsUnreachable, step, message),
        ClientError::Kms(KmsError::Service(service)) if service.kind == ErrorKind::AccessDenied => {
            Failure::new(ErrorCode::KmsAccessDenied, step, message)
        }
        _ => Failure::new(ErrorCode::Kms, step, message),
    }
}

/// The failure of the `Decrypt` of a sealed blob's wrapped key: as [`kms`], except that KMS
/// refusing the ciphertext for the trusted key (`IncorrectKeyException`: made under another
/// key; `InvalidCiphertextException`: not made by `seal` under the trusted key with this
/// context) or an answer for another key means the blob was not sealed by this enclave:
/// [`ErrorCode::ForeignBlob`].
#[must_use]
pub fn unseal_kms(step: &str, error: &ClientError) -> Failure {
    match innermost(error) {
        ClientError::Kms(KmsError::Service(service))
            if matches!(
                service.kind,
                ErrorKind::IncorrectKey | ErrorKind::InvalidCiphertext
            ) =>
        {
            Failure::new(
                ErrorCode::ForeignBlob,
                step,
                format!(
                    "{error}; the wrapped key does not open under this enclave's trusted key \
                     with this encryption context: the blob was not sealed by this enclave (or \
                     the context differs from the one given to seal)"
                ),
            )
        }
        ClientError::Kms(KmsError::ResponseKeyMismatch { .. }) => {
            Failure::new(ErrorCode::ForeignBlob, step, error.to_string())
        }
        _ => kms(step, error),
    }
}

/// The step every failure of opening a sealed blob reports, whichever check failed.
pub const UNSEAL_OPEN_STEP: &str = "unseal: open the sealed blob";

/// The one failure of opening a sealed blob once KMS has answered: the `CiphertextForRecipient`
/// carrying its data key did not decrypt (RSA-OAEP, the content key's length or the AES-CBC
/// padding), the data key is not 32 bytes, or the AES-256-GCM tag did not verify. Which of
/// these happened depends on secret bytes, so the caller is told none of it (nor, by the
/// time taken, see `App::unseal`): telling them apart would make `unseal` a padding oracle.
#[must_use]
pub fn unseal_open() -> Failure {
    Failure::new(
        ErrorCode::Unseal,
        UNSEAL_OPEN_STEP,
        "the sealed blob did not open: it was modified after sealing, or its wrapped key \
         decrypts to another data key than the one it was sealed with (which of the checks \
         failed is not told, by design)",
    )
}

/// Whether a KMS call failed in opening the secret it returned (the `CiphertextForRecipient`
/// did not decrypt), as opposed to anything before it.
#[must_use]
pub fn is_opening_failure(error: &ClientError) -> bool {
    matches!(
        innermost(error),
        ClientError::Kms(KmsError::Cms(CmsError::Decrypt))
    )
}

/// The last error behind retries.
fn innermost(error: &ClientError) -> &ClientError {
    match error {
        ClientError::GaveUp { last, .. } => innermost(last),
        other => other,
    }
}

fn credentials_message(error: &CredentialsError, shown: &str) -> String {
    match error {
        CredentialsError::Unreachable { .. } => format!(
            "{shown} (is `ccc-template-parent run` or `ccc-template-parent credentials` \
             running on the parent?)"
        ),
        _ => shown.to_owned(),
    }
}

/// The failure of an NSM request made for `step`.
#[must_use]
pub fn nsm(step: &str, error: &NsmError) -> Failure {
    Failure::new(ErrorCode::Nsm, step, error.to_string())
}
