//! Text checks on names, done on bytes where the text is ASCII.

/// True if `s` holds a control character (`char::is_control`: U+0000–U+001F, U+007F–U+009F).
///
/// Names are nearly always ASCII: the bytes are checked eight at a time, and only text with a
/// byte outside ASCII is walked by characters.
pub(crate) fn has_control(s: &str) -> bool {
    let bytes = s.as_bytes();
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        if !ascii_printable_word(u64::from_le_bytes(w)) {
            return slow(s);
        }
    }
    for &b in chunks.remainder() {
        if !(0x20..0x7f).contains(&b) {
            return slow(s);
        }
    }
    false
}

/// True if all eight bytes of `w` lie in `0x20 ..= 0x7e` (printable ASCII).
fn ascii_printable_word(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // A byte is outside ASCII if its high bit is set; below 0x20 if subtracting 0x20 borrows
    // into its high bit (checked only on ASCII bytes, where no borrow crosses bytes); 0x7f if
    // adding 1 sets its high bit.
    let non_ascii = w & HIGH;
    let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    let del = w.wrapping_add(ONES) & !w & HIGH;
    non_ascii == 0 && below_space == 0 && del == 0
}

fn slow(s: &str) -> bool {
    s.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_char_is_control_on_every_position_and_character() {
        // Every character of the first 0x800 code points (all controls, ASCII, Latin-1 and
        // two-byte text) and a few wider ones, at every position of names of 1 to 20 bytes.
        let probes = (0u32..0x800)
            .chain([0x2028, 0xfeff, 0x1_f600])
            .filter_map(char::from_u32);
        for c in probes {
            for len in 1..20 {
                for at in 0..len {
                    let s: String = (0..len).map(|i| if i == at { c } else { 'a' }).collect();
                    assert_eq!(has_control(&s), slow(&s), "{c:?} at {at} of {len}");
                }
            }
        }
        assert!(!has_control(""));
        assert!(!has_control("bulk/0000001 with spaces ~"));
        assert!(has_control("scope\u{1f}name"));
    }
}
