//! The framing of version-2 `jobs` and `answers` fields: words ended by a space and
//! texts sized in bytes (`{len}:{bytes}`), one line per job or answer. Sized rather than
//! escaped, a text may hold any byte, spaces and line feeds included.

/// `n` in decimal, through `itoa` rather than `core::fmt` (which costs more than the
/// rest of a job's encoding).
pub(super) fn push_number(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// `{len}:{bytes}`.
pub(super) fn push_sized(out: &mut Vec<u8>, bytes: &[u8]) {
    push_number(out, bytes.len() as u64);
    out.push(b':');
    out.extend_from_slice(bytes);
}

/// A reader of the lines of version-2 `jobs` and `answers` fields. `None` from any method
/// means the frame is broken: nothing after it in the field can be trusted.
pub(super) struct Lines<'a> {
    pub(super) rest: &'a [u8],
}

impl<'a> Lines<'a> {
    pub(super) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The bytes up to the next space (which is consumed).
    pub(super) fn word(&mut self) -> Option<&'a [u8]> {
        let end = self.rest.iter().position(|&b| b == b' ')?;
        let word = &self.rest[..end];
        self.rest = &self.rest[end + 1..];
        Some(word)
    }

    /// `{len}:{bytes}`, followed by `end` (consumed).
    pub(super) fn sized(&mut self, end: u8) -> Option<&'a [u8]> {
        let colon = self.rest.iter().take(21).position(|&b| b == b':')?;
        let len = usize::try_from(parse_number(&self.rest[..colon])?).ok()?;
        let after = &self.rest[colon + 1..];
        if after.get(len) != Some(&end) {
            return None;
        }
        self.rest = &after[len + 1..];
        Some(&after[..len])
    }
}

/// A decimal number of at most 20 digits (`None`: anything else, or too large).
pub(crate) fn parse_number(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 20 {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &digit| {
        if digit.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
        } else {
            None
        }
    })
}
