//! An IP address as text without the formatting machinery: every CGI,
//! FastCGI and ISAPI request writes its client's and its own address, and
//! `Display` for an IPv4 address goes through `fmt` once per octet.

use std::io::Write as _;
use std::net::IpAddr;

/// The longest address text: an IPv6 address with an embedded IPv4 one.
const LONGEST: usize = 45;

/// A buffer holding the text of the last address formatted into it.
pub struct IpText {
    buf: [u8; LONGEST],
    len: usize,
}

impl Default for IpText {
    fn default() -> Self {
        IpText::new()
    }
}

impl IpText {
    pub fn new() -> IpText {
        IpText {
            buf: [0; LONGEST],
            len: 0,
        }
    }

    /// Writes `ip` as `Display` would and returns it.
    pub fn format(&mut self, ip: IpAddr) -> &str {
        self.len = match ip {
            IpAddr::V4(v4) => {
                let mut at = 0;
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        self.buf[at] = b'.';
                        at += 1;
                    }
                    at += write_octet(&mut self.buf[at..], octet);
                }
                at
            }
            // Rare enough (and compressed zeros complex enough) for `fmt`.
            IpAddr::V6(v6) => {
                let mut cursor = std::io::Cursor::new(&mut self.buf[..]);
                let _ = write!(cursor, "{v6}");
                cursor.position() as usize
            }
        };
        self.as_str()
    }

    /// The text last formatted.
    pub fn as_str(&self) -> &str {
        // Only ASCII digits, dots, colons and hex letters are written.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

/// Writes `n` in decimal at the start of `out`; returns the digits written.
fn write_octet(out: &mut [u8], n: u8) -> usize {
    if n >= 100 {
        out[0] = b'0' + n / 100;
        out[1] = b'0' + n / 10 % 10;
        out[2] = b'0' + n % 10;
        3
    } else if n >= 10 {
        out[0] = b'0' + n / 10;
        out[1] = b'0' + n % 10;
        2
    } else {
        out[0] = b'0' + n;
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn writes_what_display_writes() {
        let mut text = IpText::new();
        let v4 = [
            Ipv4Addr::new(0, 0, 0, 0),
            Ipv4Addr::new(127, 0, 0, 1),
            Ipv4Addr::new(10, 99, 100, 255),
            Ipv4Addr::new(255, 255, 255, 255),
            Ipv4Addr::new(9, 10, 199, 200),
        ];
        for a in v4 {
            assert_eq!(text.format(IpAddr::V4(a)), a.to_string());
        }
        let v6 = [
            Ipv6Addr::LOCALHOST,
            Ipv6Addr::UNSPECIFIED,
            "2001:db8::8a2e:370:7334".parse().unwrap(),
            "::ffff:192.168.100.200".parse().unwrap(),
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff".parse().unwrap(),
            "0:0:0:0:0:ffff:255.255.255.255".parse().unwrap(),
        ];
        for a in v6 {
            assert_eq!(text.format(IpAddr::V6(a)), a.to_string());
            assert_eq!(text.as_str(), a.to_string());
        }
        // Every octet value, in each position.
        for n in 0..=255u8 {
            let a = Ipv4Addr::new(n, 255 - n, n / 2, n.wrapping_mul(7));
            assert_eq!(text.format(IpAddr::V4(a)), a.to_string());
        }
    }
}
