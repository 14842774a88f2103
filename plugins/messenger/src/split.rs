//! Splitting a text too long for one message into several, on sentence boundaries.

/// Characters that end a sentence when whitespace follows them.
const TERMINATORS: &[char] = &['.', '!', '?', '…', ';'];
/// Characters that end a sentence even without whitespace after them (CJK).
const FULL_WIDTH: &[char] = &['。', '！', '？'];
/// What may close a sentence after its terminator: `"He left."` ends after the quote.
const CLOSERS: &[char] = &['"', '\'', '”', '’', ')', ']', '»', '」'];

/// `text` (trimmed) in pieces of at most `max` characters, the last of at most `last_max`
/// (`last_max <= max`; the last message may have to fit a button template). Pieces end at a
/// sentence boundary (a terminator, possibly closed by quotes or brackets, before whitespace, or a
/// line break) when one fits, else at a space, else after `max` characters; the whitespace
/// between pieces is dropped. Characters are Unicode scalar values, as the flow compiler counts
/// them. An empty text has no pieces.
pub fn split(text: &str, max: usize, last_max: usize) -> Vec<String> {
    let max = max.max(1);
    let last_max = last_max.clamp(1, max);
    let chars: Vec<char> = text.trim().chars().collect();
    let mut pieces = Vec::new();
    let mut start = 0;
    while start < chars.len() {
        while chars.get(start).is_some_and(|c| c.is_whitespace()) {
            start += 1;
        }
        let rest = chars.len() - start;
        if rest == 0 {
            break;
        }
        if rest <= last_max {
            pieces.push(chars[start..].iter().collect());
            break;
        }
        let cut = if rest > max {
            // The longest head that fits.
            latest_cut(&chars, start, start + max)
        } else {
            // It fits one message, but not the last one's limit: the shortest tail that does.
            earliest_cut(&chars, chars.len() - last_max, chars.len())
        };
        let piece: String = chars[start..cut].iter().collect();
        pieces.push(piece.trim_end().to_string());
        start = cut;
    }
    pieces
}

/// Whether the text may be cut before `chars[i]` at a sentence boundary.
fn sentence_cut(chars: &[char], i: usize) -> bool {
    if i == 0 || i >= chars.len() {
        return false;
    }
    if FULL_WIDTH.contains(&chars[i - 1]) {
        return true;
    }
    if !chars[i].is_whitespace() {
        return false;
    }
    if chars[i] == '\n' {
        return true;
    }
    let mut j = i;
    while j > 0 && CLOSERS.contains(&chars[j - 1]) {
        j -= 1;
    }
    j > 0 && TERMINATORS.contains(&chars[j - 1])
}

/// Whether the text may be cut before `chars[i]` at a space.
fn space_cut(chars: &[char], i: usize) -> bool {
    i > 0 && i < chars.len() && chars[i].is_whitespace() && !chars[i - 1].is_whitespace()
}

/// The last cut in `(lo, hi]`: a sentence boundary, else a space, else `hi`.
fn latest_cut(chars: &[char], lo: usize, hi: usize) -> usize {
    let range = || (lo + 1..=hi).rev();
    range()
        .find(|&i| sentence_cut(chars, i))
        .or_else(|| range().find(|&i| space_cut(chars, i)))
        .unwrap_or(hi)
}

/// The first cut in `[lo, hi)`: a sentence boundary, else a space, else `lo`.
fn earliest_cut(chars: &[char], lo: usize, hi: usize) -> usize {
    let range = || lo..hi;
    range()
        .find(|&i| sentence_cut(chars, i))
        .or_else(|| range().find(|&i| space_cut(chars, i)))
        .unwrap_or(lo)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lengths(pieces: &[String]) -> Vec<usize> {
        pieces.iter().map(|p| p.chars().count()).collect()
    }

    #[test]
    fn short_texts_are_one_piece() {
        assert_eq!(split("  Hello.  ", 2000, 2000), ["Hello."]);
        assert!(split("   ", 2000, 2000).is_empty());
    }

    #[test]
    fn long_texts_split_after_sentences() {
        let sentence = "A sentence of some length, ending here. ";
        let text = sentence.repeat(120);
        let pieces = split(&text, 2000, 2000);
        assert_eq!(pieces.len(), 3, "{:?}", lengths(&pieces));
        for piece in &pieces {
            assert!(piece.chars().count() <= 2000);
            assert!(piece.ends_with('.'), "{piece}");
        }
        assert_eq!(pieces.join(" "), text.trim());
    }

    #[test]
    fn quotes_and_line_breaks_are_boundaries_and_spaces_the_fallback() {
        assert_eq!(
            split("He said \"go.\" Then left", 15, 15),
            ["He said \"go.\"", "Then left"]
        );
        assert_eq!(
            split("one two\nthree four", 12, 12),
            ["one two", "three four"]
        );
        assert_eq!(split("aaaa bbbb cccc", 9, 9), ["aaaa bbbb", "cccc"]);
        assert_eq!(split("abcdefghij", 4, 4), ["abcd", "efgh", "ij"]);
        assert_eq!(split("版本。好的", 3, 3), ["版本。", "好的"]);
    }

    #[test]
    fn the_last_piece_fits_its_own_limit() {
        let text = "First sentence here. Second one follows. Third ends it.";
        let pieces = split(text, 2000, 20);
        assert_eq!(
            pieces,
            ["First sentence here. Second one follows.", "Third ends it."]
        );
        let long = "Word. ".repeat(500);
        let pieces = split(&long, 2000, 640);
        let sizes = lengths(&pieces);
        assert!(sizes.iter().all(|&n| n <= 2000), "{sizes:?}");
        assert!(*sizes.last().unwrap() <= 640, "{sizes:?}");
        assert_eq!(pieces.join(" "), long.trim());
    }
}
