//! Writes the hand-made seed corpus of the `pdu` fuzz target:
//! `cargo run -p msrpc --example pdu_corpus -- fuzz/corpus/pdu`.

use msrpc::pdu::*;
use msrpc::Uuid;

fn main() {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "fuzz/corpus/pdu".into());
    std::fs::create_dir_all(&dir).expect("corpus directory");
    let syntax = |text: &str, major| SyntaxId::new(Uuid::parse(text).expect("uuid"), major, 0);
    let ndr = syntax("8a885d04-1ceb-11c9-9fe8-08002b104860", 2);
    let ndr64 = syntax("71710533-beba-4937-8319-b5dbef9ccc36", 1);
    let epm = syntax("e1af8308-5d1f-11c9-91a4-08002b14a0fa", 3);
    let pdu = |body, auth| Pdu {
        rpc_vers_minor: 0,
        flags: flags::FIRST_FRAG | flags::LAST_FRAG,
        drep: NDR_LITTLE_ENDIAN,
        call_id: 1,
        body,
        auth,
    };
    let auth = Some(Auth {
        auth_type: 10,
        auth_level: 6,
        pad_length: 0,
        context_id: 0,
        token: b"NTLMSSP\0\x01\0\0\0\x97\x82\x08\xe2".to_vec(),
    });
    let context = |id, transfer| ContextElem {
        context_id: id,
        abstract_syntax: epm,
        transfer_syntaxes: vec![transfer],
    };
    let bind = Bind {
        max_xmit_frag: 4280,
        max_recv_frag: 4280,
        assoc_group_id: 0,
        contexts: vec![context(0, ndr), context(1, ndr64)],
    };
    let result = |result, reason, transfer_syntax| ContextResult {
        result,
        reason,
        transfer_syntax,
    };
    let ack = BindAck {
        max_xmit_frag: 4280,
        max_recv_frag: 4280,
        assoc_group_id: 0x53f0,
        secondary_address: b"135".to_vec(),
        results: vec![
            result(0, 0, ndr),
            result(2, 2, SyntaxId::new(Uuid::NIL, 0, 0)),
        ],
    };
    let nak = BindNak {
        reason: 4,
        versions: vec![(5, 0)],
        signature: Some(extended_error_signature()),
        extended_error: vec![0; 12],
    };
    let request = Request {
        alloc_hint: 24,
        context_id: 0,
        opnum: 2,
        object: None,
        stub: vec![7; 24],
    };
    let response = Response {
        alloc_hint: 4,
        context_id: 0,
        cancel_count: 0,
        stub: vec![0; 4],
    };
    let fault = Fault {
        alloc_hint: 32,
        context_id: 0,
        cancel_count: 0,
        fault_flags: 0,
        status: 0x1c01_0002,
        stub: vec![],
    };
    let seeds = [
        ("bind", pdu(Body::Bind(bind.clone()), None)),
        ("bind_ntlm", pdu(Body::Bind(bind.clone()), auth.clone())),
        ("alter_context", pdu(Body::AlterContext(bind), auth.clone())),
        ("bind_ack", pdu(Body::BindAck(ack), None)),
        ("bind_nak", pdu(Body::BindNak(nak), None)),
        ("request_sealed", pdu(Body::Request(request), auth.clone())),
        ("response", pdu(Body::Response(response), None)),
        ("fault", pdu(Body::Fault(fault), None)),
        ("auth3", pdu(Body::Auth3, auth)),
        ("shutdown", pdu(Body::Shutdown, None)),
    ];
    for (name, p) in seeds {
        std::fs::write(format!("{dir}/{name}"), p.encode().unwrap()).expect("write");
    }
}
