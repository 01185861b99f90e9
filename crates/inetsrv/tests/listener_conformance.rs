//! The listener's conformance table: raw requests, valid and hostile, each
//! with the exact outcome expected: the status, for requests the listener
//! refuses the HTTPERR reason it logs, and for valid requests what the
//! application behind the queue received.

mod common;

use std::time::Duration;

use common::{echo, exchange, free_port, Reply, Server};
use serde_json::{json, Value};

type Check = Box<dyn Fn(&Reply) -> Result<(), String>>;

struct Case {
    name: String,
    request: Vec<u8>,
    status: u16,
    /// The HTTPERR reason, for responses the listener makes itself.
    reason: Option<&'static str>,
    check: Option<Check>,
}

struct Table {
    cases: Vec<Case>,
}

/// Builds requests: `{}` in a template is the Host header line.
impl Table {
    fn push(
        &mut self,
        name: &str,
        request: impl AsRef<[u8]>,
        status: u16,
        reason: Option<&'static str>,
        check: Option<Check>,
    ) {
        self.cases.push(Case {
            name: name.to_string(),
            request: request.as_ref().to_vec(),
            status,
            reason,
            check,
        });
    }

    /// A request the application answers; `field` of its JSON must be
    /// `expected`.
    fn ok(&mut self, name: &str, request: impl AsRef<[u8]>, field: &'static str, expected: Value) {
        self.push(
            name,
            request,
            200,
            None,
            Some(Box::new(move |r: &Reply| {
                let got = r.json()[field].clone();
                if got == expected {
                    Ok(())
                } else {
                    Err(format!("{field} = {got}, expected {expected}"))
                }
            })),
        );
    }

    fn ok_with(
        &mut self,
        name: &str,
        request: impl AsRef<[u8]>,
        check: impl Fn(&Reply) -> Result<(), String> + 'static,
    ) {
        self.push(name, request, 200, None, Some(Box::new(check)));
    }

    fn refused(
        &mut self,
        name: &str,
        request: impl AsRef<[u8]>,
        status: u16,
        reason: &'static str,
    ) {
        self.push(name, request, status, Some(reason), None);
    }
}

fn get(target: &str) -> String {
    format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n")
}

fn with_headers(headers: &str) -> String {
    format!("GET / HTTP/1.1\r\nHost: h\r\n{headers}\r\n")
}

fn post(headers: &str, body: &str) -> String {
    format!("POST /p HTTP/1.1\r\nHost: h\r\n{headers}\r\n{body}")
}

fn table() -> Table {
    let mut t = Table { cases: Vec::new() };

    // --- Valid requests: what the application sees. ---
    t.ok("root", get("/"), "path", json!("/"));
    t.ok(
        "path and query",
        get("/a/b.txt?x=1&y=%20"),
        "query",
        json!("x=1&y=%20"),
    );
    t.ok(
        "path of a query request",
        get("/a/b.txt?x=1"),
        "path",
        json!("/a/b.txt"),
    );
    t.push(
        "HEAD has no body",
        "HEAD / HTTP/1.1\r\nHost: h\r\n\r\n",
        200,
        None,
        Some(Box::new(|r: &Reply| {
            if r.body.is_empty() && r.header("content-length").is_some() {
                Ok(())
            } else {
                Err("HEAD answered with a body".into())
            }
        })),
    );
    t.ok(
        "POST with Content-Length",
        post("Content-Length: 5\r\n", "hello"),
        "body",
        json!("hello"),
    );
    t.ok(
        "chunked body",
        post("Transfer-Encoding: chunked\r\n", "5\r\nhello\r\n0\r\n\r\n"),
        "body",
        json!("hello"),
    );
    t.ok(
        "chunk extensions ignored",
        post(
            "Transfer-Encoding: chunked\r\n",
            "5;name=\"v;x\"\r\nhello\r\n0;last\r\n\r\n",
        ),
        "body",
        json!("hello"),
    );
    t.ok(
        "chunked trailers delivered",
        post(
            "Transfer-Encoding: chunked\r\n",
            "3\r\nabc\r\n0\r\nX-Checksum: 1\r\n\r\n",
        ),
        "trailers",
        json!([["X-Checksum", "1"]]),
    );
    t.ok(
        "several chunks, hex digits",
        post(
            "Transfer-Encoding: chunked\r\n",
            "A\r\n0123456789\r\na\r\nabcdefghij\r\n0\r\n\r\n",
        ),
        "body_len",
        json!(20),
    );
    t.ok(
        "chunk size with leading zeros",
        post("Transfer-Encoding: chunked\r\n", "0003\r\nabc\r\n0\r\n\r\n"),
        "body",
        json!("abc"),
    );
    t.ok(
        "Transfer-Encoding is case-insensitive",
        post("Transfer-Encoding: Chunked\r\n", "2\r\nok\r\n0\r\n\r\n"),
        "body",
        json!("ok"),
    );
    t.ok(
        "Content-Length with leading zeros",
        post("Content-Length: 005\r\n", "abcde"),
        "body",
        json!("abcde"),
    );
    t.ok(
        "Content-Length 0",
        post("Content-Length: 0\r\n", ""),
        "body_len",
        json!(0),
    );
    t.ok(
        "DELETE",
        "DELETE /x HTTP/1.1\r\nHost: h\r\n\r\n",
        "method",
        json!("DELETE"),
    );
    t.ok(
        "PUT",
        "PUT /x HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\nz",
        "method",
        json!("PUT"),
    );
    t.ok(
        "PATCH",
        "PATCH /x HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
        "method",
        json!("PATCH"),
    );
    t.ok(
        "OPTIONS on a path goes to the application",
        "OPTIONS /x HTTP/1.1\r\nHost: h\r\n\r\n",
        "method",
        json!("OPTIONS"),
    );
    t.push(
        "OPTIONS * is answered by the listener",
        "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
        200,
        None,
        Some(Box::new(|r: &Reply| {
            if r.header("allow").is_some() {
                Ok(())
            } else {
                Err("no Allow header".into())
            }
        })),
    );
    t.ok(
        "an extension method",
        "PROPFIND /dav HTTP/1.1\r\nHost: h\r\n\r\n",
        "method",
        json!("PROPFIND"),
    );
    t.ok(
        "a method with token punctuation",
        "M-SEARCH / HTTP/1.1\r\nHost: h\r\n\r\n",
        "method",
        json!("M-SEARCH"),
    );
    t.ok(
        "TRACE",
        "TRACE / HTTP/1.1\r\nHost: h\r\n\r\n",
        "method",
        json!("TRACE"),
    );
    t.ok(
        "HTTP/1.0 without Host uses the local address",
        "GET / HTTP/1.0\r\n\r\n",
        "host",
        json!("127.0.0.1"),
    );
    t.ok(
        "HTTP/1.0 with Host",
        "GET / HTTP/1.0\r\nHost: old.example\r\n\r\n",
        "host",
        json!("old.example"),
    );
    t.ok(
        "HTTP/1.0 version",
        "GET / HTTP/1.0\r\n\r\n",
        "version",
        json!("Http10"),
    );
    t.ok(
        "Host port does not change the local port",
        "GET / HTTP/1.1\r\nHost: h:80\r\n\r\n",
        "host",
        json!("h"),
    );
    t.ok(
        "Host is lower-cased",
        "GET / HTTP/1.1\r\nHost: WWW.Example.COM\r\n\r\n",
        "host",
        json!("www.example.com"),
    );
    t.ok(
        "an IPv6 Host",
        "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
        "host",
        json!("[::1]"),
    );
    t.ok(
        "an IPv4 Host",
        "GET / HTTP/1.1\r\nHost: 10.1.2.3\r\n\r\n",
        "host",
        json!("10.1.2.3"),
    );
    t.ok(
        "absolute-form target",
        "GET http://h/abs?q HTTP/1.1\r\nHost: h\r\n\r\n",
        "path",
        json!("/abs"),
    );
    t.ok(
        "absolute-form with upper-case scheme",
        "GET HTTP://H/abs HTTP/1.1\r\nHost: h\r\n\r\n",
        "path",
        json!("/abs"),
    );
    t.ok(
        "absolute-form without a path",
        "GET http://h HTTP/1.1\r\nHost: h\r\n\r\n",
        "path",
        json!("/"),
    );
    t.ok("percent-decoding", get("/%41%62c"), "path", json!("/Abc"));
    t.ok(
        "encoded slash decodes",
        get("/a%2Fb"),
        "path",
        json!("/a/b"),
    );
    t.ok("%u escapes", get("/%u0041%u00E9"), "path", json!("/Aé"));
    t.ok(
        "%u surrogate pairs",
        get("/%uD83D%uDE00"),
        "path",
        json!("/\u{1F600}"),
    );
    t.ok("UTF-8 escapes", get("/caf%C3%A9"), "path", json!("/café"));
    t.ok(
        "raw UTF-8",
        b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n".as_slice(),
        "path",
        json!("/café"),
    );
    t.ok(
        "non-UTF-8 falls back to Windows-1252",
        get("/caf%E9"),
        "path",
        json!("/café"),
    );
    t.ok(
        "raw URL is kept",
        get("/caf%C3%A9"),
        "raw_url",
        json!("/caf%C3%A9"),
    );
    t.ok("dot segments", get("/a/./b/../c"), "path", json!("/a/c"));
    t.ok(
        "encoded dot segments",
        get("/a/%2e%2E/b"),
        "path",
        json!("/b"),
    );
    t.ok("a trailing dot", get("/a/."), "path", json!("/a/"));
    t.ok("a trailing dot-dot", get("/a/b/.."), "path", json!("/a/"));
    t.ok(
        "backslashes are slashes",
        get("/a\\b"),
        "path",
        json!("/a/b"),
    );
    t.ok(
        "double slashes are kept",
        get("//a//b"),
        "path",
        json!("//a//b"),
    );
    t.ok(
        "the query stays raw",
        get("/?a=%00&b=%zz"),
        "query",
        json!("a=%00&b=%zz"),
    );
    t.ok(
        "raw non-ASCII in the query",
        b"GET /?q=\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n".as_slice(),
        "query",
        json!("q=%C3%A9"),
    );
    t.ok(
        "empty lines before the request",
        "\r\n\r\nGET /lead HTTP/1.1\r\nHost: h\r\n\r\n",
        "path",
        json!("/lead"),
    );
    t.ok_with(
        "header values are trimmed",
        with_headers("X-Pad:  \t value \t \r\n"),
        |r| {
            let v = r.json();
            let found = v["headers"]
                .as_array()
                .unwrap()
                .iter()
                .any(|h| h == &json!(["X-Pad", "value"]));
            if found {
                Ok(())
            } else {
                Err(format!("{}", v["headers"]))
            }
        },
    );
    t.ok_with("an empty header value", with_headers("X-Empty:\r\n"), |r| {
        let found = r.json()["headers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h == &json!(["X-Empty", ""]));
        if found {
            Ok(())
        } else {
            Err("X-Empty missing".into())
        }
    });
    t.ok_with(
        "obs-text in a value",
        b"GET / HTTP/1.1\r\nHost: h\r\nX-Latin: caf\xe9\r\n\r\n".as_slice(),
        |r| {
            let found = r.json()["headers"].to_string().contains("X-Latin");
            if found {
                Ok(())
            } else {
                Err("X-Latin missing".into())
            }
        },
    );
    t.ok_with(
        "header names keep their case",
        with_headers("x-MiXeD: 1\r\n"),
        |r| {
            if r.json()["headers"].to_string().contains("x-MiXeD") {
                Ok(())
            } else {
                Err("case changed".into())
            }
        },
    );
    // RFC 9110 10.1.1: with the body already here, no 100 is owed (the
    // handshake itself is in the behaviour tests).
    t.ok(
        "Expect: 100-continue with the body sent at once",
        post("Expect: 100-continue\r\nContent-Length: 2\r\n", "ok"),
        "body",
        json!("ok"),
    );
    t.ok_with(
        "Connection: close is honoured",
        "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        |r| {
            if r.closes() {
                Ok(())
            } else {
                Err("no Connection: close".into())
            }
        },
    );
    t.ok_with(
        "HTTP/1.0 keep-alive is echoed",
        "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        |r| {
            if r.header("connection") == Some("keep-alive") {
                Ok(())
            } else {
                Err(r.head.clone())
            }
        },
    );
    t.ok_with(
        "HTTP/1.0 closes by default",
        "GET / HTTP/1.0\r\n\r\n",
        |r| {
            if r.closes() {
                Ok(())
            } else {
                Err(r.head.clone())
            }
        },
    );
    t.ok(
        "a 260-character segment",
        get(&format!("/{}", "s".repeat(260))),
        "body_len",
        json!(0),
    );
    t.ok("255 segments", get(&"/s".repeat(255)), "body_len", json!(0));
    t.ok(
        "a hundred headers",
        with_headers(&"X-Many: value\r\n".repeat(100)),
        "method",
        json!("GET"),
    );
    t.ok(
        "a 16000-byte header field",
        with_headers(&format!("X-Big: {}\r\n", "b".repeat(16_000))),
        "method",
        json!("GET"),
    );
    t.ok(
        "the URL context of the prefix",
        get("/"),
        "context",
        json!(1),
    );
    t.ok_with("the cooked URL", get("/x?y"), |r| {
        let url = r.json()["url"].as_str().unwrap_or("").to_string();
        if url.starts_with("http://h:") && url.ends_with("/x?y") {
            Ok(())
        } else {
            Err(url)
        }
    });
    t.ok_with(
        "the application's response is framed by the listener",
        get("/frame"),
        |r| {
            if r.header("content-length").is_some()
                && r.header("server") == Some("inetsrv")
                && r.header("date").is_some()
            {
                Ok(())
            } else {
                Err(r.head.clone())
            }
        },
    );

    // --- The request line. ---
    t.refused(
        "no space after the method",
        "GET/ HTTP/1.1\r\nHost: h\r\n\r\n",
        400,
        "Verb",
    );
    t.refused(
        "a leading space",
        " GET / HTTP/1.1\r\nHost: h\r\n\r\n",
        400,
        "BadRequest",
    );
    t.refused(
        "two spaces before the target",
        "GET  / HTTP/1.1\r\nHost: h\r\n\r\n",
        400,
        "URL",
    );
    t.refused(
        "two spaces before the version",
        "GET /  HTTP/1.1\r\nHost: h\r\n\r\n",
        400,
        "BadRequest",
    );
    t.refused(
        "a space after the version",
        "GET / HTTP/1.1 \r\nHost: h\r\n\r\n",
        400,
        "BadRequest",
    );
    t.refused(
        "a tab in the request line",
        "GET /\tHTTP/1.1\r\nHost: h\r\n\r\n",
        400,
        "BadRequest",
    );
    t.refused(
        "words after the version",
        "GET / HTTP/1.1 extra\r\nHost: h\r\n\r\n",
        400,
        "BadRequest",
    );
    t.refused("HTTP/0.9 style", "GET /\r\n\r\n", 400, "BadRequest");
    t.refused(
        "a lower-case version",
        "GET / http/1.1\r\nHost: h\r\n\r\n",
        400,
        "BadRequest",
    );
    t.refused(
        "a version without minor",
        "GET / HTTP/1\r\nHost: h\r\n\r\n",
        400,
        "BadRequest",
    );
    t.refused(
        "a version without dot",
        "GET / HTTP/11\r\nHost: h\r\n\r\n",
        400,
        "BadRequest",
    );
    t.refused(
        "a two-digit minor",
        "GET / HTTP/1.10\r\nHost: h\r\n\r\n",
        400,
        "BadRequest",
    );
    t.refused(
        "a letter in the version",
        "GET / HTTP/1.x\r\nHost: h\r\n\r\n",
        400,
        "BadRequest",
    );
    t.refused(
        "a missing version",
        "GET / \r\nHost: h\r\n\r\n",
        400,
        "BadRequest",
    );
    t.refused(
        "HTTP/2.0",
        "GET / HTTP/2.0\r\nHost: h\r\n\r\n",
        505,
        "Version_N/S",
    );
    t.refused(
        "HTTP/3.0",
        "GET / HTTP/3.0\r\nHost: h\r\n\r\n",
        505,
        "Version_N/S",
    );
    t.refused("HTTP/0.9", "GET / HTTP/0.9\r\n\r\n", 505, "Version_N/S");
    t.refused(
        "HTTP/1.2",
        "GET / HTTP/1.2\r\nHost: h\r\n\r\n",
        505,
        "Version_N/S",
    );
    t.refused(
        "HTTP/9.9",
        "GET / HTTP/9.9\r\nHost: h\r\n\r\n",
        505,
        "Version_N/S",
    );
    t.refused(
        "a bracket in the method",
        "G(T / HTTP/1.1\r\nHost: h\r\n\r\n",
        400,
        "Verb",
    );
    t.refused(
        "non-ASCII in the method",
        b"G\xc3\x89T / HTTP/1.1\r\nHost: h\r\n\r\n".as_slice(),
        400,
        "Verb",
    );
    t.refused(
        "a 256-character method",
        format!("{} / HTTP/1.1\r\nHost: h\r\n\r\n", "M".repeat(256)),
        400,
        "Verb",
    );
    t.refused(
        "a bare LF after the request line",
        "GET / HTTP/1.1\nHost: h\r\n\r\n",
        400,
        "Invalid_CR/LF",
    );
    t.refused(
        "a bare CR in the request line",
        "GET /a\rb HTTP/1.1\r\nHost: h\r\n\r\n",
        400,
        "Invalid_CR/LF",
    );
    t.refused(
        "a leading bare LF",
        "\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
        400,
        "Invalid_CR/LF",
    );
    t.refused(
        "NUL in the target",
        b"GET /a\x00b HTTP/1.1\r\nHost: h\r\n\r\n".as_slice(),
        400,
        "URL",
    );
    t.refused(
        "DEL in the target",
        b"GET /a\x7fb HTTP/1.1\r\nHost: h\r\n\r\n".as_slice(),
        400,
        "URL",
    );
    t.refused(
        "a control character in the target",
        b"GET /a\x01b HTTP/1.1\r\nHost: h\r\n\r\n".as_slice(),
        400,
        "URL",
    );
    t.refused(
        "* outside OPTIONS",
        "GET * HTTP/1.1\r\nHost: h\r\n\r\n",
        400,
        "URL",
    );
    t.refused(
        "a relative target",
        "GET a/b HTTP/1.1\r\nHost: h\r\n\r\n",
        400,
        "URL",
    );
    t.refused("a fragment", get("/a#frag"), 400, "URL");
    t.refused(
        "a target that is only a query",
        "GET ?x HTTP/1.1\r\nHost: h\r\n\r\n",
        400,
        "URL",
    );
    t.refused(
        "authority-form",
        "CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n",
        400,
        "URL",
    );
    t.refused(
        "a target that is another scheme",
        "GET ftp://h/x HTTP/1.1\r\nHost: h\r\n\r\n",
        400,
        "URL",
    );

    // --- Header fields. ---
    t.refused("obs-fold", with_headers("X-A: a\r\n b\r\n"), 400, "Header");
    t.refused(
        "obs-fold with a tab",
        with_headers("X-A: a\r\n\tb\r\n"),
        400,
        "Header",
    );
    t.refused(
        "folded Host",
        "GET / HTTP/1.1\r\nHost: h\r\n x\r\n\r\n",
        400,
        "Header",
    );
    t.refused(
        "a space before the colon",
        "GET / HTTP/1.1\r\nHost : h\r\n\r\n",
        400,
        "Header",
    );
    t.refused(
        "a tab before the colon",
        with_headers("X-A\t: a\r\n"),
        400,
        "Header",
    );
    t.refused("no colon", with_headers("No colon here\r\n"), 400, "Header");
    t.refused("an empty name", with_headers(": value\r\n"), 400, "Header");
    t.refused(
        "a space inside the name",
        with_headers("X Y: z\r\n"),
        400,
        "Header",
    );
    t.refused("@ in the name", with_headers("X@Y: z\r\n"), 400, "Header");
    t.refused(
        "non-ASCII in the name",
        b"GET / HTTP/1.1\r\nHost: h\r\nX\xc3\xa9: z\r\n\r\n".as_slice(),
        400,
        "Header",
    );
    t.refused(
        "NUL in a value",
        b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x00b\r\n\r\n".as_slice(),
        400,
        "Header",
    );
    t.refused(
        "DEL in a value",
        b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x7fb\r\n\r\n".as_slice(),
        400,
        "Header",
    );
    t.refused(
        "a control character in a value",
        b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x01b\r\n\r\n".as_slice(),
        400,
        "Header",
    );
    t.refused(
        "a vertical tab in a value",
        b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x0bb\r\n\r\n".as_slice(),
        400,
        "Header",
    );
    t.refused(
        "a bare CR in a value",
        with_headers("X-A: a\rb\r\n"),
        400,
        "Invalid_CR/LF",
    );
    t.refused(
        "a bare LF ending a header",
        "GET / HTTP/1.1\r\nHost: h\nX-A: b\r\n\r\n",
        400,
        "Invalid_CR/LF",
    );
    t.refused(
        "a bare LF ending the head",
        "GET / HTTP/1.1\r\nHost: h\r\n\n",
        400,
        "Invalid_CR/LF",
    );
    t.refused(
        "a bare CR ending a header",
        "GET / HTTP/1.1\r\nHost: h\rX-A: b\r\n\r\n",
        400,
        "Invalid_CR/LF",
    );
    t.refused(
        "Expect with another expectation",
        with_headers("Expect: the-unexpected\r\n"),
        417,
        "Precondition",
    );

    // --- Host. ---
    t.refused(
        "HTTP/1.1 without Host",
        "GET / HTTP/1.1\r\n\r\n",
        400,
        "Hostname",
    );
    t.refused(
        "two Host fields",
        "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        400,
        "Hostname",
    );
    t.refused(
        "two Host fields, same value",
        "GET / HTTP/1.1\r\nHost: h\r\nHost: h\r\n\r\n",
        400,
        "Hostname",
    );
    t.refused(
        "an empty Host",
        "GET / HTTP/1.1\r\nHost:\r\n\r\n",
        400,
        "Hostname",
    );
    t.refused(
        "a space in Host",
        "GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
        400,
        "Hostname",
    );
    t.refused(
        "userinfo in Host",
        "GET / HTTP/1.1\r\nHost: u@h\r\n\r\n",
        400,
        "Hostname",
    );
    t.refused(
        "a port that is not a number",
        "GET / HTTP/1.1\r\nHost: h:web\r\n\r\n",
        400,
        "Hostname",
    );
    t.refused(
        "a port out of range",
        "GET / HTTP/1.1\r\nHost: h:99999\r\n\r\n",
        400,
        "Hostname",
    );
    t.refused(
        "an unclosed IPv6 Host",
        "GET / HTTP/1.1\r\nHost: [::1\r\n\r\n",
        400,
        "Hostname",
    );
    t.refused(
        "a bad IPv6 Host",
        "GET / HTTP/1.1\r\nHost: [fe80::zz]\r\n\r\n",
        400,
        "Hostname",
    );
    t.refused(
        "a path in Host",
        "GET / HTTP/1.1\r\nHost: h/x\r\n\r\n",
        400,
        "Hostname",
    );
    t.refused(
        "non-ASCII in Host",
        b"GET / HTTP/1.1\r\nHost: h\xc3\xa9\r\n\r\n".as_slice(),
        400,
        "Hostname",
    );
    t.refused(
        "a Host of dots",
        "GET / HTTP/1.1\r\nHost: a..b\r\n\r\n",
        400,
        "Hostname",
    );
    t.refused(
        "an IPv4-looking Host out of range",
        "GET / HTTP/1.1\r\nHost: 300.1.1.1\r\n\r\n",
        400,
        "Hostname",
    );
    t.refused(
        "only a port",
        "GET / HTTP/1.1\r\nHost: :80\r\n\r\n",
        400,
        "Hostname",
    );
    t.refused(
        "absolute-form disagreeing with Host",
        "GET http://other/x HTTP/1.1\r\nHost: h\r\n\r\n",
        400,
        "Hostname",
    );
    t.refused(
        "absolute-form with userinfo",
        "GET http://u@h/x HTTP/1.1\r\nHost: h\r\n\r\n",
        400,
        "Hostname",
    );

    // --- Message framing: no way to smuggle a request. ---
    t.refused(
        "Content-Length and Transfer-Encoding",
        post(
            "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
            "0\r\n\r\n",
        ),
        400,
        "BadRequest",
    );
    t.refused(
        "Transfer-Encoding and Content-Length",
        post(
            "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
            "0\r\n\r\n",
        ),
        400,
        "BadRequest",
    );
    t.refused(
        "two equal Content-Lengths",
        post("Content-Length: 5\r\nContent-Length: 5\r\n", "hello"),
        400,
        "BadRequest",
    );
    t.refused(
        "two different Content-Lengths",
        post("Content-Length: 5\r\nContent-Length: 6\r\n", "hello!"),
        400,
        "BadRequest",
    );
    t.refused(
        "a Content-Length list",
        post("Content-Length: 5, 5\r\n", "hello"),
        400,
        "BadRequest",
    );
    t.refused(
        "a negative Content-Length",
        post("Content-Length: -1\r\n", ""),
        400,
        "BadRequest",
    );
    t.refused(
        "a signed Content-Length",
        post("Content-Length: +5\r\n", "hello"),
        400,
        "BadRequest",
    );
    t.refused(
        "a space inside Content-Length",
        post("Content-Length: 5 5\r\n", "hello"),
        400,
        "BadRequest",
    );
    t.refused(
        "a hex Content-Length",
        post("Content-Length: 0x5\r\n", "hello"),
        400,
        "BadRequest",
    );
    t.refused(
        "an empty Content-Length",
        post("Content-Length:\r\n", ""),
        400,
        "BadRequest",
    );
    t.refused(
        "a huge Content-Length",
        post("Content-Length: 99999999999999999999\r\n", ""),
        400,
        "BadRequest",
    );
    t.refused(
        "junk after Content-Length",
        post("Content-Length: 5a\r\n", "hello"),
        400,
        "BadRequest",
    );
    t.refused(
        "gzip only",
        post("Transfer-Encoding: gzip\r\n", ""),
        400,
        "BadRequest",
    );
    t.refused(
        "gzip then chunked",
        post("Transfer-Encoding: gzip, chunked\r\n", "0\r\n\r\n"),
        501,
        "N/I",
    );
    // A parameter on chunked: one party reading it as chunked and another
    // refusing it is a smuggling gap; HTTP.SYS knows only the bare coding.
    t.refused(
        "chunked with a parameter",
        post("Transfer-Encoding: chunked;q=1\r\n", "0\r\n\r\n"),
        501,
        "N/I",
    );
    t.refused(
        "chunked then gzip",
        post("Transfer-Encoding: chunked, gzip\r\n", "0\r\n\r\n"),
        400,
        "BadRequest",
    );
    t.refused(
        "chunked twice",
        post("Transfer-Encoding: chunked, chunked\r\n", "0\r\n\r\n"),
        400,
        "BadRequest",
    );
    t.refused(
        "chunked in two fields",
        post(
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
            "0\r\n\r\n",
        ),
        400,
        "BadRequest",
    );
    t.refused(
        "identity",
        post("Transfer-Encoding: identity\r\n", ""),
        400,
        "BadRequest",
    );
    t.refused(
        "a coding named like chunked",
        post("Transfer-Encoding: xchunked\r\n", "0\r\n\r\n"),
        400,
        "BadRequest",
    );
    t.refused(
        "Transfer-Encoding in HTTP/1.0",
        "POST /p HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
        "BadRequest",
    );
    t.refused(
        "a chunk size that is not hex",
        post("Transfer-Encoding: chunked\r\n", "zz\r\nhello\r\n0\r\n\r\n"),
        400,
        "BadRequest",
    );
    t.refused(
        "a chunk size that overflows",
        post(
            "Transfer-Encoding: chunked\r\n",
            "10000000000000000\r\nx\r\n0\r\n\r\n",
        ),
        400,
        "BadRequest",
    );
    t.refused(
        "a negative chunk size",
        post("Transfer-Encoding: chunked\r\n", "-5\r\nhello\r\n0\r\n\r\n"),
        400,
        "BadRequest",
    );
    t.refused(
        "a 0x chunk size",
        post(
            "Transfer-Encoding: chunked\r\n",
            "0x5\r\nhello\r\n0\r\n\r\n",
        ),
        400,
        "BadRequest",
    );
    t.refused(
        "chunk data longer than its size",
        post("Transfer-Encoding: chunked\r\n", "3\r\nhello\r\n0\r\n\r\n"),
        400,
        "BadRequest",
    );
    t.refused(
        "a bare LF after a chunk size",
        post("Transfer-Encoding: chunked\r\n", "5\nhello\r\n0\r\n\r\n"),
        400,
        "Invalid_CR/LF",
    );
    t.refused(
        "a control character in a chunk extension",
        post(
            "Transfer-Encoding: chunked\r\n",
            "5;a\x01b\r\nhello\r\n0\r\n\r\n",
        ),
        400,
        "BadRequest",
    );
    t.refused(
        "words after a chunk size",
        post(
            "Transfer-Encoding: chunked\r\n",
            "5 garbage\r\nhello\r\n0\r\n\r\n",
        ),
        400,
        "BadRequest",
    );
    t.refused(
        "Content-Length in the trailers",
        post(
            "Transfer-Encoding: chunked\r\n",
            "0\r\nContent-Length: 5\r\n\r\n",
        ),
        400,
        "Header",
    );
    t.refused(
        "Transfer-Encoding in the trailers",
        post(
            "Transfer-Encoding: chunked\r\n",
            "0\r\nTransfer-Encoding: chunked\r\n\r\n",
        ),
        400,
        "Header",
    );
    t.refused(
        "a folded trailer",
        post(
            "Transfer-Encoding: chunked\r\n",
            "0\r\nX-A: a\r\n b\r\n\r\n",
        ),
        400,
        "Header",
    );
    t.refused(
        "a trailer without colon",
        post("Transfer-Encoding: chunked\r\n", "0\r\nno colon\r\n\r\n"),
        400,
        "Header",
    );

    // --- URLs. ---
    for (name, target) in [
        ("climbing above the root", "/.."),
        ("climbing above the root to a file", "/../etc/passwd"),
        ("climbing too far", "/a/../../b"),
        ("encoded climbing", "/%2e%2e/x"),
        ("encoded climbing in capitals", "/%2E%2E/x"),
        ("backslash climbing", "/..\\x"),
        ("%u climbing", "/%u002e%u002e/x"),
        ("encoded NUL", "/a%00b"),
        ("an encoded control character", "/a%01b"),
        ("encoded DEL", "/a%7Fb"),
        ("an encoded C1 control", "/a%C2%85b"),
        ("overlong slash", "/%c0%af"),
        ("overlong dots", "/%c0%ae%c0%ae/x"),
        ("three-byte overlong", "/%e0%80%af"),
        ("four-byte overlong", "/%f0%80%80%af"),
        ("a bad escape", "/a%zz"),
        ("a short escape", "/a%4"),
        ("a lone percent", "/a%"),
        ("a short %u escape", "/%u00"),
        ("a lone high surrogate", "/%uD83D"),
        ("a lone low surrogate", "/%uDE00"),
        ("a bad %u digit", "/%u12G4"),
        ("a %u NUL", "/%u0000"),
    ] {
        t.refused(name, get(target), 400, "URL");
    }
    t.refused(
        "a 261-character segment",
        get(&format!("/{}", "s".repeat(261))),
        400,
        "URL",
    );
    t.refused("256 segments", get(&"/s".repeat(256)), 400, "URL");
    t.refused(
        "a 261-character segment after decoding",
        get(&format!("/{}", "%41".repeat(261))),
        400,
        "URL",
    );

    // --- Limits. ---
    t.refused(
        "a URL over MaxFieldLength",
        get(&format!("/{}", "u".repeat(16_400))),
        414,
        "URL_Length",
    );
    t.refused(
        "a field over MaxFieldLength",
        with_headers(&format!("X-Big: {}\r\n", "b".repeat(16_400))),
        431,
        "FieldLength",
    );
    t.refused(
        "a head over MaxRequestBytes",
        with_headers(&"X-Fill: 0123456789012345678901234567890123456789\r\n".repeat(400)),
        431,
        "RequestLength",
    );
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_table() {
    let server = Server::start(json!({}));
    let port = free_port();
    let _app = echo(&server.socket(), "echo", &[format!("http://+:{port}/")]).await;
    let table = table();
    assert!(table.cases.len() >= 150, "only {} cases", table.cases.len());
    let mut failures = Vec::new();
    for case in &table.cases {
        let logged_before = server.httperr().len();
        let Some(reply) = exchange(port, &case.request).await else {
            failures.push(format!("{}: no response", case.name));
            continue;
        };
        if reply.status != case.status {
            failures.push(format!(
                "{}: status {} (expected {})\n{}",
                case.name, reply.status, case.status, reply.head
            ));
            continue;
        }
        if let Some(check) = &case.check {
            if let Err(why) = check(&reply) {
                failures.push(format!("{}: {why}", case.name));
            }
        }
        if let Some(reason) = case.reason {
            if !reply.closes() {
                failures.push(format!(
                    "{}: the listener's error did not close the connection",
                    case.name
                ));
            }
            // The log's thread writes the line just after the answer:
            // wait for it (so the next case counts only its own lines).
            let expected = format!(" {} - {reason} ", case.status);
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            loop {
                let lines = server.httperr();
                let new = &lines[logged_before.min(lines.len())..];
                if new.iter().any(|l| l.contains(&expected)) {
                    break;
                }
                if std::time::Instant::now() > deadline {
                    failures.push(format!(
                        "{}: HTTPERR has no '{expected}' line: {new:?}",
                        case.name
                    ));
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        table.cases.len(),
        failures.join("\n")
    );
    println!("{} conformance cases passed", table.cases.len());
}
