//! PKCS#7 padding removal (RFC 5652 §6.3) in constant time: the work done, the memory read and
//! every branch are the same whatever the padding bytes hold, so how long a failed opening
//! takes says nothing about why it failed (a padding oracle needs exactly that, Vaudenay
//! 2002). Only the final verdict, and the length of what a successful opening returns, depend
//! on the bytes.
//!
//! The comparisons are `subtle`'s masks: `ct_eq`, `ct_lt` and `conditional_select` compile to
//! arithmetic on all-ones/all-zeros masks instead of jumps.

use subtle::{Choice, ConditionallySelectable, ConstantTimeEq, ConstantTimeLess};

/// The AES block length: PKCS#7 pads to a multiple of it, with 1 to 16 bytes.
pub const BLOCK_LEN: usize = 16;

/// The length of `data` without its PKCS#7 padding, and whether the padding is valid (a last
/// byte `n` of 1 to 16, and the last `n` bytes all equal to `n`). When it is not, the length
/// returned is `data.len()`; only look at it once the verdict says valid.
///
/// `data.len()` is public (a ciphertext's length is): a length that is not a positive
/// multiple of [`BLOCK_LEN`] is refused at once. For every other input the same sixteen bytes
/// are read and the same operations run, whatever their values.
#[must_use]
pub fn pkcs7_unpadded_len(data: &[u8]) -> (usize, Choice) {
    let last_block = data
        .len()
        .checked_sub(BLOCK_LEN)
        .filter(|_| data.len().is_multiple_of(BLOCK_LEN))
        .and_then(|start| data.get(start..));
    let Some(last_block) = last_block else {
        return (data.len(), Choice::from(0));
    };
    let pad = last_block.last().copied().unwrap_or(0);
    // 1 <= pad <= 16.
    let mut valid = !pad.ct_eq(&0) & pad.ct_lt(&17);
    // Every byte within `pad` of the end must equal `pad`; all sixteen are looked at.
    for (distance, byte) in (0u8..).zip(last_block.iter().rev()) {
        let in_padding = distance.ct_lt(&pad);
        valid &= !in_padding | byte.ct_eq(&pad);
    }
    let removed = u8::conditional_select(&0, &pad, valid);
    (data.len() - usize::from(removed), valid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    /// The obvious implementation, with early exits: the reference the constant-time one must
    /// agree with.
    fn straightforward(data: &[u8]) -> Option<usize> {
        if data.is_empty() || !data.len().is_multiple_of(BLOCK_LEN) {
            return None;
        }
        let pad = *data.last()?;
        if pad == 0 || usize::from(pad) > BLOCK_LEN {
            return None;
        }
        let start = data.len() - usize::from(pad);
        if data[start..].iter().all(|b| *b == pad) {
            Some(start)
        } else {
            None
        }
    }

    fn verdict(data: &[u8]) -> Option<usize> {
        let (len, valid) = pkcs7_unpadded_len(data);
        bool::from(valid).then_some(len)
    }

    /// Every value of the last byte, on one and on two blocks: 1..=16 with correct padding
    /// bytes are accepted (and remove that many), 0 and 17..=255 are refused, and for each
    /// valid value a wrong byte at every position inside the padding is refused while one
    /// just outside it is not.
    #[test]
    fn every_padding_value() {
        for blocks in [1, 2] {
            for pad in 0..=255u8 {
                let mut data = vec![0xa5u8; blocks * BLOCK_LEN];
                let n = usize::from(pad).min(BLOCK_LEN);
                let len = data.len();
                for byte in &mut data[len - n..] {
                    *byte = pad;
                }
                *data.last_mut().unwrap() = pad;
                let expected = (1..=16).contains(&pad).then(|| len - usize::from(pad));
                assert_eq!(verdict(&data), expected, "pad {pad}, {blocks} blocks");
                assert_eq!(verdict(&data), straightforward(&data), "pad {pad}");
                if expected.is_none() {
                    continue;
                }
                for position in len - n..len - 1 {
                    let mut wrong = data.clone();
                    wrong[position] ^= 0x01;
                    assert_eq!(verdict(&wrong), None, "pad {pad}, byte {position} wrong");
                }
                if n < len {
                    let mut outside = data.clone();
                    outside[len - n - 1] ^= 0xff;
                    assert_eq!(verdict(&outside), expected, "pad {pad}, byte outside");
                }
            }
        }
    }

    #[test]
    fn lengths_that_are_not_whole_blocks_are_refused() {
        for len in [0, 1, 15, 17, 31, 33] {
            assert_eq!(verdict(&vec![1u8; len]), None, "{len} bytes");
        }
    }

    /// xorshift64*, so the "random" inputs are the same on every run.
    struct Xorshift(u64);

    impl Xorshift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
    }

    /// Random inputs, biased towards almost-valid padding (a random value 1..=16 written over
    /// the tail, then sometimes one byte disturbed), agree with the straightforward version.
    #[test]
    fn agrees_with_the_straightforward_version_on_random_inputs() {
        let mut random = Xorshift(0x9e37_79b9_7f4a_7c15);
        let (mut accepted, mut refused) = (0, 0);
        for _ in 0..20_000 {
            let blocks = 1 + (random.next() % 4) as usize;
            let mut data: Vec<u8> = (0..blocks * BLOCK_LEN)
                .map(|_| random.next() as u8)
                .collect();
            if !random.next().is_multiple_of(4) {
                let pad = 1 + (random.next() % 16) as u8;
                let len = data.len();
                for byte in &mut data[len - usize::from(pad)..] {
                    *byte = pad;
                }
                if random.next().is_multiple_of(3) {
                    let at = (random.next() % len as u64) as usize;
                    data[at] = random.next() as u8;
                }
            }
            let expected = straightforward(&data);
            assert_eq!(verdict(&data), expected, "{data:02x?}");
            if expected.is_some() {
                accepted += 1;
            } else {
                refused += 1;
            }
        }
        // Both outcomes were exercised many times.
        assert!(
            accepted > 5_000 && refused > 5_000,
            "{accepted} / {refused}"
        );
    }
}
