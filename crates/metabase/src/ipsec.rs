//! IPSecurity (IPSECLIST): who may reach a URL, by client address.
//!
//! IIS 6 keeps the list as an undocumented binary blob; the WMI provider
//! shows it as IIsIPSecuritySetting (GrantByDefault, IPGrant, IPDeny, each
//! entry `address, mask`). inetsrv stores the same information as a
//! versioned text in the BINARY value, so it survives MetaBase.xml as hex
//! like any binary property, and gives it a readable form on the command
//! line:
//!
//! ```text
//! GrantByDefault=FALSE; IPGrant=127.0.0.1; IPGrant=10.0.0.0, 255.0.0.0; IPGrant=fd00::/8
//! ```
//!
//! With GrantByDefault TRUE every address is allowed except the IPDeny
//! entries; with FALSE every address is refused except the IPGrant ones.

use std::net::IpAddr;

/// The header of the binary form.
const MAGIC: &str = "inetsrv-ipsec/1\n";

/// An address and the leading bits that must match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNet {
    pub address: IpAddr,
    pub prefix: u8,
}

impl IpNet {
    /// `a.b.c.d`, `a.b.c.d, m.m.m.m` (the IIS form), `addr/len`.
    pub fn parse(text: &str) -> Result<IpNet, String> {
        let text = text.trim();
        let (address, prefix) = if let Some((a, m)) = text.split_once(',') {
            let address: IpAddr = a.trim().parse().map_err(|_| bad(text))?;
            let mask: IpAddr = m.trim().parse().map_err(|_| bad(text))?;
            (
                address,
                mask_length(&mask)
                    .ok_or_else(|| format!("'{}' is not a contiguous subnet mask", m.trim()))?,
            )
        } else if let Some((a, l)) = text.split_once('/') {
            let address: IpAddr = a.trim().parse().map_err(|_| bad(text))?;
            let prefix: u8 = l.trim().parse().map_err(|_| bad(text))?;
            (address, prefix)
        } else {
            let address: IpAddr = text.parse().map_err(|_| bad(text))?;
            (address, full_length(&address))
        };
        if prefix > full_length(&address) {
            return Err(format!("'{text}': the prefix is longer than the address"));
        }
        Ok(IpNet { address, prefix })
    }

    pub fn contains(&self, ip: &IpAddr) -> bool {
        let ip = canonical(ip);
        let (a, b, bits) = match (canonical(&self.address), ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) => (u32::from(a) as u128, u32::from(b) as u128, 32),
            (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128),
            _ => return false,
        };
        if self.prefix == 0 {
            return true;
        }
        let shift = bits - u32::from(self.prefix);
        (a >> shift) == (b >> shift)
    }
}

impl std::fmt::Display for IpNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.prefix == full_length(&self.address) {
            write!(f, "{}", self.address)
        } else {
            write!(f, "{}/{}", self.address, self.prefix)
        }
    }
}

fn bad(text: &str) -> String {
    format!("'{text}' is not an address, 'address, mask' or 'address/length'")
}

fn full_length(ip: &IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// An IPv4-mapped IPv6 address is the IPv4 address it carries.
fn canonical(ip: &IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(*ip),
        v4 => *v4,
    }
}

fn mask_length(mask: &IpAddr) -> Option<u8> {
    let (bits, width) = match mask {
        IpAddr::V4(m) => (u32::from(*m) as u128, 32u32),
        IpAddr::V6(m) => (u128::from(*m), 128u32),
    };
    let ones = if width == 32 {
        (bits as u32).leading_ones()
    } else {
        bits.leading_ones()
    };
    let rebuilt = if ones == 0 {
        0
    } else if width == 32 {
        (u32::MAX << (32 - ones)) as u128
    } else {
        u128::MAX << (128 - ones)
    };
    (rebuilt == bits).then_some(ones as u8)
}

/// An IPSecurity setting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpSecurity {
    pub grant_by_default: bool,
    pub grant: Vec<IpNet>,
    pub deny: Vec<IpNet>,
}

impl Default for IpSecurity {
    fn default() -> IpSecurity {
        IpSecurity {
            grant_by_default: true,
            grant: Vec::new(),
            deny: Vec::new(),
        }
    }
}

impl IpSecurity {
    /// Whether a client at `ip` may proceed.
    pub fn allows(&self, ip: &IpAddr) -> bool {
        if self.grant_by_default {
            !self.deny.iter().any(|n| n.contains(ip))
        } else {
            self.grant.iter().any(|n| n.contains(ip))
        }
    }

    /// The text form: entries separated by `;` or new lines.
    pub fn parse_text(text: &str) -> Result<IpSecurity, String> {
        let mut out = IpSecurity::default();
        for entry in text
            .split([';', '\n'])
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            let (name, value) = entry.split_once('=').ok_or_else(|| {
                format!("'{entry}' is not NAME=VALUE (GrantByDefault, IPGrant or IPDeny)")
            })?;
            match name.trim().to_ascii_lowercase().as_str() {
                "grantbydefault" => {
                    out.grant_by_default = crate::schema::parse_bool(value)? == 1;
                }
                "ipgrant" => out.grant.push(IpNet::parse(value)?),
                "ipdeny" => out.deny.push(IpNet::parse(value)?),
                other => {
                    return Err(format!(
                        "'{other}' is not an IPSecurity entry (GrantByDefault, IPGrant or IPDeny)"
                    ))
                }
            }
        }
        Ok(out)
    }

    pub fn to_text(&self) -> String {
        let mut parts = vec![format!(
            "GrantByDefault={}",
            if self.grant_by_default {
                "TRUE"
            } else {
                "FALSE"
            }
        )];
        parts.extend(self.grant.iter().map(|n| format!("IPGrant={n}")));
        parts.extend(self.deny.iter().map(|n| format!("IPDeny={n}")));
        parts.join("; ")
    }

    /// The stored (BINARY) form.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = MAGIC.to_string();
        out.push_str(&self.to_text().replace("; ", "\n"));
        out.into_bytes()
    }

    /// Reads the stored form; `None` for a blob that is not inetsrv's
    /// (an IIS 6 blob, or damage).
    pub fn from_bytes(bytes: &[u8]) -> Option<IpSecurity> {
        let text = std::str::from_utf8(bytes).ok()?.strip_prefix(MAGIC)?;
        IpSecurity::parse_text(text).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks() {
        let net = IpNet::parse("10.1.0.0, 255.255.0.0").unwrap();
        assert_eq!(net.prefix, 16);
        assert!(net.contains(&ip("10.1.200.3")));
        assert!(!net.contains(&ip("10.2.0.1")));
        assert!(
            net.contains(&ip("::ffff:10.1.2.3")),
            "IPv4-mapped clients match IPv4 rules"
        );
        assert!(
            IpNet::parse("10.0.0.0, 255.0.255.0").is_err(),
            "holes in a mask"
        );
        assert!(IpNet::parse("10.0.0.0/33").is_err());
        assert!(IpNet::parse("nonsense").is_err());
        let v6 = IpNet::parse("fd00::/8").unwrap();
        assert!(v6.contains(&ip("fd12::1")) && !v6.contains(&ip("fe80::1")));
        assert!(!v6.contains(&ip("10.0.0.1")));
        assert!(IpNet::parse("0.0.0.0/0")
            .unwrap()
            .contains(&ip("192.0.2.1")));
        assert_eq!(IpNet::parse("127.0.0.1").unwrap().to_string(), "127.0.0.1");
    }

    #[test]
    fn grant_and_deny() {
        let deny = IpSecurity::parse_text("IPDeny=192.168.0.0/16").unwrap();
        assert!(deny.allows(&ip("127.0.0.1")) && !deny.allows(&ip("192.168.4.4")));
        let grant = IpSecurity::parse_text("GrantByDefault=FALSE; IPGrant=127.0.0.1").unwrap();
        assert!(grant.allows(&ip("127.0.0.1")) && !grant.allows(&ip("127.0.0.2")));
        let back = IpSecurity::from_bytes(&grant.to_bytes()).unwrap();
        assert_eq!(back, grant);
        assert_eq!(back.to_text(), "GrantByDefault=FALSE; IPGrant=127.0.0.1");
        assert!(IpSecurity::from_bytes(&[0x49, 0x50, 0, 1]).is_none());
        assert!(IpSecurity::parse_text("IPAllow=1.2.3.4").is_err());
        assert!(IpSecurity::parse_text("GrantByDefault=maybe").is_err());
    }
}
