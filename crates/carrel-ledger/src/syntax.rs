//! Small parsers shared by the C2SP text formats: decimal sizes, base64 hashes, key names,
//! vkeys and the "hash lines, blank line, note" layout of witness requests and receipts.
//!
//! Each parser returns a reason without the value in it, and the caller adds the value and
//! the format it was reading, so that messages name both.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::merkle::Hash;

/// Parses an ASCII decimal without sign or leading zeros (`0` itself is allowed), as the
/// C2SP formats write sizes, indexes and timestamps.
pub(crate) fn parse_decimal(text: &str) -> Option<u64> {
    let digits_only = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    if !digits_only || (text.len() > 1 && text.starts_with('0')) {
        return None;
    }
    text.parse().ok()
}

/// Parses one hash written as canonical padded base64 of 32 bytes.
pub(crate) fn parse_hash(text: &str) -> Option<Hash> {
    BASE64.decode(text).ok()?.try_into().ok()
}

/// Returns whether `name` is a valid signed-note key name: non-empty, without whitespace,
/// control characters or `+`.
pub(crate) fn is_key_name(name: &str) -> bool {
    !name.is_empty()
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '+')
}

/// The three parts of a vkey `name+hex(key ID)+base64(type byte ‖ public key)`.
pub(crate) struct VkeyParts<'a> {
    pub(crate) name: &'a str,
    pub(crate) key_id: u32,
    pub(crate) key_type: u8,
    pub(crate) public_key: Vec<u8>,
}

/// Splits a vkey into its parts and decodes them, without checking the key ID.
pub(crate) fn split_vkey(vkey: &str) -> Result<VkeyParts<'_>, &'static str> {
    let mut parts = vkey.splitn(3, '+');
    let (Some(name), Some(id_hex), Some(key_base64)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err("a vkey needs a name, a key ID and a key joined by '+'");
    };
    if !is_key_name(name) {
        return Err("the vkey's key name is empty or contains whitespace or '+'");
    }
    if id_hex.len() != 8 || !id_hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("the vkey's key ID is not 8 hex digits");
    }
    // Eight hex digits always fit in a u32.
    let key_id = u32::from_str_radix(id_hex, 16).expect("8 hex digits");
    let type_and_key = BASE64
        .decode(key_base64)
        .map_err(|_| "the vkey's key is not canonical base64")?;
    let Some((&key_type, public_key)) = type_and_key.split_first() else {
        return Err("the vkey's key is empty");
    };
    Ok(VkeyParts {
        name,
        key_id,
        key_type,
        public_key: public_key.to_vec(),
    })
}

/// Reads base64 hash lines up to the first empty line and returns the hashes and the text
/// after the empty line.
///
/// At most `max_hashes` lines are read, so a peer cannot make us decode an unbounded list.
pub(crate) fn split_hash_lines(text: &str, max_hashes: usize) -> Result<(Vec<Hash>, &str), String> {
    let mut hashes = Vec::new();
    let mut rest = text;
    loop {
        let Some((line, after)) = rest.split_once('\n') else {
            return Err("no empty line separates the proof lines from the checkpoint".into());
        };
        rest = after;
        if line.is_empty() {
            return Ok((hashes, rest));
        }
        if hashes.len() == max_hashes {
            return Err(format!("more than {max_hashes} proof lines"));
        }
        let hash = parse_hash(line).ok_or_else(|| {
            format!("proof line {line:?} is not canonical base64 of a 32-byte hash")
        })?;
        hashes.push(hash);
    }
}

/// Writes hashes one per line in base64.
pub(crate) fn write_hash_lines(out: &mut String, hashes: &[Hash]) {
    for hash in hashes {
        out.push_str(&BASE64.encode(hash));
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_rejects_noncanonical_forms() {
        for text in [
            "",
            "01",
            "+1",
            "-1",
            " 1",
            "1 ",
            "0x1",
            "18446744073709551616",
        ] {
            assert_eq!(parse_decimal(text), None, "{text:?}");
        }
        assert_eq!(parse_decimal("0"), Some(0));
        assert_eq!(parse_decimal("18446744073709551615"), Some(u64::MAX));
    }

    #[test]
    fn hash_lines_stop_at_empty_line() {
        let line = BASE64.encode([7; 32]);
        let text = format!("{line}\n{line}\n\nrest\n");
        let (hashes, rest) = split_hash_lines(&text, 2).unwrap();
        assert_eq!(hashes, vec![[7; 32], [7; 32]]);
        assert_eq!(rest, "rest\n");
        assert!(split_hash_lines(&text, 1).is_err());
        assert!(split_hash_lines("AAAA\n\n", 5).is_err());
        assert!(split_hash_lines(&line, 5).is_err());
    }
}
