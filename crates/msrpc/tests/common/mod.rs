//! What the connectionless tests share: captures of datagrams written as
//! pcap files and read back by Wireshark's `tshark` (Debian), the third
//! party that checks the wire format.

#![allow(dead_code)]

use std::process::Command;

/// A datagram between two UDP ports on 127.0.0.1.
pub struct Datagram {
    pub from: u16,
    pub to: u16,
    pub bytes: Vec<u8>,
}

/// A pcap file (LINKTYPE_RAW: IPv4 packets) of the datagrams.
pub fn pcap(datagrams: &[Datagram]) -> Vec<u8> {
    let mut out = Vec::new();
    // The pcap global header: magic, version 2.4, no zone, no
    // accuracy, snapshot length, LINKTYPE_RAW.
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&101u32.to_le_bytes());
    for (i, d) in datagrams.iter().enumerate() {
        let udp_len = 8 + d.bytes.len();
        let total = 20 + udp_len;
        let mut ip = vec![
            0x45,
            0,
            (total >> 8) as u8,
            total as u8,
            (i >> 8) as u8,
            i as u8,
            0x40,
            0,
            64,
            17,
            0,
            0,
        ];
        ip.extend_from_slice(&[127, 0, 0, 1, 127, 0, 0, 1]);
        let sum: u32 = ip
            .chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
            .sum();
        let folded = (sum & 0xffff) + (sum >> 16);
        let checksum = !((folded & 0xffff) + (folded >> 16)) as u16;
        ip[10..12].copy_from_slice(&checksum.to_be_bytes());
        let mut packet = ip;
        packet.extend_from_slice(&d.from.to_be_bytes());
        packet.extend_from_slice(&d.to.to_be_bytes());
        packet.extend_from_slice(&(udp_len as u16).to_be_bytes());
        packet.extend_from_slice(&0u16.to_be_bytes());
        packet.extend_from_slice(&d.bytes);
        out.extend_from_slice(&(i as u32).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&(packet.len() as u32).to_le_bytes());
        out.extend_from_slice(&(packet.len() as u32).to_le_bytes());
        out.extend_from_slice(&packet);
    }
    out
}

/// `tshark -V`'s reading of the datagrams.
pub fn tshark_verbose(name: &str, datagrams: &[Datagram]) -> String {
    tshark_verbose_with(name, datagrams, &[])
}

/// `tshark -V`'s reading of the datagrams, with more options.
pub fn tshark_verbose_with(name: &str, datagrams: &[Datagram], options: &[&str]) -> String {
    let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("capture.pcap");
    std::fs::write(&file, pcap(datagrams)).unwrap();
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(&file)
        .args(["-V", "-o", "dcerpc.desegment_dcerpc:TRUE"])
        .args(options)
        .output()
        .expect("tshark (apt-get install tshark)");
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// No packet Wireshark calls malformed, no expert warning or error.
pub fn assert_no_complaints(text: &str) {
    for complaint in ["Malformed", "Expert Info (Warning", "Expert Info (Error"] {
        if let Some(at) = text.find(complaint) {
            let from = text[..at].rfind("\nFrame ").unwrap_or(0);
            let to = (at + 2000).min(text.len());
            panic!("{complaint}:\n{}", &text[from..to]);
        }
    }
}
