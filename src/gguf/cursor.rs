//! A little-endian reader over a byte slice that never reads past the end.
//!
//! Every read is checked against the bytes that remain and fails with
//! [`GgufError::Truncated`] naming the field; field names are built lazily (closures) so the
//! happy path allocates nothing for them. Nothing here indexes a slice unchecked, so no input
//! can make it panic.

use super::GgufError;

/// Longest string accepted anywhere in a GGUF file. Real chat templates are tens of KiB;
/// the cap stops a corrupt length from being trusted even in a multi-GiB file.
pub const MAX_STRING_LEN: u64 = 1 << 30;

/// A position in a byte slice.
pub(crate) struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Cursor { bytes, pos: 0 }
    }

    /// Absolute offset of the next byte.
    pub(crate) fn pos(&self) -> u64 {
        self.pos as u64
    }

    /// Bytes left to read.
    pub(crate) fn remaining(&self) -> u64 {
        (self.bytes.len() - self.pos) as u64
    }

    /// The `Truncated` error for a field of `needed` bytes at the current position.
    pub(crate) fn truncated(&self, what: String, needed: u64) -> GgufError {
        GgufError::Truncated { what, offset: self.pos(), needed, available: self.remaining() }
    }

    /// Fails unless at least `needed` bytes remain; for counts checked before allocating.
    pub(crate) fn require(&self, needed: u64, what: impl FnOnce() -> String) -> Result<(), GgufError> {
        if needed > self.remaining() { Err(self.truncated(what(), needed)) } else { Ok(()) }
    }

    /// The next `n` bytes.
    pub(crate) fn take(&mut self, n: u64, what: impl FnOnce() -> String) -> Result<&'a [u8], GgufError> {
        self.require(n, what)?;
        // `n <= remaining <= usize::MAX`, so the conversion and the slice are in bounds.
        let n = n as usize;
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    /// The next `N` bytes as an array.
    pub(crate) fn array<const N: usize>(&mut self, what: impl FnOnce() -> String) -> Result<[u8; N], GgufError> {
        let b = self.take(N as u64, what)?;
        let mut out = [0; N];
        out.copy_from_slice(b);
        Ok(out)
    }

    pub(crate) fn u32(&mut self, what: impl FnOnce() -> String) -> Result<u32, GgufError> {
        self.array(what).map(u32::from_le_bytes)
    }

    pub(crate) fn u64(&mut self, what: impl FnOnce() -> String) -> Result<u64, GgufError> {
        self.array(what).map(u64::from_le_bytes)
    }

    /// A GGUF string: u64 byte length, then UTF-8 bytes (no NUL). At most `limit` bytes
    /// (and never more than [`MAX_STRING_LEN`]).
    pub(crate) fn string(&mut self, limit: u64, what: impl Fn() -> String) -> Result<String, GgufError> {
        let len = self.u64(|| format!("length of {}", what()))?;
        let limit = limit.min(MAX_STRING_LEN);
        if len > limit {
            return Err(GgufError::TooLarge { what: format!("length of {}", what()), value: len, limit });
        }
        let bytes = self.take(len, &what)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => Err(GgufError::InvalidUtf8 { what: what() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_past_the_end_are_truncated_errors() {
        let mut c = Cursor::new(&[1, 0, 0, 0, 9]);
        assert_eq!(c.u32(|| "a".into()).unwrap(), 1);
        let err = c.u64(|| "field b".into()).unwrap_err();
        assert!(
            matches!(&err, GgufError::Truncated { what, offset: 4, needed: 8, available: 1 } if what == "field b"),
            "{err:?}"
        );
        assert_eq!(c.remaining(), 1, "a failed read consumes nothing");
    }

    #[test]
    fn string_length_is_checked_before_reading() {
        let mut bytes = u64::MAX.to_le_bytes().to_vec();
        bytes.extend_from_slice(b"abc");
        let err = Cursor::new(&bytes).string(u64::MAX, || "s".into()).unwrap_err();
        assert!(matches!(err, GgufError::TooLarge { value: u64::MAX, limit: MAX_STRING_LEN, .. }), "{err:?}");

        let mut bytes = 4u64.to_le_bytes().to_vec();
        bytes.extend_from_slice(b"abc");
        let err = Cursor::new(&bytes).string(u64::MAX, || "s".into()).unwrap_err();
        assert!(matches!(err, GgufError::Truncated { needed: 4, available: 3, .. }), "{err:?}");
    }

    #[test]
    fn invalid_utf8_is_reported() {
        let mut bytes = 2u64.to_le_bytes().to_vec();
        bytes.extend_from_slice(&[0xc3, 0x28]);
        let err = Cursor::new(&bytes).string(u64::MAX, || "key of metadata entry 0".into()).unwrap_err();
        assert_eq!(err.to_string(), "key of metadata entry 0 is not valid UTF-8");
    }
}
