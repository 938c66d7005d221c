//! GPT-2's byte ↔ character map: byte-level BPE vocabularies spell every byte as a printable
//! character, so `" "` is stored as `"Ġ"` and `"\n"` as `"Ċ"`.
//!
//! Printable Latin-1 bytes (`!`..`~`, `¡`..`¬`, `®`..`ÿ`) stand for themselves; the other 68
//! bytes take U+0100, U+0101, ... in byte order.

/// The character byte `b` is spelt with.
pub(crate) fn byte_to_char(b: u8) -> char {
    CHARS[usize::from(b)]
}

/// The byte character `c` spells, if it is one of the 256.
pub(crate) fn char_to_byte(c: char) -> Option<u8> {
    let b = *BYTES.get(u32::from(c) as usize)?;
    u8::try_from(b).ok()
}

const fn stands_for_itself(b: u8) -> bool {
    matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF)
}

/// The characters run from U+0000 to U+0143.
const N_CHARS: usize = 0x144;

/// `CHARS[b]` is the character for byte `b`.
static CHARS: [char; 256] = chars();

/// `BYTES[c]` is the byte character `c` spells, or 256 for characters that spell none.
static BYTES: [u16; N_CHARS] = {
    let chars = chars();
    let mut table = [256u16; N_CHARS];
    let mut b = 0;
    while b < 256 {
        table[chars[b] as usize] = b as u16;
        b += 1;
    }
    table
};

const fn chars() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next = 0x100u32;
    let mut b = 0;
    while b < 256 {
        let cp = if stands_for_itself(b as u8) {
            b as u32
        } else {
            next += 1;
            next - 1
        };
        table[b] = match char::from_u32(cp) {
            Some(c) => c,
            None => '\0', // unreachable: every value above is below U+0144
        };
        b += 1;
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_matches_gpt2() {
        assert_eq!(byte_to_char(b' '), 'Ġ');
        assert_eq!(byte_to_char(b'\n'), 'Ċ');
        assert_eq!(byte_to_char(b'a'), 'a');
        assert_eq!(byte_to_char(0xAD), 'Ń');
        for b in 0..=255u8 {
            assert_eq!(char_to_byte(byte_to_char(b)), Some(b), "byte {b}");
        }
        assert_eq!(char_to_byte('中'), None);
        assert_eq!(char_to_byte('\u{144}'), None);
    }
}
