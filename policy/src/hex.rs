//! Hex helpers for measurements: the one check of what a PCR value looks like, and lowercase
//! encoding (KMS supplies attestation condition values as lowercase hex).

/// Length of a SHA-384 measurement in hex digits.
pub const PCR_HEX_LEN: usize = 96;

/// Whether `value` is 96 hex digits (either case).
#[must_use]
pub fn is_pcr_hex(value: &str) -> bool {
    value.len() == PCR_HEX_LEN && value.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether `value` is all zeros: what a debug-mode enclave reports.
#[must_use]
pub fn is_zero(value: &str) -> bool {
    !value.is_empty() && value.bytes().all(|b| b == b'0')
}

/// Lowercase hex of `bytes`.
#[must_use]
pub fn encode(bytes: &[u8]) -> String {
    let digit = |n: u8| char::from_digit(u32::from(n), 16).unwrap_or('0');
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(digit(b >> 4));
        out.push(digit(b & 0x0f));
    }
    out
}

/// 96 zeros: the PCR value of a debug-mode enclave.
#[must_use]
pub fn zero_pcr() -> String {
    "0".repeat(PCR_HEX_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_and_checks() {
        assert_eq!(encode(&[0x00, 0xab, 0x1f]), "00ab1f");
        assert!(is_pcr_hex(&encode(&[0xab; 48])));
        assert!(is_pcr_hex(&"AB".repeat(48)));
        assert!(!is_pcr_hex(&"ab".repeat(47)));
        assert!(!is_pcr_hex(&"xy".repeat(48)));
        assert!(is_zero(&zero_pcr()) && !is_zero("") && !is_zero("01"));
    }
}
