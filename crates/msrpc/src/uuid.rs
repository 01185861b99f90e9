//! UUIDs as DCE RPC carries them: the first three fields in the data
//! representation's byte order, the last eight bytes as they are.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Uuid {
    pub time_low: u32,
    pub time_mid: u16,
    pub time_hi_and_version: u16,
    pub clock_seq_and_node: [u8; 8],
}

impl Uuid {
    pub const NIL: Uuid = Uuid {
        time_low: 0,
        time_mid: 0,
        time_hi_and_version: 0,
        clock_seq_and_node: [0; 8],
    };

    /// A random (version 4) UUID, for context handles and association
    /// groups that must not be guessed.
    pub fn random() -> Uuid {
        let mut b = [0u8; 16];
        // Without the system's randomness, fail loudly rather than hand
        // out guessable handles.
        getrandom::fill(&mut b).expect("the system's random number generator");
        let mut node = [0u8; 8];
        node.copy_from_slice(&b[8..]);
        node[0] = (node[0] & 0x3F) | 0x80;
        Uuid {
            time_low: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            time_mid: u16::from_le_bytes([b[4], b[5]]),
            time_hi_and_version: (u16::from_le_bytes([b[6], b[7]]) & 0x0FFF) | 0x4000,
            clock_seq_and_node: node,
        }
    }

    /// The 16 bytes in little-endian NDR order (as towers carry them).
    pub fn to_le_bytes(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(&self.time_low.to_le_bytes());
        b[4..6].copy_from_slice(&self.time_mid.to_le_bytes());
        b[6..8].copy_from_slice(&self.time_hi_and_version.to_le_bytes());
        b[8..].copy_from_slice(&self.clock_seq_and_node);
        b
    }

    pub fn from_le_bytes(b: &[u8; 16]) -> Uuid {
        let mut node = [0u8; 8];
        node.copy_from_slice(&b[8..]);
        Uuid {
            time_low: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            time_mid: u16::from_le_bytes([b[4], b[5]]),
            time_hi_and_version: u16::from_le_bytes([b[6], b[7]]),
            clock_seq_and_node: node,
        }
    }

    /// Parses `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
    pub fn parse(text: &str) -> Option<Uuid> {
        let parts: Vec<&str> = text.trim().split('-').collect();
        if parts.len() != 5
            || [8, 4, 4, 4, 12]
                != [
                    parts[0].len(),
                    parts[1].len(),
                    parts[2].len(),
                    parts[3].len(),
                    parts[4].len(),
                ]
        {
            return None;
        }
        let hex = |s: &str| u64::from_str_radix(s, 16).ok();
        let mut node = [0u8; 8];
        let tail = format!("{}{}", parts[3], parts[4]);
        for (i, b) in node.iter_mut().enumerate() {
            *b = u8::from_str_radix(tail.get(i * 2..i * 2 + 2)?, 16).ok()?;
        }
        Some(Uuid {
            time_low: hex(parts[0])? as u32,
            time_mid: hex(parts[1])? as u16,
            time_hi_and_version: hex(parts[2])? as u16,
            clock_seq_and_node: node,
        })
    }
}

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = &self.clock_seq_and_node;
        write!(
            f,
            "{:08x}-{:04x}-{:04x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
            self.time_low,
            self.time_mid,
            self.time_hi_and_version,
            n[0],
            n[1],
            n[2],
            n[3],
            n[4],
            n[5],
            n[6],
            n[7]
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_round_trips() {
        let text = "e1af8308-5d1f-11c9-91a4-08002b14a0fa";
        let u = Uuid::parse(text).unwrap();
        assert_eq!(u.time_low, 0xe1af8308);
        assert_eq!(
            u.clock_seq_and_node,
            [0x91, 0xa4, 0x08, 0x00, 0x2b, 0x14, 0xa0, 0xfa]
        );
        assert_eq!(u.to_string(), text);
        for bad in [
            "",
            "e1af8308-5d1f-11c9-91a4",
            "g1af8308-5d1f-11c9-91a4-08002b14a0fa",
        ] {
            assert_eq!(Uuid::parse(bad), None, "{bad}");
        }
    }
}
