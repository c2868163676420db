//! Finding an API token in text, however it is spelt, to replace it with
//! [`REDACTED`].
//!
//! The connector scrubs its own results with it, and the host redacts what
//! any connector sends or returns with it, so both find the same
//! spellings: the token in any ASCII letter case (an audit record
//! lowercases host names) and with any of its bytes percent-encoded (a
//! path or query), and, in messages, any run of [`PART`] or more of its
//! characters (a value quoted cut short).

#![no_std]

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;
use core::ops::Range;

/// What stands where the token stood.
pub const REDACTED: &str = "[REDACTED]";

/// The shortest run of the token's characters that [`redact_parts`] treats
/// as part of the token. The common start of every JWT header
/// (`eyJhbGciOi`) is 10 characters; runs of 16 from a random token do not
/// occur in ordinary text by chance.
pub const PART: usize = 16;

/// `text` with every spelling of `secret` replaced by [`REDACTED`], or
/// `None` when it holds none.
pub fn redact(text: &str, secret: &str) -> Option<String> {
    replace(text, &spellings(text.as_bytes(), secret.as_bytes()))
}

/// Where `text` spells `secret`, as byte ranges in order, each starting and
/// ending on a character boundary: for a caller whose text has a grammar
/// of its own to keep (JSON escapes).
pub fn find(text: &str, secret: &str) -> Vec<Range<usize>> {
    spellings(text.as_bytes(), secret.as_bytes())
}

/// Whether `text` holds a spelling of `secret`.
pub fn holds(text: &str, secret: &str) -> bool {
    !spellings(text.as_bytes(), secret.as_bytes()).is_empty()
}

/// `text` with every run of at least [`PART`] ASCII characters that also
/// occurs in `secret` replaced by [`REDACTED`], or `None` when it holds
/// none. Meant for messages. To search many texts for one secret, build
/// its [`Parts`] once.
pub fn redact_parts(text: &str, secret: &str) -> Option<String> {
    // A text shorter than a part holds none: no index needed.
    (text.len() >= PART)
        .then(|| Parts::new(secret).redact(text))
        .flatten()
}

/// Whether `text` holds a run of at least [`PART`] characters of `secret`.
pub fn holds_part(text: &str, secret: &str) -> bool {
    text.len() >= PART && Parts::new(secret).holds(text)
}

/// Each run of at least [`PART`] ASCII bytes of `text` that also occurs in
/// `secret`, longest first from each position, in order: each position
/// compared with the whole secret. The reference [`Parts`] is tested
/// against; it costs the secret's length at every position.
#[cfg(test)]
fn plain_parts(text: &[u8], secret: &[u8]) -> Vec<Range<usize>> {
    let mut found = Vec::new();
    let mut at = 0;
    while at + PART <= text.len() {
        let run = shared_run(&text[at..], secret);
        if run >= PART {
            found.push(at..at + run);
            at += run;
        } else {
            at += 1;
        }
    }
    found
}

/// A secret's runs of [`PART`] characters, indexed so that a text is
/// searched for them in one pass, however long the secret: a JWT of 300
/// characters compared at each position of a text would cost 300 times
/// the text's length.
#[derive(Clone)]
pub struct Parts {
    secret: Vec<u8>,
    /// One bit per hash of each of the secret's runs of [`PART`] bytes: a
    /// position of a text whose run's bit is clear cannot start a part.
    seen: Vec<u64>,
}

impl Parts {
    /// Bits in the index: with a 300-character secret, about one position
    /// of a text in 60 needs a closer look.
    const BITS: usize = 1 << 14;

    /// The index of `secret`'s runs.
    pub fn new(secret: &str) -> Parts {
        let secret = secret.as_bytes().to_vec();
        let mut seen = Vec::new();
        if secret.len() >= PART {
            seen = alloc::vec![0; Parts::BITS / 64];
            let mut hash = Window::at(&secret, 0);
            loop {
                let bit = hash.bit();
                seen[bit / 64] |= 1 << (bit % 64);
                if !hash.slide(&secret) {
                    break;
                }
            }
        }
        Parts { secret, seen }
    }

    /// `text` with every run of at least [`PART`] ASCII characters that
    /// also occurs in the secret replaced by [`REDACTED`], or `None` when
    /// it holds none.
    pub fn redact(&self, text: &str) -> Option<String> {
        replace(text, &self.find(text.as_bytes()))
    }

    /// Whether `text` holds a run of at least [`PART`] characters of the
    /// secret.
    pub fn holds(&self, text: &str) -> bool {
        !self.find(text.as_bytes()).is_empty()
    }

    /// Each run of at least [`PART`] ASCII bytes of `text` that also occurs
    /// in the secret, longest first from each position, in order.
    fn find(&self, text: &[u8]) -> Vec<Range<usize>> {
        let mut found = Vec::new();
        if self.seen.is_empty() || text.len() < PART {
            return found;
        }
        let mut hash = Window::at(text, 0);
        loop {
            let (at, bit) = (hash.start, hash.bit());
            let maybe = self.seen[bit / 64] & (1 << (bit % 64)) != 0;
            let run = if maybe {
                shared_run(&text[at..], &self.secret)
            } else {
                0
            };
            if run >= PART {
                found.push(at..at + run);
                if at + run + PART > text.len() {
                    break;
                }
                hash = Window::at(text, at + run);
            } else if !hash.slide(text) {
                break;
            }
        }
        found
    }
}

/// A polynomial hash of [`PART`] bytes, moved along a text a byte at a time.
struct Window {
    hash: u64,
    /// Where the window starts, in the text it slides along.
    start: usize,
}

impl Window {
    const BASE: u64 = 257;
    /// `BASE` to the power `PART - 1`, for the byte leaving the window.
    const TOP: u64 = {
        let mut top = 1u64;
        let mut i = 1;
        while i < PART {
            top = top.wrapping_mul(Window::BASE);
            i += 1;
        }
        top
    };

    /// The window over the [`PART`] bytes of `text` from `start` (there
    /// must be that many).
    fn at(text: &[u8], start: usize) -> Window {
        let hash = text[start..start + PART].iter().fold(0u64, |h, &b| {
            h.wrapping_mul(Window::BASE).wrapping_add(u64::from(b))
        });
        Window { hash, start }
    }

    /// Moves one byte along `text`; false at its end.
    #[inline]
    fn slide(&mut self, text: &[u8]) -> bool {
        let Some(&next) = text.get(self.start + PART) else {
            return false;
        };
        let leaving = u64::from(text[self.start]).wrapping_mul(Window::TOP);
        self.hash = self
            .hash
            .wrapping_sub(leaving)
            .wrapping_mul(Window::BASE)
            .wrapping_add(u64::from(next));
        self.start += 1;
        true
    }

    /// The window's bit in a [`Parts`] index.
    #[inline]
    fn bit(&self) -> usize {
        // The top bits of a multiplicative hash, so that every byte counts.
        let mixed = self.hash.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (mixed >> (64 - Parts::BITS.trailing_zeros())) as usize
    }
}

/// Each place `secret` is spelt in `text`, as byte ranges in order: in any
/// ASCII letter case, and with any of its bytes percent-encoded (`%41` or
/// `%61` for `A`).
fn spellings(text: &[u8], secret: &[u8]) -> Vec<Range<usize>> {
    let mut found = Vec::new();
    let Some(&first) = secret.first() else {
        return found;
    };
    let (lower, upper) = (first.to_ascii_lowercase(), first.to_ascii_uppercase());
    let mut at = 0;
    while let Some(start) = text[at..]
        .iter()
        .position(|&b| b == lower || b == upper || b == b'%')
        .map(|p| at + p)
    {
        match spelt_at(text, start, secret) {
            Some(end) => {
                found.push(start..end);
                at = end;
            }
            None => at = start + 1,
        }
    }
    found
}

/// Where a spelling of `secret` that starts at `text[at]` ends, if one does.
fn spelt_at(text: &[u8], mut at: usize, secret: &[u8]) -> Option<usize> {
    for &want in secret {
        let here = *text.get(at)?;
        at += if here.eq_ignore_ascii_case(&want) {
            1
        } else if here == b'%'
            && percent_decoded(text.get(at + 1..at + 3)?)?.eq_ignore_ascii_case(&want)
        {
            3
        } else {
            return None;
        };
    }
    Some(at)
}

/// The byte two hex digits stand for.
fn percent_decoded(hex: &[u8]) -> Option<u8> {
    let digit = |b: &u8| char::from(*b).to_digit(16);
    let (high, low) = (digit(hex.first()?)?, digit(hex.get(1)?)?);
    u8::try_from(high * 16 + low).ok()
}

/// The length of the longest ASCII prefix of `text` that occurs in `secret`.
fn shared_run(text: &[u8], secret: &[u8]) -> usize {
    let Some(&first) = text.first().filter(|b| b.is_ascii()) else {
        return 0;
    };
    secret
        .iter()
        .enumerate()
        .filter(|&(_, &b)| b == first)
        .map(|(from, _)| {
            text.iter()
                .zip(&secret[from..])
                .take_while(|&(a, b)| a == b && a.is_ascii())
                .count()
        })
        .max()
        .unwrap_or(0)
}

/// `text` with each of the `found` ranges replaced by [`REDACTED`], or
/// `None` when there are none.
fn replace(text: &str, found: &[Range<usize>]) -> Option<String> {
    if found.is_empty() {
        return None;
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(text.len());
    let mut done = 0;
    for range in found {
        out.extend_from_slice(&bytes[done..range.start]);
        out.extend_from_slice(REDACTED.as_bytes());
        done = range.end;
    }
    out.extend_from_slice(&bytes[done..]);
    // Every range starts and ends on a character boundary: it begins with
    // an ASCII byte or the secret's first character, and ends after an
    // ASCII byte, an escape or the secret's last character. So this is
    // never lossy.
    Some(String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into()))
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use alloc::format;

    const SECRET: &str = "AbCd-1234_eFgH-5678";

    #[test]
    fn the_token_is_found_in_any_letter_case_and_percent_encoded() {
        let all_encoded: String = SECRET.bytes().map(|b| format!("%{b:02X}")).collect();
        for (text, redacted) in [
            (
                "abcd-1234_efgh-5678.sentinelone.net",
                "[REDACTED].sentinelone.net",
            ),
            (
                "/x?q=%41b%43d-1234%5feF%67H-5678&y=1",
                "/x?q=[REDACTED]&y=1",
            ),
            (
                &format!("/{all_encoded}/{all_encoded}"),
                "/[REDACTED]/[REDACTED]",
            ),
            ("ABCD-1234_EFGH-5678", "[REDACTED]"),
            ("café AbCd-1234_eFgH-5678 é", "café [REDACTED] é"),
        ] {
            assert_eq!(redact(text, SECRET).as_deref(), Some(redacted), "{text}");
            assert!(holds(text, SECRET), "{text}");
        }
        // Ordinary text, `%` signs and near misses stay as they are.
        for text in [
            "100% done, 50%off",
            "AbCd-1234_eFgH-567",
            "AbCd-1234%5_eFgH-5678",
            "",
        ] {
            assert_eq!(redact(text, SECRET), None, "{text}");
            assert!(!holds(text, SECRET), "{text}");
        }
    }

    #[test]
    fn runs_of_the_token_are_found_in_messages() {
        let cut = &SECRET[..PART];
        let message = format!(
            "Hostname \"{cut}…\" is not valid; see \"é{}\".",
            &SECRET[2..]
        );
        assert_eq!(
            redact_parts(&message, SECRET).as_deref(),
            Some("Hostname \"[REDACTED]…\" is not valid; see \"é[REDACTED]\".")
        );
        assert!(holds_part(&message, SECRET));
        let short = format!("No endpoint named {} (eyJhbGciOi).", &SECRET[..PART - 1]);
        assert_eq!(redact_parts(&short, SECRET), None);
        assert!(!holds_part(&short, SECRET));
    }

    /// A text of filler and pieces of `secret`, some cut short, some in
    /// another case, from `plan`: (piece start, piece length, filler, upper).
    fn text_of(secret: &str, plan: &[(usize, usize, String, bool)]) -> String {
        let mut text = String::new();
        for (start, len, filler, upper) in plan {
            text.push_str(filler);
            let start = start % secret.len();
            let end = (start + len).min(secret.len());
            let piece = &secret[start..end];
            if *upper {
                text.push_str(&piece.to_ascii_uppercase());
            } else {
                text.push_str(piece);
            }
        }
        text
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 2_000, ..Default::default()
        })]

        #[test]
        fn the_index_finds_exactly_what_the_plain_search_finds(
            secret in "[a-zA-Z0-9._-]{8,320}",
            plan in proptest::collection::vec(
                (0usize..400, 0usize..60, "[a-z0-9 é/.=-]{0,30}", proptest::bool::weighted(0.2)),
                0..8,
            ),
        ) {
            let text = text_of(&secret, &plan);
            let indexed = Parts::new(&secret).find(text.as_bytes());
            proptest::prop_assert_eq!(&indexed, &plain_parts(text.as_bytes(), secret.as_bytes()));
            proptest::prop_assert_eq!(holds_part(&text, &secret), !indexed.is_empty());
            proptest::prop_assert_eq!(
                Parts::new(&secret).holds(&text),
                !indexed.is_empty()
            );
        }
    }
}
