//! Each fuzz target's corpus, replayed with mutations through the same
//! check the target runs.

use std::path::Path;

fn corpus(name: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(name);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    assert!(files.len() >= 5, "the {name} corpus is missing");
    files
}

/// Deterministic byte-level mutations: replace, delete, insert, duplicate.
fn mutations(data: &[u8], count: usize, mut seed: u64) -> Vec<Vec<u8>> {
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    const BYTES: &[u8] = b"<>/=\"&;#x\n\r\t |:.0aZfF-%\\?\x00\x7f\xc0\xaf\xc3\xa9";
    (0..count)
        .map(|_| {
            let mut m = data.to_vec();
            for _ in 0..(next() % 3 + 1) {
                let i = if m.is_empty() {
                    0
                } else {
                    (next() as usize) % m.len()
                };
                match next() % 4 {
                    0 if !m.is_empty() => m[i] = BYTES[(next() as usize) % BYTES.len()],
                    1 if !m.is_empty() => {
                        m.remove(i);
                    }
                    2 => m.insert(i, BYTES[(next() as usize) % BYTES.len()]),
                    _ if !m.is_empty() => {
                        let end = (i + (next() as usize) % 32).min(m.len());
                        let chunk = m[i..end].to_vec();
                        m.splice(i..i, chunk);
                    }
                    _ => {}
                }
            }
            m
        })
        .collect()
}

fn replay(name: &str, mutations_per_file: usize, check: fn(&[u8])) {
    for (file, data) in corpus(name) {
        check(&data);
        for m in mutations(&data, mutations_per_file, file.len() as u64 * 31 + 1) {
            check(&m);
        }
    }
}

#[test]
fn metabase_xml() {
    replay("metabase_xml", 150, metabase::fuzz_checks::metabase_xml);
}

#[test]
fn mbschema_xml() {
    let embedded = metabase::schema::write_schema(&metabase::Schema::standard());
    metabase::fuzz_checks::mbschema_xml(embedded.as_bytes());
    replay("mbschema_xml", 300, metabase::fuzz_checks::mbschema_xml);
}

#[test]
fn http_head() {
    replay("http_head", 300, listener::fuzz_checks::http_head);
}

#[test]
fn tls_hello() {
    // Each input that gets past the ClientHello costs a key exchange and a
    // signature, so fewer mutations than the parsers get.
    replay("tls_hello", 40, listener::fuzz_checks::tls_hello);
}

#[test]
fn chunked() {
    replay("chunked", 300, listener::fuzz_checks::chunked);
}

#[test]
fn url() {
    replay("url", 300, listener::fuzz_checks::url);
}

#[test]
fn config_values() {
    replay("config_values", 300, |data| {
        was::fuzz_checks::binding(data);
        metabase::fuzz_checks::ipsecurity(data);
        worker::fuzz_checks::url_settings(data);
    });
}

#[test]
fn wql() {
    replay("wql", 400, wmi::fuzz_checks::wql);
}

#[test]
fn pdu() {
    replay("pdu", 400, msrpc::fuzz_checks::pdu);
}

#[test]
fn cl_datagram() {
    replay("cl_datagram", 400, msrpc::fuzz_checks::cl_datagram);
}

#[test]
fn cl_server() {
    replay("cl_server", 400, msrpc::fuzz_checks::cl_server);
}

#[test]
fn rts_channel() {
    replay("rts_channel", 400, msrpc::fuzz_checks::rts_channel);
}

#[test]
fn ndr() {
    replay("ndr", 400, msrpc::fuzz_checks::ndr);
}

#[test]
fn rpc_session() {
    replay("rpc_session", 60, msrpc::fuzz_checks::rpc_session);
}

#[test]
fn ntlm() {
    replay("ntlm", 400, msrpc::fuzz_checks::ntlm);
}

#[test]
fn worker_config() {
    // A whole site's configuration builds (so the checks past the decoder
    // run); the rest of the corpus and its mutations may be refused.
    let site = corpus("worker_config")
        .into_iter()
        .find(|(name, _)| name == "site.json")
        .expect("site.json in the corpus");
    assert!(worker::fuzz_checks::worker_config(&site.1));
    replay("worker_config", 300, |data| {
        worker::fuzz_checks::worker_config(data);
    });
}

#[test]
fn gateway_output() {
    replay("gateway_output", 400, worker::fuzz_checks::gateway_output);
}

#[test]
fn dcom_structures() {
    replay("dcom_structures", 400, dcom::fuzz_checks::structures);
}

#[test]
fn dcom_requests() {
    replay("dcom_requests", 400, dcom::fuzz_checks::requests);
}

#[test]
fn imsa_requests() {
    replay("imsa_requests", 400, iisadmin::fuzz_checks::imsa_requests);
}

/// The DCOM corpus's well-formed cases, written by Impacket's marshalling,
/// are read as such (the mutations above only show nothing panics).
#[test]
fn dcom_corpus_cases_from_impacket_decode() {
    use msrpc::ndr::{from_bytes, Syntax};
    let case = |target: &str, name: &str| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fuzz/corpus")
            .join(target)
            .join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    let activation = case("dcom_structures", "activation_impacket");
    let request = dcom::activation::parse_request(&dcom::types::MInterfacePointer::new(
        activation[1..].to_vec(),
    ))
    .unwrap();
    assert_eq!(request.clsid, iisadmin::imsa::CLSID_MSADMIN_BASE_W);
    assert_eq!(request.iids, vec![iisadmin::imsa::IID_IMSADMIN_BASE_W]);
    assert_eq!(request.protseqs, vec![7]);
    let this = case("dcom_structures", "orpcthis_extension");
    let this: dcom::types::OrpcThis = from_bytes(&this[1..], Syntax::Ndr20, true).unwrap();
    let extensions = this.extensions.get().unwrap();
    assert_eq!(extensions.size, 1);
    // An ORPCTHAT with error information, as a refused WMI call answers
    // (Impacket's ORPCTHAT reads the same bytes in tests/wmi_wire.rs).
    let that = case("dcom_structures", "orpcthat_error_info");
    let that: dcom::types::OrpcThat = from_bytes(&that[1..], Syntax::Ndr20, true).unwrap();
    let info = dcom::errorinfo::ErrorInfo::of_that(&that).unwrap();
    assert_eq!(
        info.description.as_deref(),
        Some("there is no IIsWebServer named 'W3SVC/99'")
    );
    let objref = case("dcom_structures", "objref_standard");
    let dcom::objref::ObjRef::Standard { std, resolver, .. } =
        dcom::objref::ObjRef::decode(&objref[1..]).unwrap()
    else {
        panic!("not a standard OBJREF");
    };
    assert_eq!(std.public_refs, 5);
    assert_eq!(resolver.strings, vec![(7, "127.0.0.1[135]".to_string())]);
    for (name, opnum) in [("open_key", 17u16), ("get_data", 10), ("set_data", 9)] {
        let stub = case("imsa_requests", name);
        assert_eq!(
            iisadmin::imsa::MsAdminBaseWServer::<()>::decode_request(
                opnum,
                &stub[2..],
                Syntax::Ndr20,
                true
            ),
            Ok(()),
            "{name}"
        );
    }
    // The connectable object's and the sink's requests, as the IDL
    // (objidl, iadmw.h) lays them out.
    let stub = case("imsa_requests", "find_connection_point");
    assert_eq!(
        iisadmin::sink::ConnectionPointContainerServer::<()>::decode_request(
            4,
            &stub[2..],
            Syntax::Ndr20,
            true
        ),
        Ok(())
    );
    let stub = case("imsa_requests", "advise");
    assert_eq!(
        iisadmin::sink::ConnectionPointServer::<()>::decode_request(
            5,
            &stub[2..],
            Syntax::Ndr20,
            true
        ),
        Ok(())
    );
    let stub = case("imsa_requests", "sink_notify");
    assert_eq!(
        iisadmin::sink::MsAdminBaseSinkWServer::<()>::decode_request(
            3,
            &stub[2..],
            Syntax::Ndr20,
            true
        ),
        Ok(())
    );
    let stub = case("dcom_requests", "create_instance");
    assert_eq!(
        dcom::interfaces::RemoteScmActivatorServer::<()>::decode_request(
            4,
            &stub[3..],
            Syntax::Ndr20,
            true
        ),
        Ok(())
    );
}

#[test]
fn wmio_objects() {
    replay("wmio_objects", 300, wmio::fuzz_checks::objects);
}

#[test]
fn wbem_requests() {
    replay("wbem_requests", 400, wbem::fuzz_checks::wbem_requests);
}

/// The WMI corpus's well-formed cases (the specification's examples, what
/// the server sent Impacket, what Impacket encoded and marshalled) are
/// read as such.
#[test]
fn wmi_corpus_cases_decode() {
    use msrpc::ndr::Syntax;
    for (name, data) in corpus("wmio_objects") {
        let (kind, rest) = data.split_first().unwrap();
        if kind % 3 == 2 {
            let context =
                wmio::context::decode_context(rest).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(context.is_true("__PUT_EXTENSIONS"), "{name}");
        } else if kind % 3 == 0 {
            let object = wmio::decode_unit(rest).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(!object.class_name().is_empty(), "{name}");
        } else {
            let objects = wmio::ObjectArrayDecoder::default()
                .decode(rest)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(objects.len() >= 2, "{name}");
            assert!(
                objects
                    .iter()
                    .all(|o| o.class_name() == "IIsWebVirtualDirSetting"),
                "{name}"
            );
        }
    }
    let request = |name: &str| {
        let data = corpus("wbem_requests")
            .into_iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no case {name}"))
            .1;
        (u16::from(data[0]), data[2..].to_vec())
    };
    use wbem::interfaces::*;
    for name in [
        "exec_query",
        "get_object_impacket_one_level",
        "put_instance",
        "exec_method",
        "exec_notification_query",
        "create_class_enum",
    ] {
        let (opnum, stub) = request(name);
        assert_eq!(
            WbemServicesServer::<()>::decode_request(opnum, &stub, Syntax::Ndr20, true),
            Ok(()),
            "{name}"
        );
    }
    let (opnum, stub) = request("ntlm_login");
    assert_eq!(
        WbemLevel1LoginServer::<()>::decode_request(opnum, &stub, Syntax::Ndr20, true),
        Ok(())
    );
    let (opnum, stub) = request("enum_next");
    assert_eq!(
        EnumWbemClassObjectServer::<()>::decode_request(opnum, &stub, Syntax::Ndr20, true),
        Ok(())
    );
    let (opnum, stub) = request("smart_next");
    assert_eq!(
        WbemWcoSmartEnumServer::<()>::decode_request(opnum, &stub, Syntax::Ndr20, true),
        Ok(())
    );
    // What an asynchronous call brings: Impacket's ExecQueryAsync with its
    // response handler, and the server's callbacks to that sink (an
    // Indicate with the objects, SetStatus with and without an error
    // object), as the CLI's sink decodes them.
    let (opnum, stub) = request("exec_query_async");
    assert_eq!(
        WbemServicesServer::<()>::decode_request(opnum, &stub, Syntax::Ndr20, true),
        Ok(())
    );
    for name in ["sink_indicate", "sink_set_status", "sink_set_status_error"] {
        let (opnum, stub) = request(name);
        assert_eq!(
            WbemObjectSinkServer::<()>::decode_request(opnum, &stub, Syntax::Ndr20, true),
            Ok(()),
            "{name}"
        );
    }
    // PutInstance's instance is Impacket's own encoding of a spawned one.
    let (_, stub) = request("put_instance");
    let at = stub.windows(4).position(|w| w == b"MEOW").unwrap();
    let pointer = dcom::types::MInterfacePointer::new(stub[at..].to_vec());
    let object = wbem::service::object_of(&msrpc::ndr::Unique::new(Some(pointer))).unwrap();
    assert_eq!(object.class_name(), "IIsWebVirtualDir");
}
