//! Connectionless PDUs as Wireshark's DCE/RPC dissector reads them: every
//! packet type, in both byte orders, written to a capture (IPv4/UDP to
//! port 135) and decoded by Debian's `tshark`, which must report no
//! malformed packet and no expert warning — a third party checking the
//! wire format.

mod common;

use msrpc::cl::{flags1, ptype, Cancel, Drep, Fack, Header, Pdu};
use msrpc::Uuid;

fn every_packet_type(drep: Drep) -> Vec<Vec<u8>> {
    let header = |ptype: u8, flags: u8| Header {
        ptype,
        flags1: flags,
        drep,
        // An interface Wireshark has no dissector for: the stub stays
        // octets (this test is about the PDUs, not an interface's NDR).
        interface: Uuid::parse("5a0c4a38-0d1e-4b4e-9a8e-7f00c0ffee01").unwrap(),
        interface_version: 1,
        activity: Uuid::parse("6f1e3a48-95c2-4d6e-9b8e-1a2b3c4d5e6f").unwrap(),
        server_boot: 0x6000_0000,
        seqnum: 1,
        opnum: 3,
        ..Header::default()
    };
    let fack = Fack {
        version: 1,
        window_size: 16,
        max_tsdu: 65528,
        max_frag_size: 1464,
        serial_num: 0,
        selack: vec![1],
    };
    let cancel = Cancel {
        version: 0,
        cancel_id: 1,
        server_is_accepting: None,
    };
    let quack = Cancel {
        server_is_accepting: Some(true),
        ..cancel
    };
    let pdus = vec![
        Pdu {
            header: header(ptype::REQUEST, flags1::LAST_FRAG | flags1::IDEMPOTENT),
            body: vec![0; 16],
        },
        Pdu {
            header: header(ptype::REQUEST, flags1::FRAG),
            body: vec![0; 8],
        },
        Pdu {
            header: header(ptype::PING, 0),
            body: Vec::new(),
        },
        Pdu {
            header: header(ptype::RESPONSE, flags1::LAST_FRAG),
            body: vec![0; 8],
        },
        Pdu {
            header: header(ptype::FAULT, 0),
            body: Pdu::status_body(drep, 0x1c01_0002),
        },
        Pdu {
            header: header(ptype::WORKING, 0),
            body: Vec::new(),
        },
        Pdu {
            header: header(ptype::NOCALL, 0),
            body: Vec::new(),
        },
        Pdu {
            header: header(ptype::NOCALL, 0),
            body: Pdu::fack_body(drep, &fack),
        },
        Pdu {
            header: header(ptype::REJECT, 0),
            body: Pdu::status_body(drep, 0x1c01_0003),
        },
        Pdu {
            header: header(ptype::ACK, 0),
            body: Vec::new(),
        },
        Pdu {
            header: header(ptype::CL_CANCEL, 0),
            body: Pdu::cancel_body(drep, &cancel),
        },
        Pdu {
            header: header(ptype::FACK, 0),
            body: Pdu::fack_body(drep, &fack),
        },
        Pdu {
            header: header(ptype::CANCEL_ACK, 0),
            body: Pdu::cancel_body(drep, &quack),
        },
    ];
    pdus.iter().map(|p| p.encode().unwrap()).collect()
}

#[test]
fn wireshark_decodes_every_packet_type_in_both_byte_orders_without_complaint() {
    let mut datagrams = every_packet_type(Drep::LITTLE);
    datagrams.extend(every_packet_type(Drep::BIG));
    let to_135: Vec<common::Datagram> = datagrams
        .iter()
        .map(|d| common::Datagram {
            from: 1025,
            to: 135,
            bytes: d.clone(),
        })
        .collect();
    let text = common::tshark_verbose("cl-wire", &to_135);
    let packets = text
        .matches("Distributed Computing Environment / Remote Procedure Call (DCE/RPC)")
        .count();
    assert_eq!(
        packets,
        datagrams.len(),
        "every datagram is DCE/RPC:\n{text}"
    );
    for (name, count) in [
        ("Packet type: Request (0)", 4),
        ("Packet type: Ping (1)", 2),
        ("Packet type: Response (2)", 2),
        ("Packet type: Fault (3)", 2),
        ("Packet type: Working (4)", 2),
        ("Packet type: Nocall (5)", 4),
        ("Packet type: Reject (6)", 2),
        ("Packet type: Ack (7)", 2),
        ("Packet type: Cl_cancel (8)", 2),
        ("Packet type: Fack (9)", 2),
        ("Packet type: Cancel_ack (10)", 2),
    ] {
        assert_eq!(text.matches(name).count(), count, "{name}:\n{text}");
    }
    common::assert_no_complaints(&text);
}
