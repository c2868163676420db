//! Text a guest chooses, bounded before the host hands it on: a log line, an
//! audit record or an error shown to an admin should never be megabytes long
//! because a connector made it so.

/// Cuts `text` to at most `max` bytes (on a character boundary), saying how
/// much was left out.
pub(crate) fn shorten(text: &mut String, max: usize) {
    if text.len() <= max {
        return;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let cut = text.len() - end;
    text.truncate(end);
    text.push_str(&format!("…[{cut} more bytes]"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_on_a_character_boundary_and_says_how_much() {
        let mut text = "aé".repeat(3); // 9 bytes: a é a é a é
        shorten(&mut text, 9);
        assert_eq!(text, "aéaéaé", "short enough: unchanged");
        shorten(&mut text, 5);
        assert_eq!(
            text, "aéa…[5 more bytes]",
            "the second 'é' straddles byte 5"
        );
    }
}
