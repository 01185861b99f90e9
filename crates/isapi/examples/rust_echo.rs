//! An ISAPI extension written in Rust with the `isapi` crate: the same
//! scenarios as the C test extension (server variables, the whole body,
//! redirects, an unhealthy report, a panic), built as a shared object:
//!
//! ```sh
//! cargo build -p isapi --example rust_echo      # target/debug/examples/librust_echo.so
//! inetsrv mb set W3SVC/1/ROOT/ScriptMaps ".rs,$PWD/target/debug/examples/librust_echo.so,1"
//! inetsrv webext add-file $PWD/target/debug/examples/librust_echo.so --enable
//! curl http://localhost:8080/x.rs?vars
//! ```

use isapi::extension::{HttpExtension, Request, Status};

struct Echo;

impl HttpExtension for Echo {
    fn description(&self) -> &str {
        "echo, in Rust"
    }

    fn handle(&self, request: &mut Request<'_>) -> Status {
        match request.query_string() {
            "redirect" => {
                let _ = request.redirect("/elsewhere/");
                return Status::Success;
            }
            "panic" => panic!("a bug in the extension"),
            "unhealthy" => {
                let _ = request.report_unhealthy("the cache is corrupt");
            }
            _ => {}
        }
        let body = match request.read_body() {
            Ok(body) => body,
            Err(_) => return Status::Error,
        };
        let variable = |name: &str| {
            request
                .server_variable(name)
                .map(|v| String::from_utf8_lossy(&v).into_owned())
                .unwrap_or_else(|| "(none)".into())
        };
        let text = format!(
            "rust echo: {} {}?{}\nSERVER_NAME {}\nREMOTE_ADDR {}\nHTTP_USER_AGENT {}\nNO_SUCH_VARIABLE {}\nbody {} bytes, sum {}\n",
            request.method(),
            request.path_info(),
            request.query_string(),
            variable("SERVER_NAME"),
            variable("REMOTE_ADDR"),
            variable("HTTP_USER_AGENT"),
            variable("NO_SUCH_VARIABLE"),
            body.len(),
            body.iter().map(|&b| u64::from(b)).sum::<u64>(),
        );
        let _ = request.append_log("&rust=1");
        if request
            .send_headers(
                "200 OK",
                "Content-Type: text/plain\r\nX-Written-In: Rust\r\n\r\n",
                true,
            )
            .is_err()
        {
            return Status::Error;
        }
        match request.write(text.as_bytes()) {
            Ok(()) => Status::SuccessKeepConn,
            Err(_) => Status::Error,
        }
    }
}

isapi::export_extension!(Echo);
