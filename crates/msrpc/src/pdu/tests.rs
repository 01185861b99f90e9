use super::*;

fn ndr() -> SyntaxId {
    SyntaxId::new(
        Uuid::parse("8a885d04-1ceb-11c9-9fe8-08002b104860").unwrap(),
        2,
        0,
    )
}

fn epm() -> SyntaxId {
    SyntaxId::new(
        Uuid::parse("e1af8308-5d1f-11c9-91a4-08002b14a0fa").unwrap(),
        3,
        0,
    )
}

/// The endpoint mapper bind every DCE/RPC client sends first: interface
/// e1af8308-5d1f-11c9-91a4-08002b14a0fa v3.0 over NDR 2.0, call_id 1.
const EPM_BIND: [u8; 72] = [
    0x05, 0x00, 0x0b, 0x03, 0x10, 0x00, 0x00, 0x00, 0x48, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
    0xb8, 0x10, 0xb8, 0x10, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00,
    0x08, 0x83, 0xaf, 0xe1, 0x1f, 0x5d, 0xc9, 0x11, 0x91, 0xa4, 0x08, 0x00, 0x2b, 0x14, 0xa0, 0xfa,
    0x03, 0x00, 0x00, 0x00, 0x04, 0x5d, 0x88, 0x8a, 0xeb, 0x1c, 0xc9, 0x11, 0x9f, 0xe8, 0x08, 0x00,
    0x2b, 0x10, 0x48, 0x60, 0x02, 0x00, 0x00, 0x00,
];

#[test]
fn the_endpoint_mapper_bind_byte_for_byte() {
    let pdu = Pdu::decode(&EPM_BIND).unwrap();
    assert_eq!(pdu.pdu_type(), PduType::Bind);
    assert_eq!(pdu.flags, flags::FIRST_FRAG | flags::LAST_FRAG);
    assert_eq!(pdu.call_id, 1);
    let Body::Bind(b) = &pdu.body else { panic!() };
    assert_eq!(
        (b.max_xmit_frag, b.max_recv_frag, b.assoc_group_id),
        (4280, 4280, 0)
    );
    assert_eq!(b.contexts.len(), 1);
    assert_eq!(b.contexts[0].context_id, 0);
    assert_eq!(b.contexts[0].abstract_syntax, epm());
    assert_eq!(b.contexts[0].abstract_syntax.major(), 3);
    assert_eq!(b.contexts[0].transfer_syntaxes, vec![ndr()]);
    assert_eq!(pdu.encode().unwrap(), EPM_BIND.to_vec());
    assert_eq!(frag_length(&EPM_BIND[..16]), Ok(72));
}

fn round_trip(pdu: &Pdu) -> Pdu {
    let bytes = pdu.encode().unwrap();
    let back = Pdu::decode(&bytes).unwrap_or_else(|e| panic!("{e}: {pdu:?}"));
    assert_eq!(back.encode().unwrap(), bytes, "re-encoding is stable");
    back
}

fn pdu(body: Body, auth: Option<Auth>) -> Pdu {
    Pdu {
        rpc_vers_minor: 0,
        flags: flags::FIRST_FRAG | flags::LAST_FRAG,
        drep: NDR_LITTLE_ENDIAN,
        call_id: 7,
        body,
        auth,
    }
}

fn auth(token: &[u8]) -> Auth {
    Auth {
        auth_type: 10,
        auth_level: 6,
        pad_length: 0,
        context_id: 1,
        token: token.to_vec(),
    }
}

#[test]
fn every_pdu_type_round_trips() {
    let bind = Bind {
        max_xmit_frag: 5840,
        max_recv_frag: 5840,
        assoc_group_id: 0x1234,
        contexts: vec![
            ContextElem {
                context_id: 0,
                abstract_syntax: epm(),
                transfer_syntaxes: vec![ndr()],
            },
            ContextElem {
                context_id: 1,
                abstract_syntax: epm(),
                transfer_syntaxes: vec![
                    SyntaxId::new(
                        Uuid::parse("71710533-beba-4937-8319-b5dbef9ccc36").unwrap(),
                        1,
                        0,
                    ),
                    ndr(),
                ],
            },
        ],
    };
    let ack = BindAck {
        max_xmit_frag: 4280,
        max_recv_frag: 4280,
        assoc_group_id: 0x5678,
        secondary_address: b"135".to_vec(),
        results: vec![ContextResult {
            result: 0,
            reason: 0,
            transfer_syntax: ndr(),
        }],
    };
    let bodies = vec![
        Body::Bind(bind.clone()),
        Body::AlterContext(bind),
        Body::BindAck(ack.clone()),
        Body::AlterContextResp(BindAck {
            secondary_address: Vec::new(),
            ..ack
        }),
        Body::BindNak(BindNak {
            reason: 4,
            versions: vec![(5, 0), (5, 1)],
            signature: None,
            extended_error: Vec::new(),
        }),
        Body::BindNak(BindNak {
            reason: 9,
            versions: vec![(5, 0)],
            signature: Some(extended_error_signature()),
            extended_error: vec![1, 2, 3, 4],
        }),
        Body::Request(Request {
            alloc_hint: 5,
            context_id: 1,
            opnum: 3,
            object: None,
            stub: vec![1, 2, 3, 4, 5],
        }),
        Body::Response(Response {
            alloc_hint: 3,
            context_id: 1,
            cancel_count: 0,
            stub: vec![9, 8, 7],
        }),
        Body::Fault(Fault {
            alloc_hint: 0,
            context_id: 0,
            cancel_count: 0,
            fault_flags: 0,
            status: 0x1c010002,
            stub: Vec::new(),
        }),
        Body::Shutdown,
        Body::CoCancel,
        Body::Orphaned,
    ];
    for body in bodies {
        let p = pdu(body, None);
        assert_eq!(round_trip(&p), p);
    }
    // With an object UUID.
    let mut p = pdu(
        Body::Request(Request {
            alloc_hint: 0,
            context_id: 0,
            opnum: 0,
            object: Some(epm().uuid),
            stub: vec![0xAA; 3],
        }),
        None,
    );
    p.flags |= flags::OBJECT_UUID;
    assert_eq!(round_trip(&p), p);
}

#[test]
fn stub_data_is_padded_to_16_bytes_before_a_sec_trailer_and_the_padding_is_not_stub_data() {
    for stub_len in [0usize, 1, 7, 8, 15, 16, 17] {
        let p = pdu(
            Body::Request(Request {
                alloc_hint: stub_len as u32,
                context_id: 0,
                opnum: 2,
                object: None,
                stub: vec![0x5A; stub_len],
            }),
            Some(auth(&[0xEE; 16])),
        );
        let bytes = p.encode().unwrap();
        let auth_length = u16::from_le_bytes([bytes[10], bytes[11]]) as usize;
        let trailer_at = bytes.len() - auth_length - SEC_TRAILER_LEN;
        assert_eq!((trailer_at - CALL_HEADER_LEN) % 16, 0, "stub {stub_len}");
        let back = Pdu::decode(&bytes).unwrap();
        let Body::Request(q) = &back.body else {
            panic!()
        };
        assert_eq!(q.stub.len(), stub_len);
        let a = back.auth.unwrap();
        assert_eq!(usize::from(a.pad_length), (16 - stub_len % 16) % 16);
        assert_eq!(a.token, vec![0xEE; 16]);
        assert_eq!((a.auth_type, a.auth_level, a.context_id), (10, 6, 1));
    }
    // rpc_auth_3: a pad and the trailer.
    let p = pdu(Body::Auth3, Some(auth(b"NTLMSSP\0...")));
    assert_eq!(round_trip(&p).auth.unwrap().token, b"NTLMSSP\0...".to_vec());
    // Other bodies are only 4-byte aligned: a bind_ack's trailer follows
    // its results directly, where Impacket and Windows expect it.
    let ack = pdu(
        Body::BindAck(BindAck {
            max_xmit_frag: 4280,
            max_recv_frag: 4280,
            assoc_group_id: 1,
            secondary_address: b"135".to_vec(),
            results: vec![],
        }),
        Some(auth(b"NTLMSSP\0")),
    );
    let bytes = ack.encode().unwrap();
    // 16 header + 8 + port_any (2 + 4) + 2 pad + 4 results = 36: aligned.
    assert_eq!(bytes.len(), 36 + SEC_TRAILER_LEN + 8);
    assert_eq!(round_trip(&ack).auth.unwrap().pad_length, 0);
}

#[test]
fn big_endian_pdus_are_read() {
    // A request in big-endian representation, stub "hi".
    let mut b = vec![5, 0, 0, 0x03, 0x00, 0x00, 0x00, 0x00];
    b.extend_from_slice(&26u16.to_be_bytes());
    b.extend_from_slice(&0u16.to_be_bytes());
    b.extend_from_slice(&0x0102_0304u32.to_be_bytes());
    b.extend_from_slice(&2u32.to_be_bytes());
    b.extend_from_slice(&1u16.to_be_bytes());
    b.extend_from_slice(&0x0203u16.to_be_bytes());
    b.extend_from_slice(b"hi");
    let p = Pdu::decode(&b).unwrap();
    assert_eq!(p.call_id, 0x0102_0304);
    let Body::Request(q) = p.body else { panic!() };
    assert_eq!(
        (q.alloc_hint, q.context_id, q.opnum, q.stub),
        (2, 1, 0x0203, b"hi".to_vec())
    );
}

#[test]
fn malformed_pdus_are_refused_without_panicking() {
    let mut wrong_version = EPM_BIND;
    wrong_version[0] = 4;
    assert_eq!(Pdu::decode(&wrong_version), Err(PduError::Version(4, 0)));
    let mut wrong_minor = EPM_BIND;
    wrong_minor[1] = 2;
    assert_eq!(Pdu::decode(&wrong_minor), Err(PduError::Version(5, 2)));
    let mut connectionless = EPM_BIND;
    connectionless[2] = 1;
    assert_eq!(
        Pdu::decode(&connectionless),
        Err(PduError::Connectionless(1))
    );
    let mut unknown = EPM_BIND;
    unknown[2] = 42;
    assert_eq!(Pdu::decode(&unknown), Err(PduError::UnknownType(42)));
    assert!(matches!(
        Pdu::decode(&EPM_BIND[..71]),
        Err(PduError::FragLength {
            declared: 72,
            actual: 71
        })
    ));
    assert!(matches!(
        Pdu::decode(&EPM_BIND[..10]),
        Err(PduError::Truncated { .. })
    ));
    let mut ebcdic = EPM_BIND;
    ebcdic[4] = 0x11;
    assert_eq!(Pdu::decode(&ebcdic), Err(PduError::DataRep(0x11)));
    // auth_length larger than the fragment.
    let mut long_auth = EPM_BIND;
    long_auth[10] = 0xFF;
    assert!(matches!(
        Pdu::decode(&long_auth),
        Err(PduError::AuthLength { .. })
    ));
    // A context count the fragment cannot hold.
    let mut many = EPM_BIND;
    many[24] = 200;
    assert!(matches!(
        Pdu::decode(&many),
        Err(PduError::Truncated { .. })
    ));
    // No transfer syntax.
    let mut none = EPM_BIND;
    none[30] = 0;
    assert_eq!(
        Pdu::decode(&none),
        Err(PduError::Invalid(
            "a presentation context offers no transfer syntax"
        ))
    );
    // Auth padding longer than the stub.
    let mut p = pdu(
        Body::Request(Request {
            alloc_hint: 0,
            context_id: 0,
            opnum: 0,
            object: None,
            stub: vec![],
        }),
        Some(auth(&[1; 16])),
    )
    .encode()
    .unwrap();
    let trailer_at = p.len() - 16 - SEC_TRAILER_LEN;
    p[trailer_at + 2] = 15;
    assert!(Pdu::decode(&p).is_err());
    // rpc_auth_3 without a token.
    let bare = pdu(Body::Auth3, None).encode().unwrap();
    assert!(Pdu::decode(&bare).is_err());
    // frag_length below the header's size.
    let mut tiny = EPM_BIND;
    tiny[8] = 8;
    tiny[9] = 0;
    assert!(frag_length(&tiny).is_err());
}

#[test]
fn stubs_are_cut_into_8_aligned_fragments() {
    let cut: Vec<_> = fragments(0, 1432).collect();
    assert_eq!(cut, vec![(flags::FIRST_FRAG | flags::LAST_FRAG, 0..0)]);
    // 1432 - 24 = 1408 bytes of stub a fragment (a multiple of 8).
    let cut: Vec<_> = fragments(3000, 1432).collect();
    assert_eq!(
        cut,
        vec![
            (flags::FIRST_FRAG, 0..1408),
            (0, 1408..2816),
            (flags::LAST_FRAG, 2816..3000)
        ]
    );
    let cut: Vec<_> = fragments(2816, 1432).collect();
    assert_eq!(cut.len(), 2);
    assert_eq!(cut[1], (flags::LAST_FRAG, 1408..2816));
}

#[test]
fn a_stub_is_cut_with_its_alloc_hints_and_one_fragment_is_not_copied() {
    let stub: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
    let cut: Vec<_> = stub_fragments(stub.clone(), 1432).collect();
    let hints: Vec<_> = cut.iter().map(|(pfc, hint, _)| (*pfc, *hint)).collect();
    assert_eq!(
        hints,
        vec![
            (flags::FIRST_FRAG, 3000),
            (0, 3000 - 1408),
            (flags::LAST_FRAG, 3000 - 2816)
        ]
    );
    let data: Vec<u8> = cut.iter().flat_map(|(_, _, d)| d.iter().copied()).collect();
    assert_eq!(data, stub);
    // One fragment: the very buffer comes back.
    let small = vec![7u8; 100];
    let at = small.as_ptr();
    let cut: Vec<_> = stub_fragments(small, 1432).collect();
    assert_eq!(cut.len(), 1);
    assert_eq!(
        (cut[0].0, cut[0].1),
        (flags::FIRST_FRAG | flags::LAST_FRAG, 100)
    );
    assert_eq!(cut[0].2.as_ptr(), at);
    assert_eq!(cut[0].2, vec![7u8; 100]);
}

#[test]
fn encoding_into_a_buffer_appends_one_fragment_or_nothing() {
    let pdu = Pdu {
        rpc_vers_minor: 0,
        flags: flags::FIRST_FRAG | flags::LAST_FRAG,
        drep: NDR_LITTLE_ENDIAN,
        call_id: 7,
        body: Body::Response(Response {
            alloc_hint: 3,
            context_id: 1,
            cancel_count: 0,
            stub: vec![1, 2, 3],
        }),
        auth: Some(Auth {
            auth_type: 10,
            auth_level: 6,
            pad_length: 0,
            context_id: 0,
            token: vec![9; 16],
        }),
    };
    let alone = pdu.encode().unwrap();
    // After 5 bytes already in the buffer, the padding and lengths are
    // those of the fragment, not of the buffer.
    let mut out = vec![0xAA; 5];
    pdu.encode_into(&mut out).unwrap();
    assert_eq!(&out[..5], &[0xAA; 5]);
    assert_eq!(&out[5..], &alone[..]);
    assert_eq!(Pdu::decode(&out[5..]).unwrap(), {
        let mut p = pdu.clone();
        if let Some(a) = p.auth.as_mut() {
            a.pad_length = 13;
        }
        p
    });

    let mut too_big = pdu.clone();
    too_big.body = Body::Response(Response {
        alloc_hint: 0,
        context_id: 1,
        cancel_count: 0,
        stub: vec![0; 70_000],
    });
    let mut out = vec![0xAA; 5];
    assert!(too_big.encode_into(&mut out).is_err());
    assert_eq!(out, vec![0xAA; 5], "nothing of a failed fragment is left");
}
