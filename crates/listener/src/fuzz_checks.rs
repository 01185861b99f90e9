//! The properties the fuzz targets check, shared with the test suite that
//! replays the fuzz corpus. Each panics on a violation.

use crate::http::{parse_head, ChunkedDecoder, Framing, Limits, Step};
use crate::url::{canonicalize, Scheme, Target, UrlOptions};

/// The request-head parser: any input parses, asks for more, or is
/// refused; a parsed head's ranges lie within what it consumed, and its
/// framing is never ambiguous. Whatever parsed canonicalises or is
/// refused, never panics.
pub fn http_head(data: &[u8]) {
    let limits = Limits::default();
    let head = match parse_head(data, &limits) {
        Ok(Some(head)) => head,
        Ok(None) => {
            assert!(
                data.len() <= limits.max_request_bytes + 8,
                "kept waiting past the limits"
            );
            return;
        }
        Err(e) => {
            assert!(
                [400, 414, 417, 431, 501, 505].contains(&e.status),
                "status {}",
                e.status
            );
            return;
        }
    };
    assert!(head.len <= data.len());
    assert!(head.len <= limits.max_request_bytes + 2 + 16);
    for (lo, hi) in [head.method, head.target]
        .into_iter()
        .chain(head.headers.iter().flat_map(|(n, v)| [*n, *v]))
    {
        assert!(lo <= hi && hi <= head.len);
    }
    let has = |name: &[u8]| {
        head.headers
            .iter()
            .filter(|((lo, hi), _)| data[*lo..*hi].eq_ignore_ascii_case(name))
            .count()
    };
    if head.framing == Framing::Chunked {
        assert_eq!(has(b"content-length"), 0, "chunked with a Content-Length");
    }
    assert!(
        has(b"content-length") <= 1,
        "several Content-Lengths accepted"
    );
    let host = head
        .host
        .map(|i| &data[head.headers[i].1 .0..head.headers[i].1 .1]);
    let _ = canonicalize(
        &Target {
            raw: &data[head.target.0..head.target.1],
            host_header: host,
            local_host: "127.0.0.1",
            scheme: Scheme::Http,
            local_port: 80,
            is_options: &data[head.method.0..head.method.1] == b"OPTIONS",
        },
        &limits,
        &UrlOptions::default(),
    );
}

/// The chunked decoder, fed the input in pieces of every size: it never
/// consumes more than it is given, never yields data outside its input,
/// and gives the same body whatever the pieces.
pub fn chunked(data: &[u8]) {
    let mut bodies = Vec::new();
    for piece in [1usize, 3, 64, data.len().max(1)] {
        let mut decoder = ChunkedDecoder::new(4096, 1024);
        let mut buf: Vec<u8> = Vec::new();
        let mut body = Vec::new();
        let mut fed = 0;
        let mut outcome = None;
        'feed: while fed < data.len() || !buf.is_empty() {
            let end = (fed + piece).min(data.len());
            buf.extend_from_slice(&data[fed..end]);
            fed = end;
            loop {
                match decoder.decode(&buf) {
                    Ok(Step::Data {
                        start,
                        end,
                        consumed,
                    }) => {
                        assert!(start <= end && end <= consumed && consumed <= buf.len());
                        body.extend_from_slice(&buf[start..end]);
                        buf.drain(..consumed);
                    }
                    Ok(Step::NeedMore { consumed }) => {
                        assert!(consumed <= buf.len());
                        buf.drain(..consumed);
                        if fed == data.len() {
                            break 'feed;
                        }
                        break;
                    }
                    Ok(Step::End { consumed, .. }) => {
                        assert!(consumed <= buf.len());
                        outcome = Some(Ok(body.clone()));
                        break 'feed;
                    }
                    Err(e) => {
                        outcome = Some(Err(e.status));
                        break 'feed;
                    }
                }
            }
        }
        bodies.push(outcome);
    }
    // Complete bodies agree whatever the piece size.
    let complete: Vec<_> = bodies
        .iter()
        .flatten()
        .filter_map(|o| o.as_ref().ok())
        .collect();
    assert!(
        complete.windows(2).all(|w| w[0] == w[1]),
        "the body depends on how it arrived"
    );
}

/// URL canonicalisation: any target is canonicalised or refused; a cooked
/// path starts with `/`, holds no `.` or `..` segment, no NUL or control
/// character, no backslash, and respects the segment limits.
pub fn url(data: &[u8]) {
    let limits = Limits::default();
    for options in [
        UrlOptions::default(),
        UrlOptions {
            enable_non_utf8: false,
            percent_u_allowed: false,
            ..UrlOptions::default()
        },
    ] {
        let Ok(url) = canonicalize(
            &Target {
                raw: data,
                host_header: Some(b"fuzz.example"),
                local_host: "127.0.0.1",
                scheme: Scheme::Http,
                local_port: 80,
                is_options: false,
            },
            &limits,
            &options,
        ) else {
            continue;
        };
        assert!(url.path.starts_with('/'), "{:?}", url.path);
        assert!(!url.path.contains('\\'));
        assert!(
            !url.path.chars().any(|c| c == '\0' || c.is_control()),
            "{:?}",
            url.path
        );
        let segments: Vec<&str> = url.path[1..].split('/').collect();
        assert!(
            !segments.iter().any(|s| *s == "." || *s == ".."),
            "{:?}",
            url.path
        );
        assert!(segments.len() <= limits.url_segment_max_count);
        assert!(segments
            .iter()
            .all(|s| s.chars().count() <= limits.url_segment_max_length));
    }
}

/// The bindings [`tls_hello`] chooses from: the default endpoint's
/// certificate (ECDSA) and an SNI binding with an RSA one, built once.
fn tls_table() -> &'static crate::tls::TlsTable {
    use crate::tls::{Resumption, SslBinding, SslConfig, SslEndpoint, TlsTable};
    static TABLE: std::sync::OnceLock<TlsTable> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        // The store lives only while the table is built: the table keeps
        // what it needs in memory.
        let dir = std::env::temp_dir().join(format!("inetsrv-fuzz-tls-{}", std::process::id()));
        let store = certstore::Store::at(&dir);
        let ecdsa = store
            .create_self_signed(&["localhost".into()], None, certstore::NewKey::EcdsaP256, 5)
            .expect("a certificate");
        let rsa = store
            .create_self_signed(
                &["www.example.test".into()],
                None,
                certstore::NewKey::Rsa2048,
                5,
            )
            .expect("a certificate");
        let mut config = SslConfig::default();
        let any = SslEndpoint::parse_ipport("0.0.0.0:443").expect("an endpoint");
        let named = SslEndpoint::parse_hostnameport("www.example.test:443").expect("an endpoint");
        config
            .bindings
            .push(SslBinding::new(&any, &ecdsa.thumbprint));
        config
            .bindings
            .push(SslBinding::new(&named, &rsa.thumbprint));
        let policy = crate::ListenerConfig::default()
            .tls_policy()
            .expect("the default TLS policy");
        let (table, problems) = TlsTable::build(&config, &store, &policy, &Resumption::new());
        let _ = std::fs::remove_dir_all(&dir);
        assert!(problems.is_empty(), "{problems:?}");
        table
    })
}

/// The https endpoint's first bytes, up to the handshake hand-off, as the
/// listener takes them: the first byte classified, the ClientHello read
/// (rustls's `Acceptor`, which the listener's `LazyConfigAcceptor` wraps),
/// the binding chosen by SNI and address, and the rest of the input fed to
/// the connection as the client's next flight. Nothing panics; a binding
/// always covers the wildcard endpoint; what the server sends back is TLS
/// records (a handshake flight or an alert), never a completed handshake.
pub fn tls_hello(data: &[u8]) {
    use crate::tls::FirstByte;
    let Some(&first) = data.first() else {
        return;
    };
    if FirstByte::of(first) != FirstByte::Handshake {
        return;
    }
    let table = tls_table();
    let local: std::net::SocketAddr = ([127, 0, 0, 1], 443).into();
    let mut acceptor = rustls::server::Acceptor::default();
    let mut input = data;
    let accepted = loop {
        match acceptor.read_tls(&mut input) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        match acceptor.accept() {
            Ok(Some(accepted)) => break accepted,
            // Waits for more bytes.
            Ok(None) if input.is_empty() => return,
            Ok(None) => {}
            Err((_, mut alert)) => {
                let mut out = Vec::new();
                let _ = alert.write_all(&mut out);
                assert_tls_records(&out);
                return;
            }
        }
    };
    let sni = accepted.client_hello().server_name().map(str::to_string);
    let served = table
        .choose(sni.as_deref(), local)
        .expect("the wildcard binding covers every connection");
    let mut conn = match accepted.into_connection(served.config.clone()) {
        Ok(conn) => conn,
        Err((_, mut alert)) => {
            let mut out = Vec::new();
            let _ = alert.write_all(&mut out);
            assert_tls_records(&out);
            return;
        }
    };
    while !input.is_empty() {
        match conn.read_tls(&mut input) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if conn.process_new_packets().is_err() {
            break;
        }
    }
    let mut out = Vec::new();
    while conn.wants_write() {
        if conn.write_tls(&mut out).is_err() {
            break;
        }
    }
    assert_tls_records(&out);
    assert!(
        conn.is_handshaking(),
        "a handshake finished from a client's bytes alone"
    );
}

/// What a server sends is whole TLS records: change-cipher-spec, alert,
/// handshake or application data, each as long as its header says.
fn assert_tls_records(mut out: &[u8]) {
    while !out.is_empty() {
        assert!(out.len() >= 5, "a partial record header: {out:02x?}");
        assert!(
            (0x14..=0x17).contains(&out[0]) && out[1] == 3 && (1..=4).contains(&out[2]),
            "not a TLS record: {:02x?}",
            &out[..5]
        );
        let len = usize::from(u16::from_be_bytes([out[3], out[4]]));
        assert!(out.len() >= 5 + len, "a record cut short");
        out = &out[5 + len..];
    }
}
