//! The KMS client's steps as log records (features `std` + `aws-lc`): every
//! [`Event`] of [`crate::kms::client`] becomes one [`Record`] named `kms.<step>`, with the
//! event's `Display` as message, and an [`Emitter`] is itself an [`Observer`], so
//! `KmsClient::with_observer(Arc::new(emitter))` sends them all to the parent.
//!
//! | event | record | level |
//! |---|---|---|
//! | `Attested` | `attestation.document` (`purpose` = the operation, `bytes`) | debug |
//! | `KeyRotated` | `kms.key_rotated` | info |
//! | `Connected` | `kms.connected` | info, warn for a custom CA or plain HTTP |
//! | `Sending` | `kms.sending` | debug |
//! | `Received` | `kms.received` | debug |
//! | `Retrying` | `kms.retrying` | warn |
//! | `ClockCorrected` | `kms.clock_corrected` | warn |
//! | `CredentialsRefreshed` | `kms.credentials_refreshed` | info |
//! | `RecipientOpened` | `kms.recipient_opened` | debug |
//! | `Finished` | `kms.call` (`operation`, `outcome`, `attempts`, `latency_seconds`) | info when `ok`, else warn |
//!
//! Nothing secret is in an event (see [`Event`]), so nothing secret is in these records.

use super::channel::Emitter;
use super::{Level, Record};
use crate::kms::client::{Event, Observer, Outcome};
use crate::time::UnixMillis;
use alloc::string::ToString;

impl Record {
    /// The record of one KMS client step, at `time`.
    #[must_use]
    pub fn from_kms(time: UnixMillis, event: &Event<'_>) -> Self {
        let message = event.to_string();
        match event {
            Event::Attested {
                operation,
                document,
                public_key_sha256,
            } => Self::new(time, Level::Debug, "attestation.document", message)
                .field("purpose", operation.name())
                .field("bytes", document.len())
                .field("public_key_sha256", hex::encode(public_key_sha256)),
            Event::KeyRotated {
                reason,
                public_key_sha256,
            } => Self::new(time, Level::Info, "kms.key_rotated", message)
                .field("reason", *reason)
                .field("public_key_sha256", hex::encode(public_key_sha256)),
            Event::Connected {
                endpoint,
                tls_server_name,
                custom_ca,
            } => {
                let level = if *custom_ca || tls_server_name.is_none() {
                    Level::Warn
                } else {
                    Level::Info
                };
                Self::new(time, level, "kms.connected", message)
                    .field("endpoint", endpoint.to_string())
                    .field("tls", tls_server_name.is_some())
                    .field("custom_ca", *custom_ca)
            }
            Event::Sending {
                operation,
                attempt,
                access_key_id,
                recipient,
                ..
            } => Self::new(time, Level::Debug, "kms.sending", message)
                .field("operation", operation.name())
                .field("attempt", *attempt)
                .field("access_key_id", *access_key_id)
                .field("recipient", *recipient),
            Event::Received {
                operation,
                status,
                request_id,
            } => Self::new(time, Level::Debug, "kms.received", message)
                .field("operation", operation.name())
                .field("status", *status)
                .field_opt("request_id", *request_id),
            Event::Retrying {
                operation,
                next_attempt,
                delay,
                ..
            } => Self::new(time, Level::Warn, "kms.retrying", message)
                .field("operation", operation.name())
                .field("next_attempt", *next_attempt)
                .field("delay_seconds", delay.as_secs_f64()),
            Event::ClockCorrected { offset_millis } => {
                Self::new(time, Level::Warn, "kms.clock_corrected", message)
                    .field("offset_millis", *offset_millis)
            }
            Event::CredentialsRefreshed => {
                Self::new(time, Level::Info, "kms.credentials_refreshed", message)
            }
            Event::RecipientOpened {
                operation,
                plaintext_len,
            } => Self::new(time, Level::Debug, "kms.recipient_opened", message)
                .field("operation", operation.name())
                .field("secret_bytes", *plaintext_len),
            Event::Finished {
                operation,
                outcome,
                attempts,
                elapsed,
            } => {
                let level = if *outcome == Outcome::Ok {
                    Level::Info
                } else {
                    Level::Warn
                };
                Self::new(time, level, "kms.call", message)
                    .field("operation", operation.name())
                    .field("outcome", outcome.as_str())
                    .field("attempts", *attempts)
                    .field("latency_seconds", elapsed.as_secs_f64())
            }
        }
    }
}

/// Sends every KMS step to the parent, stamped with the system clock.
impl Observer for Emitter {
    fn event(&self, event: &Event<'_>) {
        self.emit(Record::from_kms(UnixMillis::now(), event));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kms::Operation;
    use core::time::Duration;

    #[test]
    fn a_finished_call_is_a_kms_call_record() {
        let record = Record::from_kms(
            UnixMillis(0),
            &Event::Finished {
                operation: Operation::Decrypt,
                outcome: Outcome::AccessDenied,
                attempts: 1,
                elapsed: Duration::from_millis(12),
            },
        );
        assert_eq!(record.event, "kms.call");
        assert_eq!(record.level, Level::Warn);
        assert_eq!(record.get("operation").unwrap().as_text(), Some("Decrypt"));
        assert_eq!(
            record.get("outcome").unwrap().as_text(),
            Some("access_denied")
        );
        assert_eq!(record.get("latency_seconds").unwrap().as_f64(), Some(0.012));
        assert_eq!(
            record.message,
            "Decrypt: access_denied after 1 attempt(s) in 0.012 s"
        );
    }

    #[test]
    fn every_outcome_label_parses_back() {
        for outcome in Outcome::ALL {
            assert_eq!(Outcome::parse(outcome.as_str()), Some(outcome));
        }
        assert_eq!(Outcome::parse("fine"), None);
    }
}
